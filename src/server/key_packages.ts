/**
 * KeyPackage directory: members upload batches of MLS KeyPackages (each verified: its
 * signature, lifetime, suite, and that its credential and key are the uploader's own);
 * others fetch one to add that member to a group, consuming it. Packages are filed per
 * MLS cipher suite (read from each package's header): a fetch or count may name a suite,
 * and each user has at most one last-resort package per suite.
 *
 * ```
 * upload ─► per package: suite from header ─► verify (own name and key) ─► store (suite)
 * fetch(user, suite) ─► requester and target allowances (rate_limited) ─► oldest batch
 *                       package of that suite ─► else its last resort
 *                    ─► last resort handed out, or few left? notice in the owner's queue
 *                       (at most one per KEY_PACKAGE_NOTICE_INTERVAL_MS): refill, rotate
 * fetch(user, 0)     ─► the same for X-Wing (the default suite) ─► else any suite
 * ```
 *
 * @module
 */
import {
  DEFAULT_SUITE,
  parseKeyPackage,
  readKeyPackageSuite,
  SUITE_IDS,
  suiteFromId,
} from "../mls/mod.ts";
import type { KeyPackageInput, ServerStore } from "../store/server/mod.ts";
import { TokenBucketLimiter } from "../auth/mod.ts";
import { NOTICE_KEY_PACKAGES } from "../wire/mod.ts";
import { constantTimeEqual, toHex } from "../bytes.ts";
import { AuthError, UsageError, ValidationError } from "../errors.ts";
import {
  KEY_PACKAGE_FETCH_REFILL_MS,
  KEY_PACKAGE_LOW_WATER,
  KEY_PACKAGE_NOTICE_INTERVAL_MS,
  MAX_KEY_PACKAGE_BATCH,
} from "../limits.ts";
import type { HandlerTable, ServerContext } from "./context.ts";
import { encodeRecord } from "./_delivery_record.ts";
import { requireUser } from "./accounts.ts";
import { checkUsernameSyntax } from "./_names.ts";

/** Suite id of the default suite, served first when a fetch names no suite. */
const DEFAULT_SUITE_ID = SUITE_IDS[DEFAULT_SUITE];

async function checkOwnPackage(
  bytes: Uint8Array,
  username: string,
  identityKey: Uint8Array,
): Promise<KeyPackageInput & { lastResort: boolean }> {
  const cipherSuite = readKeyPackageSuite(bytes);
  const parsed = await parseKeyPackage(bytes, { suite: suiteFromId(cipherSuite)! });
  if (parsed.username !== username) {
    throw new ValidationError("KeyPackage credential is not the uploader's username");
  }
  if (!constantTimeEqual(parsed.signaturePublicKey, identityKey)) {
    throw new ValidationError("KeyPackage key is not the uploader's identity key");
  }
  return {
    ref: parsed.ref,
    cipherSuite,
    data: bytes,
    notAfter: Number(parsed.notAfter) * 1000,
    lastResort: parsed.lastResort,
  };
}

/** A requested suite: 0 (any) or one qpq offers. */
function requestedSuite(suite: number | undefined): number {
  const s = suite ?? 0;
  if (s !== 0 && suiteFromId(s) === undefined) {
    throw new ValidationError(`Unsupported cipher suite ${s}`);
  }
  return s;
}

/**
 * Tell `owner` (a notice in its own queue) that its KeyPackages run low or its last resort
 * was handed out. One per interval: the message id names the interval, so the store's
 * idempotency drops repeats. Never fails the fetch that caused it.
 */
async function noticeKeyPackages(ctx: ServerContext, store: ServerStore, owner: string) {
  const id = new Uint8Array(16);
  id.set(new TextEncoder().encode("kp-notice"));
  new DataView(id.buffer).setUint32(12, Math.floor(Date.now() / KEY_PACKAGE_NOTICE_INTERVAL_MS));
  try {
    await store.enqueue({
      sender: owner,
      messageId: toHex(id),
      channelId: null,
      payload: encodeRecord({
        kind: "application",
        epoch: 0,
        payload: new Uint8Array(0),
        welcomeFor: [],
        welcome: new Uint8Array(0),
        notice: NOTICE_KEY_PACKAGES,
      }),
      recipients: [owner],
    });
  } catch (e) {
    ctx.log.warn("KeyPackage notice not queued", { user: owner, error: String(e) });
  }
}

