/**
 * KeyPackage directory: members upload batches of MLS KeyPackages (each verified: its
 * signature, lifetime, suite, and that its credential and key are the uploader's own);
 * others fetch one to add that member to a group, consuming it.
 *
 * @module
 */
import { parseKeyPackage } from "../mls/mod.ts";
import type { KeyPackageInput, ServerStore } from "../store/server/mod.ts";
import { constantTimeEqual } from "../bytes.ts";
import { UsageError, ValidationError } from "../errors.ts";
import { MAX_KEY_PACKAGE_BATCH } from "../limits.ts";
import type { HandlerTable } from "./context.ts";
import { requireUser } from "./accounts.ts";
import { checkUsernameSyntax } from "./_names.ts";

async function checkOwnPackage(
  bytes: Uint8Array,
  username: string,
  identityKey: Uint8Array,
): Promise<KeyPackageInput & { lastResort: boolean }> {
  const parsed = await parseKeyPackage(bytes);
  if (parsed.username !== username) {
    throw new ValidationError("KeyPackage credential is not the uploader's username");
  }
  if (!constantTimeEqual(parsed.signaturePublicKey, identityKey)) {
    throw new ValidationError("KeyPackage key is not the uploader's identity key");
  }
  return {
    ref: parsed.ref,
    data: bytes,
    notAfter: Number(parsed.notAfter) * 1000,
    lastResort: parsed.lastResort,
  };
}

/** Handlers of the KeyPackage directory. */
export function keyPackageHandlers(store: ServerStore): HandlerTable {
  return {
    async uploadKeyPackages(req, conn) {
      const me = requireUser(conn);
      if (req.packages.length > MAX_KEY_PACKAGE_BATCH) {
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
      if (req.lastResort.length > 0) {
        const { lastResort: _, ...lr } = await checkOwnPackage(req.lastResort, me, key);
        await store.setLastResortKeyPackage(me, lr);
      }
      const count = batch.length > 0
        ? await store.addKeyPackages(me, batch)
        : await store.countKeyPackages(me);
      return { kind: "keyPackageCount", count };
    },

    async fetchKeyPackage(req, conn) {
      requireUser(conn);
      const username = checkUsernameSyntax(req.username);
      if (!(await store.getUser(username))) {
        throw new UsageError(`Unknown user ${username}`, { code: "not_found" });
      }
      const kp = await store.consumeKeyPackage(username);
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
  };
}
