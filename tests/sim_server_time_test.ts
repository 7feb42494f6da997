/**
 * The in-process server of the simulation (tests/sim/net.ts `MemServer`) waits on virtual
 * time only (issue 20: "no real sleep anywhere"): a login from an unknown source slowed down
 * by the shared per-account allowance (src/auth/rate_limit.ts) used to sleep with the
 * runtime's `setTimeout`, seconds of real time in a run that otherwise never waits.
 *
 * @module
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { MemServer } from "./sim/net.ts";
import { VirtualClock } from "./sim/vclock.ts";
import { clientLoginStart } from "../src/auth/opaque.ts";
import type { ConnectionState } from "../src/server/context.ts";
import { QpqError } from "../src/errors.ts";
import {
  LOGIN_SLOWDOWN_MAX_MS,
  LOGIN_UNKNOWN_SOURCE_BURST,
  LOGIN_UNKNOWN_SOURCE_REFILL_MS,
} from "../src/limits.ts";

Deno.test({
  name: "simulation server: a slowed login waits in virtual time, not in real time",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qpq-sim-time-" });
    const realNow = Date.now;
    const clock = new VirtualClock(Date.UTC(2026, 0, 1));
    // the server's limiters read Date.now: the simulation's, as in a run (sim.ts #setup)
    Date.now = clock.now;
    clock.start();
    let server: MemServer | undefined;
    try {
      server = await MemServer.start(dir, clock);
      const loginStart = server.dispatch.loginStart!;
      let id = 0;
      const from = (source: string): ConnectionState => ({
        id: ++id,
        remote: source,
        source,
        username: undefined,
        sessionHash: undefined,
        cleanups: new Set(),
      });
      const attempt = async (source: string, request?: Uint8Array) => {
        request ??= (await clientLoginStart("a guess")).request;
        try {
          await loginStart({ kind: "loginStart", username: "alice", request }, from(source), {
            requestId: id,
            signal: new AbortController().signal,
          } as never);
          return "ok";
        } catch (e) {
          if (e instanceof QpqError) return e.code;
          throw e;
        }
      };
      // the burst unknown sources share, spent at once (time held meanwhile, as a request
      // inside the server holds it in a run: the client's crypto is real work)
      clock.busy++;
      for (let i = 0; i < LOGIN_UNKNOWN_SOURCE_BURST; i++) {
        assertEquals(await attempt(`10.0.0.${i + 1}`), "ok");
      }
      clock.busy--;
      // the next token is due within the slowdown bound: that attempt waits for it
      const early = LOGIN_UNKNOWN_SOURCE_REFILL_MS - LOGIN_SLOWDOWN_MAX_MS / 2;
      await clock.sleep(early);
      const { request } = await clientLoginStart("a guess");
      const before = clock.now();
      const real = performance.now();
      assertEquals(await attempt("10.0.1.1", request), "ok");
      const waited = clock.now() - before;
      const realMs = performance.now() - real;
      assert(waited >= LOGIN_SLOWDOWN_MAX_MS / 2 - 100, `virtual wait ${waited} ms`);
      // the old real sleep took LOGIN_SLOWDOWN_MAX_MS / 2 = 4 s of real time
      assert(realMs < 2_000, `the slowed login took ${Math.round(realMs)} ms of real time`);
    } finally {
      await server?.stop();
      await clock.stop();
      Date.now = realNow;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
