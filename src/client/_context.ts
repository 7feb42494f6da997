/**
 * What every part of the client shares: the local state, the owner of the group states, who
 * we are, the clock, the event sink and the one lock that serializes changes of MLS group state.
 *
 * @module
 */
import type { IdentityKeyPair } from "../crypto/mod.ts";
import type { SignatureKeyPair } from "../mls/mod.ts";
import type { LocalState } from "../store/client/mod.ts";
import type { ClientEvent } from "./events.ts";
import { GroupStates } from "./group_states.ts";

/**
 * The timers the client waits with (retry back-offs, reconnects); default the runtime's.
 * The simulation passes virtual ones, so that waits cost no real time and replay exactly.
 */
export interface Timers {
  /** Run `fn` after `ms` milliseconds; returns a handle for {@link Timers.clearTimeout}. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancel a timer (an unknown or fired handle is ignored). */
  clearTimeout(handle: unknown): void;
}

/** The runtime's timers. */
export const REAL_TIMERS: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as number | undefined),
};

/** Shared by the client's parts. */
export class ClientContext {
  readonly state: LocalState;
  readonly identity: IdentityKeyPair;
  /** The one owner of decoded MLS group states. */
  readonly groups: GroupStates;
  readonly #emit: (e: ClientEvent) => void;
  readonly #now: () => number;
  /** The timers every wait of the client goes through. */
  readonly timers: Timers;
  /** Serializes every load-modify-save of MLS group state. */
  #lock: Promise<void> = Promise.resolve();

  constructor(
    state: LocalState,
    identity: IdentityKeyPair,
    emit: (e: ClientEvent) => void,
    now: () => number,
    timers: Timers = REAL_TIMERS,
  ) {
    this.timers = timers;
    this.state = state;
    this.groups = new GroupStates(state);
    this.identity = identity;
    this.#emit = emit;
    this.#now = now;
  }

  /** Our username. */
  get username(): string {
    return this.state.meta.username;
  }

  /** The time (ms since the epoch) from the client's clock. */
  now(): number {
    return this.#now();
  }

  /** Wait `ms` milliseconds on the client's timers. */
  sleep(ms: number): Promise<void> {
    return new Promise((r) => this.timers.setTimeout(r, ms));
  }

  /** Report an event (a failing sink never breaks the client). */
  emit(e: ClientEvent): void {
    try {
      this.#emit(e);
    } catch { /* the sink's problem */ }
  }

  /** Our signing key pair for MLS; zero `privateKey` when done. */
  signer(): SignatureKeyPair {
    return { publicKey: this.identity.publicKey, privateKey: this.identity.exportPrivateKey() };
  }

  /** Run `fn` alone: no other group-state change interleaves with it. Not re-entrant. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn);
    this.#lock = run.then(() => {}, () => {});
    return run;
  }
}
