/**
 * The KeyPackage part of the client: keeps a batch of KeyPackages (and a last-resort one)
 * on the server for every cipher suite the client supports, so others can add us to a
 * group of either suite, and holds their private parts until a Welcome uses them.
 *
 * @module
 */
import { createKeyPackage, DEFAULT_SUITE, type MlsSuiteName } from "../mls/mod.ts";
import { toHex, zeroize } from "../bytes.ts";
import type { KeyPackageRecord } from "../store/client/mod.ts";
import type { ClientContext } from "./_context.ts";
import type { Session } from "./session.ts";

/** KeyPackages uploaded per suite at registration and kept on the server. */
export const KEY_PACKAGE_BATCH = 20;
/** Refill when the server holds fewer than this many (per suite). */
export const KEY_PACKAGE_REFILL_BELOW = 5;
/** KeyPackage lifetime (seconds). */
export const KEY_PACKAGE_LIFETIME_SECONDS = 30 * 24 * 3600;

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
   * Upload KeyPackages until the server holds a full batch of the default suite (and a
   * last-resort one). Returns how many the server holds.
   */
  async refill(force = false): Promise<number> {
    const have = (await this.#session.call({ kind: "countKeyPackages" }, "keyPackageCount")).count;
    if (!force && have >= KEY_PACKAGE_REFILL_BELOW) return have;
    const packages: { data: Uint8Array }[] = [];
    for (let i = have; i < KEY_PACKAGE_BATCH; i++) {
      packages.push({ data: await this.make(DEFAULT_SUITE) });
    }
    const held = this.#ctx.state.listKeyPackages();
    const lastResort = held.some((k) => k.lastResort)
      ? new Uint8Array(0)
      : await this.make(DEFAULT_SUITE, true);
    const res = await this.#session.call(
      { kind: "uploadKeyPackages", packages, lastResort },
      "keyPackageCount",
    );
    return res.count;
  }

  /** Every private part we hold (a Welcome names the one it uses). */
  held(): KeyPackageRecord[] {
    return this.#ctx.state.listKeyPackages();
  }

  /** A Welcome used this one: forget it, unless it is a last-resort package. */
  used(record: KeyPackageRecord): void {
    if (!record.lastResort) this.#ctx.state.deleteKeyPackage(record.ref);
  }
}
