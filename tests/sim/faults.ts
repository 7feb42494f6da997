/**
 * Fault injection at the client's two seams, for one client instance (one "process"):
 *
 * ```
 * QpqClient ──call──► FaultyLink ──► ServerConnection (QUIC) or SimLink (net.ts) ──► server
 *     │                 │ n-th call: crash before sending | crash after the answer came
 *     │                 │            lose the answer (TransportError; maybe drop the link)
 *     │                 │ push: delivered twice | dropped while offline or dead
 *     └──writes──► store proxy: n-th top-level write: crash before it (nothing of it lands)
 * ```
 *
 * A crash marks the instance dead: its links close, its store closes (nothing more reaches
 * the disk or the server), and whatever the old client object still runs fails. The
 * simulation then opens a new instance on the same files.
 *
 * @module
 */
import type { ConnectOptions, Connector, ServerLink } from "../../src/client/connection.ts";
import { connectServer } from "../../src/client/connection.ts";
import { TransportError } from "../../src/errors.ts";

/** A fault armed on one instance (counts from the moment it is armed). */
export type ArmedFault =
  | { kind: "crashAtCall"; n: number; after: boolean; only?: string }
  | { kind: "crashAtWrite"; n: number }
  | { kind: "crashInTransaction"; n: number }
  | { kind: "loseAnswer"; n: number; dropLink: boolean; only?: string };

/** Does call number `n` (the `kn`-th of its kind `kind`) hit the call fault `a`? */
function hits(a: ArmedFault, n: number, kind: string, kn: number): boolean {
  if (a.kind === "crashAtWrite" || a.kind === "crashInTransaction") return false;
  return a.only === undefined ? n >= a.n : kind === a.only && kn >= a.n;
}

/** Store methods that change the local state (ClientStore and LocalState names). */
const WRITE_PREFIXES = [
  "put",
  "add",
  "delete",
  "remove",
  "set",
  "update",
  "bump",
  "upsert",
  "save",
  "clear",
  "pin",
  "transaction",
];

function isWrite(name: string): boolean {
  return WRITE_PREFIXES.some((p) => name.startsWith(p));
}

/** The fault-injecting seams of one client instance. */
export class FaultySeams {
  #dead = false;
  #links = new Set<ServerLink>();
  #calls = 0;
  #kindCalls = new Map<string, number>();
  #writes = 0;
  #innerWrites = 0;
  #depth = 0;
  #armed: ArmedFault | undefined;
  #dupPushes = 0;
  #store: { close(): Promise<void> } | undefined;
  /** What happened (fault fired, pushes doubled), for the operation log. */
  readonly notes: string[] = [];
  /** True while the network is down for this client. */
  offline: () => boolean;
  /** Called once when a crash fault fires (the instance is dead from then on). */
  onCrash: () => void = () => {};

  /** The connector under the faults (QUIC, or the simulated network's). */
  readonly #inner: Connector;

  constructor(offline: () => boolean, inner: Connector = connectServer) {
    this.offline = offline;
    this.#inner = inner;
  }

  /** True after a crash: the instance must not touch anything any more. */
  get dead(): boolean {
    return this.#dead;
  }

  /** Arm one fault (replacing any armed one). */
  arm(f: ArmedFault | undefined): void {
    this.#armed = f;
    this.#calls = 0;
    this.#kindCalls.clear();
    this.#writes = 0;
    this.#innerWrites = 0;
  }

  /** The fault still armed (did not fire yet). */
  get armed(): ArmedFault | undefined {
    return this.#armed;
  }

  /** Deliver each of the next `n` pushes twice. */
  duplicatePushes(n: number): void {
    this.#dupPushes = n;
  }

