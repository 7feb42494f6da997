/**
 * Virtual time for the in-process simulation: one clock and one timer queue shared by the
 * clients (their `now` and `timers` seams), the in-process server (`defer`), the simulated
 * link (delays, request timeouts) and the simulation itself (deadlines, waits).
 *
 * ```
 * driver loop: run every ready task (real macrotask turns) ─► nothing moved for IDLE_TURNS
 *              turns and no request in the server? ─► jump to the earliest timer, fire it
 * ```
 *
 * Nothing waits in real time: a 4 s request timeout costs the few turns it takes to notice
 * that everything else is idle. Timers fire in (time, creation order): with no real I/O in
 * the world (SQLite is synchronous, fsync is off) a seed replays the same interleaving.
 *
 * @module
 */
import { setImmediate } from "node:timers";

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  /** Where it was set (only while tracing). */
  where?: string;
}

/**
 * The timer trace (`QPQ_SIM_TRACE=FILE deno task sim …`): one line per timer fired, its
 * virtual time and the frames that set it, and a mark per step. Two runs of one seed that
 * part show where in a diff of their traces (the first timer fired in one run only).
 */
let trace: string[] | undefined;

/** Start tracing timers (lines returned; the simulation writes them out at the end). */
export function startTrace(): string[] {
  trace ??= [];
  return trace;
}

/** A mark in the trace (a step begins); nothing when not tracing. */
export function traceMark(line: string): void {
  trace?.push(line);
}

function caller(): string {
  // our own and the libraries' frames only: the runtime's (how a microtask queue was
  // drained) differ from run to run with nothing else different
  // (and they count against the stack limit, so take enough frames to be past them)
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 40;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = limit;
  return stack.split("\n").slice(3).filter((l) => l.includes("file://"))
    .slice(0, 6)
    .map((l) =>
      l.trim().replace(/^at /, "").replace(/\(?file:\/\/\S*?\/(src|tests|node_modules)\//, "$1/")
        .replace(/:(\d+):\d+\)?$/, ":$1")
    )
    .join(" < ");
}

/** Turns without activity before virtual time may jump. */
const IDLE_TURNS = 4;

const turn = () => new Promise<void>((r) => setImmediate(r));

/** A virtual clock with timers; {@link VirtualClock.start} runs the driver. */
export class VirtualClock {
  #now: number;
  #seq = 0;
  #timers = new Map<number, Timer>();
  #running = false;
  #loop: Promise<void> | undefined;
  /** Bumped by anything that happens (frames, handlers); time jumps only when it stands. */
  activity = 0;
  /** Work in progress that time must not jump over (requests inside the server). */
  busy = 0;
  /** Timers fired (for the report). */
  fired = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(startMs: number) {
    this.#now = startMs;
  }

  /** The virtual time (ms since the epoch). */
  readonly now = (): number => this.#now;

  /** Run `fn` at virtual time now + `ms`. */
  readonly setTimeout = (fn: () => void, ms: number): number => {
    const id = ++this.#seq;
    const at = this.#now + Math.max(0, ms || 0);
    this.#timers.set(id, { at, seq: id, fn, ...(trace ? { where: caller() } : {}) });
    this.activity++;
    return id;
  };

  /** Cancel a timer. */
  readonly clearTimeout = (id: unknown): void => {
    if (typeof id === "number") this.#timers.delete(id);
  };

  /** Time jumps forward `ms` (a suspend and resume): timers now due fire next. */
  jump(ms: number): void {
    this.#now += Math.max(0, ms);
    this.activity++;
  }

  /** Wait `ms` of virtual time. */
  readonly sleep = (ms: number): Promise<void> =>
    new Promise((r) => this.setTimeout(() => r(), ms));

  /**
   * Resolves the next time nothing is runnable (before time jumps): real I/O started then
   * (a file store opening, with {@link VirtualClock.busy} held) cannot interleave with
   * other work differently from run to run.
   */
  idle(): Promise<void> {
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  /** True while the driver runs (timers fire, {@link VirtualClock.idle} resolves). */
  get running(): boolean {
    return this.#running;
  }

  /** Timers waiting. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Start the driver (idempotent). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#drive();
  }

  /** Stop the driver (pending timers stay; nothing fires any more). */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }

  async #drive(): Promise<void> {
    let still = 0;
    let seen = this.activity;
    while (this.#running) {
      await turn();
      if (this.activity !== seen || this.busy > 0) {
        seen = this.activity;
        still = 0;
        continue;
      }
      if (++still < IDLE_TURNS) continue;
      still = 0;
      if (this.#idleWaiters.length > 0) {
        this.#idleWaiters.shift()!();
        this.activity++;
        seen = this.activity;
        continue;
      }
      const next = this.#earliest();
      if (!next) {
        // nothing to fire: wait for real work (a file store opening) without spinning hot
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      this.#timers.delete(next.seq);
      if (next.at > this.#now) this.#now = next.at;
      this.fired++;
      trace?.push(`${this.#now} ${next.where}`);
      this.activity++;
      seen = this.activity;
      try {
        next.fn();
      } catch { /* a timer's own problem */ }
    }
  }

  #earliest(): Timer | undefined {
    let best: Timer | undefined;
    for (const t of this.#timers.values()) {
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
