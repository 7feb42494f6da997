/**
 * The qpq crypto provider for ts-mls: builds (and caches) a ts-mls `CiphersuiteImpl` per
 * supported cipher suite.
 *
 * @module
 */

import { type CiphersuiteImpl, getCiphersuiteFromName, getCiphersuiteImpl } from "ts-mls";

/** The MLS cipher suites qpq offers. */
export type MlsSuiteName =
  | "MLS_256_XWING_AES256GCM_SHA512_Ed25519"
  | "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

/** The cipher suite new groups use unless told otherwise: X-Wing (ML-KEM-768 + X25519). */
export const DEFAULT_SUITE: MlsSuiteName = "MLS_256_XWING_AES256GCM_SHA512_Ed25519";

const cache = new Map<MlsSuiteName, Promise<CiphersuiteImpl>>();

/**
 * The ts-mls `CiphersuiteImpl` for `name`, built once per process and cached.
 *
 * @param name one of the suites in {@link MlsSuiteName}
 * @returns the cipher suite implementation to pass to ts-mls group functions
 */
export function getCiphersuite(name: MlsSuiteName): Promise<CiphersuiteImpl> {
  let impl = cache.get(name);
  if (impl === undefined) {
    impl = getCiphersuiteImpl(getCiphersuiteFromName(name));
    cache.set(name, impl);
  }
  return impl;
}