  /** Crash now: close links and store without letting the client finish anything. */
  crash(why: string): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#armed = undefined;
    this.notes.push(`crash (${why})`);
    try {
      // Every store method throws from now on; close() is refused only inside a
      // transaction, and a crash point is never inside one.
      void this.#store?.close().catch(() => {});
    } catch {
      // inside a transaction: it rolls back as the throw unwinds (callbacks are
      // synchronous), then the store closes
      const store = this.#store;
      queueMicrotask(() => {
        try {
          void store?.close().catch(() => {});
        } catch { /* closing anyway */ }
      });
    }
    this.dropLinks();
    this.onCrash();
  }

  /** Close every open connection of this instance (network down or crash). */
  dropLinks(): void {
    for (const l of this.#links) void l.close().catch(() => {});
    this.#links.clear();
  }

  /** Wrap the store: counts top-level writes and crashes before the armed one. */
  wrapStore<T extends object>(store: T & { close(): Promise<void> }): T {
    this.#store = store;
    // deno-lint-ignore no-this-alias
    const seams = this;
    return new Proxy(store, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target);
        if (typeof v !== "function") return v;
        const name = String(prop);
        if (!isWrite(name)) return v.bind(target);
        return (...args: unknown[]) => {
          // a crashed process runs nothing more: whatever the old client object still does
          // (a catch that would record a queue position, a cleanup) writes nothing
          if (seams.#dead) throw new Error("crashed (simulated): the instance is dead");
          if (seams.#depth === 0) {
            seams.#writes++;
            const a = seams.#armed;
            if (a?.kind === "crashAtWrite" && seams.#writes >= a.n) {
              seams.crash(`before store write #${seams.#writes} ${name}`);
            }
          } else {
            seams.#innerWrites++;
            const a = seams.#armed;
            if (a?.kind === "crashInTransaction" && seams.#innerWrites >= a.n) {
              seams.crash(`inside a transaction, at write #${seams.#innerWrites} ${name}`);
              throw new Error("crashed inside a transaction (simulated)");
            }
          }
          seams.#depth++;
          try {
            return v.apply(target, args);
          } finally {
            seams.#depth--;
          }
        };
      },
    });
  }

  /** The connector to give the client. */
  readonly connect: Connector = async (options: ConnectOptions): Promise<ServerLink> => {
    if (this.#dead || this.offline()) {
      throw new TransportError("Cannot reach the server (simulated network down)", {
        code: "unavailable",
      });
    }
    const userPush = options.onPush;
    const real = await this.#inner({
      ...options,
      onPush: (push, id) => {
        if (this.#dead || this.offline() || !userPush) return;
        userPush(push, id);
        if (this.#dupPushes > 0) {
          this.#dupPushes--;
          this.notes.push("push delivered twice");
          queueMicrotask(() => {
            if (!this.#dead && !this.offline()) userPush(push, id);
          });
        }
      },
    });
    if (this.#dead || this.offline()) {
      await real.close();
      throw new TransportError("Cannot reach the server (simulated network down)", {
        code: "unavailable",
      });
    }
    this.#links.add(real);
    const down = () => new TransportError("Connection lost (simulated)", { code: "unavailable" });
    const link: ServerLink = {
      server: real.server,
      call: async (request, expect, callOptions) => {
        if (this.#dead || this.offline()) throw down();
        const n = ++this.#calls;
        const kn = (this.#kindCalls.get(request.kind) ?? 0) + 1;
        this.#kindCalls.set(request.kind, kn);
        const a = this.#armed;
        if (a?.kind === "crashAtCall" && !a.after && hits(a, n, request.kind, kn)) {
          this.crash(`before sending call #${n} ${request.kind}`);
          throw down();
        }
        const answer = await real.call(request, expect, callOptions);
        if (this.#dead) throw down();
        const b = this.#armed;
        if (b?.kind === "crashAtCall" && b.after && hits(b, n, request.kind, kn)) {
          this.crash(`after the answer to call #${n} ${request.kind}`);
          throw down();
        }
        if (b?.kind === "loseAnswer" && hits(b, n, request.kind, kn)) {
          this.#armed = undefined;
          this.notes.push(`answer to ${request.kind} lost${b.dropLink ? " (link dropped)" : ""}`);
          if (b.dropLink) {
            this.#links.delete(real);
            await real.close().catch(() => {});
          }
          throw new TransportError("Connection lost before the answer (simulated)", {
            code: "unavailable",
          });
        }
        return answer;
      },
      close: async () => {
        this.#links.delete(real);
        await real.close();
      },
    };
    return link;
  };
}