function fetchLimited(what: string, retryAfterMs: number): AuthError {
  const s = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new AuthError(`Too many KeyPackage fetches ${what}: try again in ${s} s`, {
    code: "rate_limited",
  });
}

/** Handlers of the KeyPackage directory. */
export function keyPackageHandlers(ctx: ServerContext, store: ServerStore): HandlerTable {
  const perRequester = new TokenBucketLimiter({
    burst: ctx.config.keyPackageFetchesPerRequester,
    refillMs: KEY_PACKAGE_FETCH_REFILL_MS,
  });
  const perTarget = new TokenBucketLimiter({
    burst: ctx.config.keyPackageFetchesPerTarget,
    refillMs: KEY_PACKAGE_FETCH_REFILL_MS,
  });
  return {
    async uploadKeyPackages(req, conn) {
      const me = requireUser(conn);
      const lastResorts = [
        ...(req.lastResort.length > 0 ? [req.lastResort] : []),
        ...(req.lastResorts ?? []).map((b) => b.data),
      ];
      if (req.packages.length + lastResorts.length > MAX_KEY_PACKAGE_BATCH) {
        throw new ValidationError(`At most ${MAX_KEY_PACKAGE_BATCH} KeyPackages per upload`, {
          code: "too_large",
        });
      }
      const key = await store.getIdentityKey(me);
      if (!key) throw new UsageError("Publish an identity key before uploading KeyPackages");
      const batch: KeyPackageInput[] = [];
      for (const p of req.packages) {
        const { lastResort: _, ...input } = await checkOwnPackage(p.data, me, key);
        batch.push(input);
      }
      const bySuite = new Map<number, KeyPackageInput>();
      for (const bytes of lastResorts) {
        const { lastResort: _, ...lr } = await checkOwnPackage(bytes, me, key);
        if (bySuite.has(lr.cipherSuite)) {
          throw new ValidationError("At most one last-resort KeyPackage per cipher suite");
        }
        bySuite.set(lr.cipherSuite, lr);
      }
      for (const lr of bySuite.values()) await store.setLastResortKeyPackage(me, lr);
      const count = batch.length > 0
        ? await store.addKeyPackages(me, batch)
        : await store.countKeyPackages(me);
      return { kind: "keyPackageCount", count };
    },

    async fetchKeyPackage(req, conn) {
      const me = requireUser(conn);
      const username = checkUsernameSyntax(req.username);
      const suite = requestedSuite(req.cipherSuite);
      if (!(await store.getUser(username))) {
        throw new UsageError(`Unknown user ${username}`, { code: "not_found" });
      }
      // requester first: one refused there does not use up the target's allowance
      const mine = await perRequester.hit(me);
      if (!mine.allowed) throw fetchLimited("from you", mine.retryAfterMs);
      const theirs = await perTarget.hit(username);
      if (!theirs.allowed) throw fetchLimited(`of ${username}'s`, theirs.retryAfterMs);
      // No suite named (a v1.0 client): the default suite first, which such clients use.
      const kp = suite === 0
        ? (await store.consumeKeyPackage(username, { cipherSuite: DEFAULT_SUITE_ID }) ??
          await store.consumeKeyPackage(username))
        : await store.consumeKeyPackage(username, { cipherSuite: suite });
      if (!kp) {
        throw new UsageError(`${username} has no KeyPackages left: they need to come online once`, {
          code: "not_found",
        });
      }
      if (
        kp.lastResort ||
        await store.countKeyPackages(username, { cipherSuite: kp.cipherSuite }) <
          KEY_PACKAGE_LOW_WATER
      ) {
        await noticeKeyPackages(ctx, store, username);
      }
      return { kind: "keyPackage", data: kp.data };
    },

    async countKeyPackages(_req, conn) {
      const me = requireUser(conn);
      return { kind: "keyPackageCount", count: await store.countKeyPackages(me) };
    },

    async countKeyPackagesForSuite(req, conn) {
      const me = requireUser(conn);
      const cipherSuite = requestedSuite(req.cipherSuite);
      return { kind: "keyPackageCount", count: await store.countKeyPackages(me, { cipherSuite }) };
    },
  };
}
