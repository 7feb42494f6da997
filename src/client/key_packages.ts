/**
 * The KeyPackage part of the client: keeps a batch of KeyPackages (and a last-resort one)
 * on the server for every cipher suite the client supports, so others can add us to a
 * group of either suite, and holds their private parts until a Welcome uses them.
 *
 * @module
 */
import { createKeyPackage, DEFAULT_SUITE, type MlsSuiteName, SUITE_IDS } from "../mls/mod.ts";
import { toHex, zeroize } from "../bytes.ts";
import type { KeyPackageRecord } from "../store/client/mod.ts";
import type { ClientContext } from "./_context.ts";
import type { Session } from "./session.ts";

import {
  KEY_PACKAGE_BATCH,
  KEY_PACKAGE_CHECK_INTERVAL_MS,
  KEY_PACKAGE_LIFETIME_SECONDS,
  KEY_PACKAGE_REFILL_BELOW,
} from "../limits.ts";
export {
  KEY_PACKAGE_BATCH,
  KEY_PACKAGE_CHECK_INTERVAL_MS,
  KEY_PACKAGE_LIFETIME_SECONDS,
  KEY_PACKAGE_REFILL_BELOW,
};

/** The suites this client makes KeyPackages for (invitable into groups of each). */
export const SUPPORTED_SUITES: readonly MlsSuiteName[] = [
  DEFAULT_SUITE,
  "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
];

/** Our KeyPackages. */
export class KeyPackages {
  #ctx: ClientContext;
  #session: Session;

  constructor(ctx: ClientContext, session: Session) {
    this.#ctx = ctx;
    this.#session = session;
  }

  /** Make one KeyPackage, keep its private part, return the public one. */
  async make(suite: MlsSuiteName, lastResort = false): Promise<Uint8Array> {
    const signer = this.#ctx.signer();
    try {
      const kp = await createKeyPackage({
        username: this.#ctx.username,
        identity: signer,
        suite,
        lifetimeSeconds: KEY_PACKAGE_LIFETIME_SECONDS,
        ...(lastResort ? { lastResort: true } : {}),
      });
      this.#ctx.state.putKeyPackage({
        ref: toHex(kp.ref),
        suite,
        lastResort,
        privatePackage: kp.privatePackage,
      });
      return kp.publicPackage;
    } finally {
      zeroize(signer.privateKey);
    }
  }

  /**
   * Upload KeyPackages until the server holds a full batch of every supported suite (and a
   * last-resort one per suite). Returns how many the server holds of the default suite.
   */
  async refill(force = false): Promise<number> {
    const held = this.#ctx.state.listKeyPackages();
    const packages: { data: Uint8Array }[] = [];
    const lastResorts: { data: Uint8Array }[] = [];
    let defaultCount = 0;
    for (const suite of SUPPORTED_SUITES) {
      const have = (await this.#session.call(
        { kind: "countKeyPackagesForSuite", cipherSuite: SUITE_IDS[suite] },
        "keyPackageCount",
      )).count;
      if (suite === DEFAULT_SUITE) defaultCount = have;
      if (!force && have >= KEY_PACKAGE_REFILL_BELOW) continue;
      for (let i = have; i < KEY_PACKAGE_BATCH; i++) {
        packages.push({ data: await this.make(suite) });
      }
      // records migrated from before suites were recorded are of the default suite
      const hasLastResort = held.some((k) =>
        k.lastResort && (k.suite === suite || (k.suite === "" && suite === DEFAULT_SUITE))
      );
      // after a notice the last resort is replaced: fewer groups share its init key. The
      // old private part is kept, for Welcomes already made with it.
      if (!hasLastResort || this.#rotate) {
        lastResorts.push({ data: await this.make(suite, true) });
      }
    }
    if (packages.length === 0 && lastResorts.length === 0) return defaultCount;
    await this.#session.call(
      { kind: "uploadKeyPackages", packages, lastResort: new Uint8Array(0), lastResorts },
      "keyPackageCount",
    );
    this.#rotate = false;
    return (await this.#session.call(
      { kind: "countKeyPackagesForSuite", cipherSuite: SUITE_IDS[DEFAULT_SUITE] },
      "keyPackageCount",
    )).count;
  }

  /** Every private part we hold (a Welcome names the one it uses). */
  held(): KeyPackageRecord[] {
    return this.#ctx.state.listKeyPackages();
  }

  /** A Welcome used this one: forget it, unless it is a last-resort package. */
  used(record: KeyPackageRecord): void {
    if (!record.lastResort) this.#ctx.state.deleteKeyPackage(record.ref);
    this.#spent = true;
  }

  #spent = false;
  #rotate = false;
  #checkedAt = -Infinity;

  /**
   * The server said our KeyPackages run low or handed out our last resort (a
   * `serverNotice`): refill and replace the last resorts at the next
   * {@link refillIfSpent}.
   */
  noticed(): void {
    this.#spent = true;
    this.#rotate = true;
  }

  /**
   * Refill after a Welcome used one of ours, and otherwise at most every
   * {@link KEY_PACKAGE_CHECK_INTERVAL_MS} (others may have fetched some): not two count
   * round trips after every delivery.
   */
  async refillIfSpent(): Promise<void> {
    const now = this.#ctx.now();
    if (!this.#spent && now - this.#checkedAt < KEY_PACKAGE_CHECK_INTERVAL_MS) return;
    this.#spent = false;
    this.#checkedAt = now;
    await this.refill();
  }
}
