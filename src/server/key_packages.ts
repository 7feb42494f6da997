/**
 * KeyPackage directory: members upload batches of MLS KeyPackages (each verified: its
 * signature, lifetime, suite, and that its credential and key are the uploader's own);
 * others fetch one to add that member to a group, consuming it. Packages are filed per
 * MLS cipher suite (read from each package's header): a fetch or count may name a suite,
 * and each user has at most one last-resort package per suite.
 *
 * ```
 * upload ─► per package: suite from header ─► verify (own name and key) ─► store (suite)
 * fetch(user, suite) ─► oldest batch package of that suite ─► else its last resort
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
import { constantTimeEqual } from "../bytes.ts";
import { UsageError, ValidationError } from "../errors.ts";
import { MAX_KEY_PACKAGE_BATCH } from "../limits.ts";
import type { HandlerTable } from "./context.ts";
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

/** Handlers of the KeyPackage directory. */
export function keyPackageHandlers(store: ServerStore): HandlerTable {
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
      requireUser(conn);
      const username = checkUsernameSyntax(req.username);
      const suite = requestedSuite(req.cipherSuite);
      if (!(await store.getUser(username))) {
        throw new UsageError(`Unknown user ${username}`, { code: "not_found" });
      }
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
