/**
 * Open (or create, with a new Ed25519 identity) the encrypted local state of an account.
 *
 * @module
 */
import { ClientStore } from "../store/client/mod.ts";
import { IdentityKeyPair } from "../crypto/mod.ts";
import type { Argon2idParams } from "../crypto/mod.ts";

/** Options of {@link openLocalStore}. */
export interface OpenLocalStoreOptions {
  /** Create the state (new identity) when it does not exist. */
  create: boolean;
  /** Username recorded in a new state. */
  username: string;
  /** Server recorded in a new state. */
  server: string;
  /** Status lines before slow steps. */
  onProgress?: (text: string) => void;
  /** Argon2id parameters for a new state (tests only; default: OWASP minimum). */
  kdf?: Argon2idParams;
}

/** Open the state at `path`, creating it with a fresh identity when allowed. */
export async function openLocalStore(
  path: string,
  password: string,
  options: OpenLocalStoreOptions,
): Promise<ClientStore> {
  let identity: IdentityKeyPair | undefined;
  if (options.create) identity = IdentityKeyPair.generate();
  try {
    return await ClientStore.open(path, password, {
      create: options.create,
      ...(identity
        ? {
          initialMeta: {
            username: options.username,
            server: options.server,
            identitySeed: identity.exportPrivateKey(),
            identityPublic: identity.publicKey,
          },
        }
        : {}),
      ...(options.kdf ? { kdf: options.kdf } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
  } finally {
    identity?.destroy();
  }
}
