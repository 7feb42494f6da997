/**
 * A small fixed world for scripted regression scenarios (histories the simulation found,
 * replayed step by step without randomness): a real server process and a few registered
 * clients behind the same fault seams.
 *
 * ```ts
 * await using w = await World.start(["a", "b", "c"]);
 * await w.c("a").createGroup("g");
 * w.a("a").seams.arm({ kind: "loseAnswer", n: 1, only: "commit", dropLink: false });
 * await w.c("a").invite("#g", ["b", "c"]);
 * await w.syncAll();
 * w.agree("#g", ["a", "b", "c"]);   // throws unless all agree on epoch and roster
 * ```
 *
 * @module
 */
import type { QpqClient } from "../../src/client/client.ts";
import { Actor } from "./actor.ts";
import { ServerProcess } from "./server_process.ts";

/** A server process and registered clients. */
export class World {
  readonly server: ServerProcess;
  readonly dir: string;
  readonly #actors = new Map<string, Actor>();
  #talks = 0;

  private constructor(server: ServerProcess, dir: string) {
    this.server = server;
    this.dir = dir;
  }

  /** Start a server and register (and subscribe) one client per name. */
  static async start(names: string[]): Promise<World> {
    const dir = await Deno.makeTempDir({ prefix: "qpq-sim-world-" });
    await Deno.mkdir(`${dir}/server`);
    const server = await ServerProcess.start(`${dir}/server`);
    const w = new World(server, dir);
    for (const n of names) {
      const a = new Actor(n, dir, { addr: server.addr, certPem: server.certPem }, {
        timeoutMs: 5_000,
        store: "memory",
      });
      await a.open(true);
      await a.register();
      w.#actors.set(n, a);
    }
    return w;
  }

  /** The actor `name`. */
  a(name: string): Actor {
    const a = this.#actors.get(name);
    if (!a) throw new Error(`no actor ${name}`);
    return a;
  }

  /** The client of `name`. */
  c(name: string): QpqClient {
    return this.a(name).client;
  }

  /** Every client syncs, `rounds` times over (commits of leaves need a second round). */
  async syncAll(rounds = 3): Promise<void> {
    for (let i = 0; i < rounds; i++) {
      for (const a of this.#actors.values()) await a.client.sync().catch(() => {});
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Does `name` list the conversation `ref` (and is it not broken)? */
  lists(name: string, ref: string): { listed: boolean; broken?: string } {
    const c = (this.c(name).listConversations() as { name: string; broken?: string }[])
      .find((x) => x.name === ref);
    return c ? { listed: true, ...(c.broken ? { broken: c.broken } : {}) } : { listed: false };
  }

  /**
   * Problems with `members` agreeing on `ref`: each lists it (not broken), all have the same
   * epoch and authenticator, and the roster is exactly `members`. Empty when all is well.
   */
  disagreements(ref: string, members: string[]): string[] {
    const problems: string[] = [];
    const want = [...members].sort().join(",");
    let first: { who: string; key: string } | undefined;
    for (const m of members) {
      const l = this.lists(m, ref);
      if (!l.listed) problems.push(`${m} does not list ${ref}`);
      if (l.broken) problems.push(`${m}: ${ref} is broken: ${l.broken}`);
      try {
        const roster = [...this.c(m).members(ref)].sort().join(",");
        const e = this.c(m).epochInfo(ref);
        const key = `epoch ${e.epoch} auth ${e.authenticator.slice(0, 12)} roster [${roster}]`;
        if (roster !== want) problems.push(`${m} sees roster [${roster}], expected [${want}]`);
        if (first && first.key !== key) problems.push(`${first.who}: ${first.key}; ${m}: ${key}`);
        first ??= { who: m, key };
      } catch (e) {
        problems.push(`${m}: ${(e as Error).message}`);
      }
    }
    return problems;
  }

  /**
   * Liveness: each of `members` sends one message to `ref`; after a sync every other member
   * shows each exactly once and nobody else shows any. Problems, empty when all is well.
   */
  async talk(ref: string, members: string[], others: string[] = []): Promise<string[]> {
    const problems: string[] = [];
    const tag = `t${++this.#talks}`;
    for (const m of members) {
      try {
        await this.c(m).send(ref, `${tag}-${m}`);
      } catch (e) {
        problems.push(`${m} cannot send to ${ref}: ${(e as Error).message}`);
      }
    }
    await this.syncAll();
    for (const r of [...members, ...others]) {
      const bodies = this.a(r).history(ref).map((h) => h.body);
      for (const m of members) {
        if (m === r) continue;
        const n = bodies.filter((b) => b === `${tag}-${m}`).length;
        const want = members.includes(r) ? 1 : 0;
        if (n !== want) problems.push(`${r} shows ${m}'s message ${n} times (expected ${want})`);
      }
    }
    return problems;
  }

  /** Stop everything and remove the temp dir. */
  async close(): Promise<void> {
    for (const a of this.#actors.values()) await a.close();
    await this.server.stop("SIGTERM");
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  /** `await using w = await World.start(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
