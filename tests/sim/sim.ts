/**
 * The seeded multi-client simulation (FoundationDB simulation / TigerBeetle VOPR style):
 * K real clients against a real server process, M steps of group operations and faults
 * chosen by one seed, and the invariants of check.ts at every quiescent point.
 *
 * ```
 * setup: server process ─► K clients register + subscribe
 * step s (its own PRNG stream, fork(seed, s)):
 *   pick an operation (send, burst, create+invite, dm, invite, remove, leave, update,
 *   two commits at once, offline, back online, crash, lost answer, doubled push,
 *   server SIGTERM/SIGKILL) ─► run it ─► apply its outcome to the model
 *   (ok: the change; refused: nothing; unknown: its targets "in doubt")
 * every N steps and at the end: settle (flush + sync until quiet) ─► resolve doubts ─►
 *   agreement + conversations ─► every member sends a probe ─► settle ─► messages
 * a violation: seed, step, invariant, and the operation log that replays it
 * ```
 *
 * Real processes and sockets make the timing (and so the winner of a race) vary between
 * runs of one seed; the sequence of operations and faults does not, and each step draws
 * from its own stream, so a history replays closely.
 *
 * @module
 */
import { Actor } from "./actor.ts";
import {
  checkAdmins,
  checkAgreement,
  checkChanges,
  type CheckContext,
  checkConversations,
  checkMessages,
  checkReceipts,
  checkServerRoster,
  historyReader,
  observedRoster,
  onlineActors,
} from "./check.ts";
import { type GroupModel, type MessageModel, Model, refFor } from "./model.ts";
import type { SeenMessage } from "./actor.ts";
import { Prng } from "./prng.ts";
import { ServerProcess } from "./server_process.ts";
import type { ArmedFault } from "./faults.ts";
import { TransportError } from "../../src/errors.ts";
import { connectServer } from "../../src/client/connection.ts";
import { REMOVED_FAILURE } from "../../src/client/outbox.ts";
import { MemServer, SimNet } from "./net.ts";
import { traceMark, VirtualClock } from "./vclock.ts";
import { getHashFns } from "../../src/mls/_provider_primitives.ts";
import { getCiphersuite } from "../../src/mls/provider.ts";

/** The cipher suites groups are created with. */
/** Requests a fault may single out (the ones that change something on the server). */
const CALL_KINDS = ["commit", "enqueue", "fetch", "ack", "fetchKeyPackage"] as const;

/** Replace `crypto.getRandomValues` in this process with draws from `rng` (memory mode). */
function seedGetRandomValues(rng: Prng): void {
  const fill = <T extends ArrayBufferView | null>(array: T): T => {
    if (array === null) return array;
    const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    for (let i = 0; i < bytes.length; i += 4) {
      let x = rng.next();
      for (let j = i; j < Math.min(i + 4, bytes.length); j++) {
        bytes[j] = x & 0xff;
        x >>>= 8;
      }
    }
    return array;
  };
  (crypto as { getRandomValues: unknown }).getRandomValues = fill;
}

/** Newest messages of a conversation {@link Simulation} reads first for a pending one. */
const OBSERVE_RECENT = 64;

/** At most this share of the messages may have an excused check (plus 5). */
const DOUBT_BOUND = 0.25;

/** Every kind of step (for `--skip`). */
export const STEP_KINDS = [
  "send",
  "burst",
  "create",
  "dm",
  "invite",
  "remove",
  "leave",
  "update",
  "concurrent",
  "offline",
  "back",
  "crash",
  "lost",
  "dup",
  "restart",
  "partition",
  "powercut",
  "diskfull",
  "clock",
  "edit",
  "delete",
  "react",
  "read",
  "admin",
  "badremove",
  "badedit",
] as const;

/**
 * Operation families and the check that proves them: a run that scheduled one at least
 * {@link VACUITY_MIN} times while its check never ran fails (an invariant that cannot fail).
 */
const FAMILIES: Record<string, string> = {
  edit: "check.edit",
  delete: "check.delete",
  react: "check.reaction",
  read: "check.receipt-read",
  admin: "check.admins",
  badremove: "check.refused-removal",
  badedit: "check.refused-change",
};
const VACUITY_MIN = 3;

/** Reactions the simulation chooses from (never the one the reactor shows: no toggles). */
const EMOJI = ["👍", "🎉", "❤️", "😂"] as const;

/**
 * The fault families of the storage and clock faults and the counters that say each fired
 * (`fault.…` in the stats). A run of at least {@link FAULT_FLOOR_STEPS} steps in which an
 * enabled family never fired fails (`fault-fired`): it must not pass vacuously.
 */
export const FAULT_FAMILIES: Record<
  string,
  { step: string; memoryOnly: boolean; fileStoreOnly?: boolean }
> = {
  "power-cut": { step: "powercut", memoryOnly: true },
  "power-cut-at-answer": { step: "powercut", memoryOnly: true },
  "disk-full": { step: "diskfull", memoryOnly: true },
  "clock-skew": { step: "clock", memoryOnly: true },
  "client-suspend": { step: "clock", memoryOnly: true },
  "time-jump": { step: "clock", memoryOnly: true },
  "crash-at-call": { step: "crash", memoryOnly: false },
  "crash-at-write": { step: "crash", memoryOnly: false },
  "crash-in-transaction": { step: "crash", memoryOnly: false },
  // every second crash of a client on files: the power fails at the crash point
  "client-power-cut": { step: "crash", memoryOnly: false, fileStoreOnly: true },
};

/** Runs at least this long must see every enabled fault family fire. */
export const FAULT_FLOOR_STEPS = 1_000;

export const SUITES = [
  "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
  "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
] as const;

/** Options of {@link runSim}. */
export interface SimOptions {
  seed: number;
  steps: number;
  clients: number;
  /** Quiescent check every this many steps (and at the end). */
  checkEvery?: number;
  /** Inject faults (default true). */
  faults?: boolean;
  /**
   * Client state: "file" (encrypted SQLite files), "memory" ({@link MemoryLocalState}), or
   * "mixed" (default: every third client on files, the rest in memory; crashes hit both).
   */
  store?: "file" | "memory" | "mixed";
  /** Step kinds never chosen (to explore past a known bug, or to narrow a replay). */
  skip?: readonly string[];
  /**
   * Step numbers not run (`--drop`, what `--shrink` removes): every other step still draws
   * from its own stream, so the rest of the run stays what it was wherever it can.
   */
  drop?: readonly number[];
  /**
   * A synthetic violation ("synthetic") at the first step of this kind: a failure whose
   * cause is known, for testing `--shrink` (tests/sim_test.ts). Never set otherwise.
   */
  failOn?: string;
  /**
   * Weights replacing the defaults of these step kinds where they apply at all (e.g. the
   * CI's storage and clock run: `{ powercut: 12, crash: 10 }`).
   */
  weights?: Readonly<Record<string, number>>;
  /**
   * Groups of this size too (`--big-group`): a create step then invites, one time in four,
   * everyone up to this many members instead of one to three (capped by the clients).
   */
  bigGroup?: number;
  /** Suites new groups use (default both). */
  suites?: readonly string[];
  /** Continue after a violation (default: stop at the check that found it). */
  keepGoing?: boolean;
  /** Log every step to `progress`. */
  verbose?: boolean;
  /** Client request timeout (ms). */
  timeoutMs?: number;
  /** An operation running longer than this is a "stuck" violation (ms). */
  opDeadlineMs?: number;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
  /**
   * "memory" (default): the server's services in this process, clients on a simulated
   * network, virtual time (net.ts, vclock.ts). "process": a real server process over QUIC,
   * real time, SIGTERM/SIGKILL.
   */
  mode?: "memory" | "process";
}

/** A broken invariant. */
export interface Violation {
  step: number;
  invariant: string;
  detail: string;
}

/** What a run found. */
export interface SimResult {
  seed: number;
  steps: number;
  clients: number;
  violations: Violation[];
  /** One line per step: the operation log that replays the run. */
  log: string[];
  elapsedMs: number;
  /** Counters (steps by kind, faults fired, operations refused). */
  stats: Record<string, number>;
  /** Diagnostics for a violation: recent events of the clients named, server log tail. */
  diagnostics: string[];
}

type StepKind = typeof STEP_KINDS[number];

/** One group change an actor can make. */
interface CommitPlan {
  op: "invite" | "remove" | "leave" | "update";
  actor: Actor;
  g: GroupModel;
  targets: string[];
}

/** How an operation ended. */
type Outcome = { ok: true } | { ok: false; error: unknown; text: string; hung?: boolean };

function errText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: string }).code;
    return `${e.name}${code ? `(${code})` : ""}: ${e.message}`;
  }
  return String(e);
}

function isTransport(e: unknown): boolean {
  return e instanceof TransportError ||
    (e instanceof Error && ["unavailable", "timeout", "transport"].includes(
      (e as { code?: string }).code ?? "",
    ));
}

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A run's directory: under `QPQ_SIM_DIR`, else (memory mode) a memory file system
 * (`/dev/shm`) when one can be written, else the system's temp dir. An fsync on a real
 * disk proves nothing here (the simulated disk decides what a power cut keeps) and cost a
 * third of a run: each COMMIT of a client on a file store is fsynced (`synchronous =
 * FULL`). Deno lets a program at /dev/shm only with `--allow-all` (denoland/deno#30979):
 * the `sim` task runs with it (with --allow-run it could spawn anything anyway); without
 * it the run falls back to the temp dir. The process mode's server runs with its own
 * narrower flags, so it stays in the temp dir.
 */
async function makeSimDir(mode: "memory" | "process"): Promise<string> {
  const env = Deno.env.get("QPQ_SIM_DIR");
  if (env) return await Deno.makeTempDir({ prefix: "qpq-sim-", dir: env });
  // (the server process of the process mode runs without --allow-all)
  if (mode === "process") return await Deno.makeTempDir({ prefix: "qpq-sim-" });
  try {
    return await Deno.makeTempDir({ prefix: "qpq-sim-", dir: "/dev/shm" });
  } catch {
    return await Deno.makeTempDir({ prefix: "qpq-sim-" });
  }
}

/** Run one seeded simulation. */
export async function runSim(options: SimOptions): Promise<SimResult> {
  const sim = new Simulation(options);
  try {
    return await sim.run();
  } finally {
    await sim.teardown();
  }
}

class Simulation implements CheckContext {
  readonly #o:
    & Required<Omit<SimOptions, "progress" | "failOn" | "bigGroup">>
    & Pick<SimOptions, "progress" | "failOn" | "bigGroup">;
  readonly model = new Model();
  actors: Actor[] = [];
  #server: ServerProcess | undefined;
  #mem: MemServer | undefined;
  #net: SimNet | undefined;
  #clock: VirtualClock | undefined;
  #dir = "";
  readonly #log: string[] = [];
  readonly violations: Violation[] = [];
  readonly #stats: Record<string, number> = {};
  /**
   * Leaves reported done, per group key. MLS lets nobody commit their own removal: when
   * another commit makes the proposal stale, the leaver proposes again — which it can only do
   * online. A leaver gone offline before its removal was committed is in doubt until back.
   */
  readonly #leaves = new Map<string, Set<string>>();
  /** Each client's offline spans (what it knows of its groups stops at a span's start). */
  readonly #offline = new Map<string, { from: number; to: number }[]>();
  readonly #diagnostics: string[] = [];
  #step = 0;
  /** Crashes of clients on files so far (every second one is a power cut). */
  #fileCrashes = 0;
  #line: string[] = [];
  #started = 0;
  #phase = "setup";
  #implicated = new Set<string>();

  constructor(o: SimOptions) {
    this.#o = {
      checkEvery: 20,
      faults: true,
      suites: SUITES,
      store: "mixed",
      skip: [],
      drop: [],
      weights: {},
      keepGoing: false,
      verbose: false,
      timeoutMs: 4_000,
      opDeadlineMs: 120_000,
      mode: "memory",
      ...o,
    };
  }

  // ------------------------------------------------------------------ run

  async run(): Promise<SimResult> {
    this.#started = performance.now();
    const ticker = setInterval(() => this.#progress(), 3_000);
    const { steps, checkEvery } = this.#o;
    let done = 0;
    try {
      this.#phase = "setup";
      await this.#setup();
      this.#phase = "steps";
      this.#stats["setup-ms"] = Math.round(performance.now() - this.#started);
      const drop = new Set(this.#o.drop ?? []);
      for (let s = 1; s <= steps; s++) {
        this.#step = s;
        if (drop.has(s)) {
          this.#log.push(`step ${s}: dropped`);
          continue;
        }
        await this.#runStep(s);
        done = s;
        if (this.violations.length > 0 && !this.#o.keepGoing) break;
        if (s % checkEvery === 0 && s < steps) {
          this.#phase = "check";
          const c0 = performance.now();
          await this.#check(s + 0.5, false);
          this.#count("check-ms", Math.round(performance.now() - c0));
          this.#phase = "steps";
          if (this.violations.length > 0 && !this.#o.keepGoing) break;
        }
      }
      if (this.violations.length === 0 || this.#o.keepGoing) {
        this.#step = done;
        this.#phase = "final check";
        const c0 = performance.now();
        await this.#check(done + 0.5, true);
        this.#count("check-ms", Math.round(performance.now() - c0));
        if (done >= FAULT_FLOOR_STEPS) this.#checkFaultsFired();
      }
    } finally {
      clearInterval(ticker);
    }
    this.#phase = "done";
    this.#progress();
    if (this.#net) {
      for (const [k, v] of Object.entries(this.#net.fired)) this.#stats[`net.${k}`] = v;
      this.#stats["tap.frames-judged"] = this.#net.ledger.checked;
      this.#stats["server.purges"] = this.#mem!.purges;
      this.#stats["virtual-s"] = Math.round((this.#clock!.now() - Date.UTC(2026, 0, 1)) / 1000);
    }
    if (this.violations.length > 0) this.#collectDiagnostics();
    return {
      seed: this.#o.seed,
      steps: done,
      clients: this.#o.clients,
      violations: this.violations,
      log: this.#log,
      elapsedMs: performance.now() - this.#started,
      stats: this.#stats,
      diagnostics: this.#diagnostics,
    };
  }

  /** Every enabled fault family fired at least once (a long run cannot pass vacuously). */
  #checkFaultsFired(): void {
    if (!this.#o.faults) return;
    for (const [name, f] of Object.entries(FAULT_FAMILIES)) {
      if (f.memoryOnly && !this.#net) continue;
      if (f.fileStoreOnly && this.#o.store === "memory") continue;
      if (this.#o.skip.includes(f.step)) continue;
      if ((this.#stats[`fault.${name}`] ?? 0) > 0) continue;
      this.violate(
        "fault-fired",
        `fault ${name} never fired in ${this.#step} steps (step ${f.step} chosen ${
          this.#stats[`step.${f.step}`] ?? 0
        } times): its weight is too low or it cannot reach its point`,
      );
    }
  }

  #progress(): void {
    const secs = (performance.now() - this.#started) / 1000;
    this.#o.progress?.(
      `sim: seed ${this.#o.seed} ${this.#phase}, step ${this.#step}/${this.#o.steps}, ${
        (this.#step / Math.max(secs, 0.001)).toFixed(2)
      } steps/s, ${this.violations.length} violations, ${secs.toFixed(0)}s`,
    );
  }

  async #setup(): Promise<void> {
    this.#dir = await makeSimDir(this.#o.mode);
    await Deno.mkdir(`${this.#dir}/server`);
    await Deno.mkdir(`${this.#dir}/clients`);
    let addr = { addr: "sim:7000", certPem: "" };
    if (this.#o.mode === "memory") {
      // one virtual clock for everything; a fixed start so that the event log replays
      // the hash WebAssembly instances come into being on first use, asynchronously (real
      // time): before the clock starts, so that no run sees them arrive at another moment
      for (const h of ["SHA-256", "SHA-384", "SHA-512"] as const) await getHashFns(h);
      for (const suite of this.#o.suites) await getCiphersuite(suite as typeof SUITES[number]);
      // ids (channel ids sort a client's groups; message ids) come from crypto.getRandomValues:
      // drawn from the seed in this process, so one seed makes the same ids and orders.
      // (Keys come from node:crypto and stay random: nothing orders by them.)
      seedGetRandomValues(Prng.fork(this.#o.seed, "random"));
      this.#clock = new VirtualClock(Date.UTC(2026, 0, 1));
      // the server (sessions, receipt times, KeyPackage notices) and the ids' time bits on
      // the same virtual clock: Date.now is this process's, and every part of it is simulated
      Date.now = this.#clock.now;
      this.#clock.start();
      this.#mem = await MemServer.start(`${this.#dir}/server`, this.#clock);
      // fault draws: one stream per client and seam (SimNet.stream), from the seed alone
      this.#net = new SimNet(this.#mem, this.#o.seed, this.#o.faults);
      this.#net.calm = true; // registration is not under test here
    } else {
      this.#server = await ServerProcess.start(`${this.#dir}/server`);
      addr = { addr: this.#server.addr, certPem: this.#server.certPem };
    }
    for (let i = 0; i < this.#o.clients; i++) {
      const store = this.#o.store === "mixed" ? (i % 3 === 0 ? "file" : "memory") : this.#o.store;
      // c + the index in letters (ca, cb, …, cbc): with digits c6 and c8 look alike to the
      // server's username skeleton (digits read as letters) and c8 cannot register
      const name = `c${letterTag(i)}`;
      this.actors.push(
        new Actor(name, `${this.#dir}/clients`, addr, {
          timeoutMs: this.#o.timeoutMs,
          store,
          ...(this.#net && this.#clock
            ? { connector: this.#net.connector(name), clock: this.#clock }
            : {}),
        }),
      );
    }
    // a few at a time: one process does every client's crypto, and a starved QUIC
    // handshake would time out
    const queue = [...this.actors];
    // (in memory mode one at a time: it is one thread anyway, and the order is then fixed)
    const workers = this.#clock ? [0] : [0, 1, 2];
    await Promise.all(workers.map(async () => {
      for (let a = queue.shift(); a; a = queue.shift()) {
        await a.open(true);
        await a.register();
      }
    }));
    if (this.#net) this.#net.calm = false;
    this.#log.push(
      `setup: server ${addr.addr} (${this.#o.mode}), clients ${
        this.actors.map((a) => a.name).join(" ")
      }`,
    );
  }

  async teardown(): Promise<void> {
    for (const a of this.actors) await a.close();
    await this.#server?.stop("SIGTERM");
    await this.#mem?.stop();
    await this.#clock?.stop();
    if (this.#dir && this.violations.length === 0) {
      await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
    } else if (this.#dir) {
      this.#o.progress?.(`sim: state kept in ${this.#dir}`);
    }
  }

  violate(invariant: string, detail: string): void {
    this.violations.push({ step: this.#step, invariant, detail });
    for (const m of detail.matchAll(/\bc[a-k]+\b/g)) this.#implicated.add(m[0]);
    this.#note(`VIOLATION ${invariant}: ${detail}`);
  }

  #count(k: string, n = 1): void {
    this.#stats[k] = (this.#stats[k] ?? 0) + n;
  }

  count(k: string, n = 1): void {
    this.#count(k, n);
  }

  #note(s: string): void {
    this.#line.push(s);
  }

  /** The user's client keeps a leave of the group: asked, its removal not committed yet. */
  #asksToLeave(a: Actor, g: GroupModel): boolean {
    try {
      const id = a.client.conversation(refFor(g, a.name)).channelId;
      return id !== undefined && a.client.store.groupMeta(id)?.leavingEpoch !== undefined;
    } catch {
      return false;
    }
  }

  #collectDiagnostics(): void {
    for (const name of [...this.#implicated].sort()) {
      const a = this.actors.find((x) => x.name === name);
      if (!a) continue;
      this.#diagnostics.push(`recent events of ${name} (instance ${a.instance}):`);
      for (const l of a.recent.slice(-25)) this.#diagnostics.push(`  ${l}`);
      try {
        const st = a.client.store;
        const names = new Map(st.listConversations().map((c) => [c.id, c.name]));
        for (const g of st.listGroupMeta()) {
          const marks = [
            `epoch ${g.summary?.epoch ?? "?"}`,
            g.leavingEpoch !== undefined ? `leaving since epoch ${g.leavingEpoch}` : "",
            g.leaves.length ? `leaves to commit [${g.leaves}]` : "",
            g.broken ? `broken: ${g.broken}` : "",
            g.pendingCommit ? "commit pending" : "",
          ].filter((x) => x);
          this.#diagnostics.push(`  group ${names.get(g.channelId) ?? g.channelId}: ${marks}`);
        }
        const queued = st.listOutbox();
        if (queued.length) {
          this.#diagnostics.push(
            `  outbox: ${
              queued.map((e) =>
                `${names.get(e.conversationId) ?? "?"}${e.sentAt ? " sent" : ""} x${e.attempts}`
              ).join(", ")
            }`,
          );
        }
      } catch (e) {
        this.#diagnostics.push(`  (its store cannot be read: ${errText(e)})`);
      }
    }
    this.#diagnostics.push("server log tail:");
    const tail = this.#server?.tail() ?? this.#mem?.tail() ?? [];
    for (const l of tail.slice(-15)) this.#diagnostics.push(`  ${l}`);
  }

  // ------------------------------------------------------------------ helpers

  /** Wait `ms` (virtual in memory mode). */
  #sleep(ms: number): Promise<void> {
    return this.#clock ? this.#clock.sleep(ms) : realSleep(ms);
  }

  #setTimer(fn: () => void, ms: number): unknown {
    return this.#clock ? this.#clock.setTimeout(fn, ms) : setTimeout(fn, ms);
  }

  #clearTimer(t: unknown): void {
    if (this.#clock) this.#clock.clearTimeout(t);
    else clearTimeout(t as number);
  }

  #actor(name: string): Actor {
    return this.actors.find((a) => a.name === name)!;
  }

  #online(): Actor[] {
    return onlineActors(this);
  }

  #groupList(): GroupModel[] {
    return [...this.model.groups.values()];
  }

  /** Run one client operation with a deadline; never throws. */
  async #run(label: string, fn: () => Promise<unknown>, quiet = false): Promise<Outcome> {
    let timer: unknown;
    const deadline = new Promise<"hung">((r) => {
      timer = this.#setTimer(() => r("hung"), this.#o.opDeadlineMs);
    });
    try {
      const r = await Promise.race([fn().then(() => "ok" as const), deadline]);
      if (r === "hung") {
        this.#note(`${label} -> HUNG`);
        this.violate(
          "no-stuck-operation",
          `${label} did not finish within ${this.#o.opDeadlineMs} ms`,
        );
        return { ok: false, error: new Error("hung"), text: "hung", hung: true };
      }
      if (!quiet) this.#note(`${label} -> ok`);
      return { ok: true };
    } catch (e) {
      const text = errText(e);
      this.#note(`${label} -> ${text}`);
      return { ok: false, error: e, text };
    } finally {
      this.#clearTimer(timer);
    }
  }

  /**
   * A solo operation without faults on an online client failed: nothing excuses it, unless
   * the group is in doubt or the client had not learnt of the conversation yet (a Welcome
   * still on its way: a user would not have seen the conversation either).
   */
  #refused(what: string, out: Outcome, g?: GroupModel, knew = true): void {
    if (out.ok || ("hung" in out && out.hung)) return;
    this.#count("refused");
    if ((g && g.doubt.size > 0) || !knew) return;
    // The network is not the client's to guarantee (after a server SIGKILL the first
    // request on the dead QUIC connection times out); a client that stays cut off is
    // caught by the quiescent checks.
    if (!out.ok && isTransport(out.error)) {
      this.#count("transport-failures");
      return;
    }
    // the server's disk is full: "try again later" (the client keeps what it queued)
    if (!out.ok && (out.error as { code?: string })?.code === "storage_full") {
      this.#count("disk-full-refused");
      return;
    }
    this.violate("operation-succeeds", `${what} failed: ${out.text}`);
  }

  /** Does `a`'s client list `g` (has it learnt that it is a member)? */
  #knows(a: Actor, g: GroupModel): boolean {
    const ref = refFor(g, a.name);
    try {
      return a.client.listConversations().some((c) => c.name === ref);
    } catch {
      return false;
    }
  }

  /**
   * Read the sender's history: pending messages are now sent, still pending, or gone. A
   * pending message is recent: its row is looked for among the conversation's newest
   * {@link OBSERVE_RECENT} first (after every step the whole history cost more the longer
   * the run), and in the whole history only when not there. (Found there, an older own row
   * with the same text would be a doubled message: the message check fails the run on it.)
   */
  #observe(a: Actor, t: number): void {
    if (a.seams.dead) return;
    const history = historyReader();
    const recent = new Map<string, SeenMessage[]>();
    const own = (ref: string, text: string) => {
      let rows = recent.get(ref);
      if (!rows) recent.set(ref, rows = a.history(ref, OBSERVE_RECENT));
      const mine = rows.filter((h) => h.body === text && h.direction === "out");
      if (mine.length > 0 || rows.length < OBSERVE_RECENT) return mine;
      return history(a, ref).filter((h) => h.body === text && h.direction === "out");
    };
    for (const m of this.model.pendingOf(a.name)) {
      const g = this.model.groups.get(m.group)!;
      const ref = refFor(g, a.name);
      const mine = own(ref, m.text);
      if (mine.length === 0) {
        m.state = "dropped";
        // a message the client took (send resolved) is never silently forgotten, unless its
        // sender left the conversation before it could go out
        if (
          m.taken && this.model.memberThroughout(g, a.name, m.sentAt, t) && !g.doubt.has(a.name)
        ) {
          this.violate(
            "taken-message-kept",
            `${a.name} took ${m.text} for ${g.key} (send succeeded) and then lost it from its history`,
          );
        }
        continue;
      }
      const status = mine[0]!.status ?? "";
      if (status === "sent" || status === "delivered") {
        this.model.accept(m, t);
      } else if (status === "failed") {
        // terminal: the client says it will never go out; only a removal (or leave) may say
        // so, or a group whose other members all left before it went out (nobody to send to).
        // A message written offline was written on what the client knew when it went offline:
        // a removal since (even one undone by a re-add before the message) fails it (seed 7061)
        const span = this.#offline.get(a.name)?.find((o) => o.from <= m.sentAt && m.sentAt <= o.to);
        // Online too, a client composes on the state it has: failed "you were removed", it had
        // not yet received a removal that a re-add undid before the message (seed 9048)
        const unseen = span || mine[0]!.failure !== REMOVED_FAILURE
          ? undefined
          : this.model.lastRemovalBefore(g, a.name, m.sentAt);
        const since = span ? span.from : unseen ?? m.sentAt;
        if (
          this.model.memberThroughout(g, a.name, since, t) && !g.doubt.has(a.name) &&
          !this.model.aloneDuring(g, a.name, m.sentAt, t)
        ) {
          this.violate(
            "failed-only-if-removed",
            `${a.name} shows ${m.text} to ${g.key} as failed (${
              mine[0]!.failure ?? "no reason"
            }), though a member throughout`,
          );
        } else if (since < m.sentAt && this.model.memberThroughout(g, a.name, m.sentAt, t)) {
          this.#count(
            unseen === undefined ? "excused.removed-while-offline" : "excused.removed-unseen",
          );
        }
        this.model.refuse(m, t);
        this.#count("failed-after-removal");
      } else if (!m.encRoster && a.offline) {
        try {
          m.encRoster = new Set(a.client.members(ref));
        } catch {
          m.encRoster = new Set(g.roster);
        }
      }
    }
  }

  // ------------------------------------------------------------------ steps

  async #runStep(s: number): Promise<void> {
    const rng = Prng.fork(this.#o.seed, `step${s}`);
    traceMark(`step ${s}`);
    const kind = this.#chooseKind(rng);
    this.#line = [];
    this.#count(`step.${kind}`);
    switch (kind) {
      case "send":
        await this.#stepSend(rng, s);
        break;
      case "burst":
        await this.#stepBurst(rng, s);
        break;
      case "create":
        await this.#stepCreate(rng, s);
        break;
      case "dm":
        await this.#stepDm(rng, s);
        break;
      case "invite":
      case "remove":
      case "leave":
      case "update":
        await this.#stepCommit(rng, s, kind);
        break;
      case "concurrent":
        await this.#stepConcurrent(rng, s);
        break;
      case "offline":
        this.#stepOffline(rng, s);
        break;
      case "back":
        await this.#stepBack(rng, s);
        break;
      case "crash":
        await this.#stepCrash(rng, s);
        break;
      case "lost":
        await this.#stepLost(rng, s);
        break;
      case "dup":
        await this.#stepDup(rng, s);
        break;
      case "restart":
        await this.#stepRestart(rng, s);
        break;
      case "partition":
        await this.#stepPartition(rng, s);
        break;
      case "powercut":
        await this.#stepPowerCut(rng, s);
        break;
      case "diskfull":
        await this.#stepDiskFull(rng, s);
        break;
      case "clock":
        this.#stepClock(rng);
        break;
      case "edit":
      case "delete":
        await this.#stepAuthorChange(rng, s, kind);
        break;
      case "react":
        await this.#stepReact(rng, s);
        break;
      case "read":
        await this.#stepRead(rng, s);
        break;
      case "admin":
        await this.#stepAdmin(rng, s);
        break;
      case "badremove":
        await this.#stepBadRemove(rng, s);
        break;
      case "badedit":
        await this.#stepBadEdit(rng, s);
        break;
    }
    for (const a of this.actors) {
      for (const n of a.seams.notes.splice(0)) this.#note(`${a.name}: ${n}`);
    }
    this.#drainNet();
    if (this.#o.failOn === kind) this.violate("synthetic", `a ${kind} step ran (--fail-on)`);
    const line = `step ${s} ${kind}: ${this.#line.join("; ")}`;
    this.#log.push(line);
    if (this.#o.verbose) this.#o.progress?.(line);
  }

  #chooseKind(rng: Prng): StepKind {
    const groups = this.#groupList();
    const talk = groups.filter((g) => g.roster.size >= 2).length > 0;
    const offline = this.actors.filter((a) => a.offline).length;
    const f = this.#o.faults;
    const named = groups.filter((g) => g.kind === "group").length;
    const weights: Record<StepKind, number> = {
      send: talk ? 28 : 0,
      burst: talk ? 5 : 0,
      create: named < 3 ? 25 : named < 12 ? 5 : 1,
      dm: 4,
      invite: named ? 9 : 0,
      remove: named ? 5 : 0,
      leave: named ? 3 : 0,
      update: groups.length ? 4 : 0,
      concurrent: talk ? 6 : 0,
      offline: f && offline < Math.floor(this.actors.length / 4) ? 3 : 0,
      back: offline ? 2.5 : 0,
      crash: f ? 4 : 0,
      lost: f ? 5 : 0,
      dup: f && talk ? 3 : 0,
      restart: f ? 1.5 : 0,
      partition: f && this.#net ? 3 : 0,
      // storage and clock faults: each family fires several times per 1,000 steps
      powercut: f && this.#net ? 2 : 0,
      diskfull: f && this.#net ? 2 : 0,
      clock: f && this.#net ? 3 : 0,
      edit: talk ? 3 : 0,
      delete: talk ? 1.5 : 0,
      react: talk ? 3 : 0,
      read: talk ? 2.5 : 0,
      admin: named ? 2.5 : 0,
      badremove: named ? 1.5 : 0,
      badedit: talk ? 3 : 0,
    };
    for (const [k, w] of Object.entries(this.#o.weights)) {
      if (k in weights && weights[k as StepKind] > 0) weights[k as StepKind] = w;
    }
    for (const k of this.#o.skip) {
      if (k in weights) weights[k as StepKind] = 0;
    }
    if (Object.values(weights).every((w) => w <= 0)) weights.create = 1;
    return rng.weighted(weights);
  }

  /** A group (or DM) with at least two members, and one of its members. */
  #pickTalk(rng: Prng, who?: Actor): { g: GroupModel; a: Actor } | undefined {
    const groups = this.#groupList().filter((g) =>
      g.roster.size >= 2 && (!who || g.roster.has(who.name))
    );
    if (groups.length === 0) return undefined;
    const g = rng.pick(groups);
    const a = who ?? this.#actor(rng.pick([...g.roster].sort()));
    return { g, a };
  }

  async #send(a: Actor, g: GroupModel, text: string, t: number): Promise<Outcome> {
    const m = this.model.newMessage(text, g, a.name, t);
    const ref = refFor(g, a.name);
    this.#count("messages");
    const out = await this.#run(`${a.name} send ${ref} ${text}`, () => a.client.send(ref, text));
    if (out.ok) m.taken = true;
    return out;
  }

  async #stepSend(rng: Prng, s: number): Promise<void> {
    const p = this.#pickTalk(rng);
    if (!p) return;
    const knew = this.#knows(p.a, p.g);
    const out = await this.#send(p.a, p.g, `s${s}-${p.a.name}`, s);
    if (!p.a.offline) this.#refused(`${p.a.name} send to ${p.g.key}`, out, p.g, knew);
    this.#observe(p.a, s);
  }

  async #stepBurst(rng: Prng, s: number): Promise<void> {
    const p = this.#pickTalk(rng);
    if (!p) return;
    const senders = rng.sample([...p.g.roster].sort(), rng.int(2, 4)).map((n) => this.#actor(n));
    const per = rng.int(1, 3);
    await Promise.all(senders.map(async (a) => {
      const knew = this.#knows(a, p.g);
      for (let i = 0; i < per; i++) {
        const out = await this.#send(a, p.g, `s${s}-${a.name}-${i}`, s);
        if (!a.offline) this.#refused(`${a.name} send to ${p.g.key}`, out, p.g, knew);
      }
    }));
    for (const a of senders) this.#observe(a, s);
  }

  async #stepCreate(rng: Prng, s: number): Promise<void> {
    const online = this.#online();
    if (online.length === 0) return;
    const a = rng.pick(online);
    const suites = this.#o.suites;
    const suite = suites.length > 1 && rng.chance(0.3) ? suites[1]! : suites[0]!;
    const name = `g${letterTag(s)}`;
    const out = await this.#run(
      `${a.name} create #${name} ${suite === SUITES[0] ? "xwing" : "x25519"}`,
      () => a.client.createGroup(name, suite as typeof SUITES[number]),
    );
    if (!out.ok) {
      this.#refused(`${a.name} createGroup #${name}`, out);
      return;
    }
    const g = this.model.addGroup(name, suite, a.name, s);
    const others = this.actors.filter((x) => x !== a).map((x) => x.name);
    // (no draw for big groups unless asked: every other run keeps its streams)
    const big = this.#o.bigGroup !== undefined && rng.chance(0.25);
    const targets = rng.sample(others, big ? this.#o.bigGroup! - 1 : rng.int(1, 3)).sort();
    if (big) this.#count("big-groups");
    await this.#commitAndApply({ op: "invite", actor: a, g, targets }, s, { strict: true });
  }

  async #stepDm(rng: Prng, s: number): Promise<void> {
    const online = this.#online();
    if (online.length === 0) return;
    const a = rng.pick(online);
    const b = rng.pick(this.actors.filter((x) => x !== a));
    const g = this.model.dm(a.name, b.name, SUITES[0]);
    const out = await this.#run(`${a.name} dm @${b.name}`, () => a.client.dm(b.name));
    if (out.ok) {
      this.model.setMember(g, a.name, true, s);
      this.model.setMember(g, b.name, true, s);
    } else {
      this.#refused(`${a.name} dm ${b.name}`, out, g);
      if (isTransport(out.error)) {
        this.model.addDoubt(g, a.name, a.name, s);
        this.model.addDoubt(g, b.name, a.name, s);
      }
    }
  }

  /** A random group change by `who` (or a random member) in `g` (or a random group). */
  #planCommit(
    rng: Prng,
    opts: { op?: CommitPlan["op"]; g?: GroupModel; who?: Actor; avoid?: Set<string> } = {},
  ): CommitPlan | undefined {
    const avoid = opts.avoid ?? new Set<string>();
    const groups = opts.g ? [opts.g] : this.#groupList().filter((g) => g.roster.size > 0);
    if (groups.length === 0) return undefined;
    const g = rng.pick(groups);
    const members = [...g.roster].sort();
    const candidates = opts.who ? [opts.who.name] : members.filter((m) => !avoid.has(m));
    if (candidates.length === 0 || (opts.who && !g.roster.has(opts.who.name))) return undefined;
    let actor = this.#actor(rng.pick(candidates));
    const outsiders = this.actors.map((x) => x.name).filter((n) =>
      !g.roster.has(n) && !avoid.has(n) && !g.doubt.has(n)
    );
    // only admins remove others (a non-admin's attempt is the badremove step); a group whose
    // roles are in doubt waits for the check that settles them
    const admins = g.adminDoubt ? [] : candidates.filter((m) => g.admins.has(m));
    if ((opts.op ?? "remove") === "remove" && admins.length > 0 && !admins.includes(actor.name)) {
      if (opts.op === "remove") actor = this.#actor(rng.pick(admins));
    }
    const isAdmin = admins.includes(actor.name);
    const others = members.filter((m) => m !== actor.name && !avoid.has(m));
    const skip = new Set(this.#o.skip);
    const op = opts.op ?? rng.weighted({
      invite: g.kind === "group" && outsiders.length && !skip.has("invite") ? 4 : 0,
      remove: g.kind === "group" && others.length && isAdmin && !skip.has("remove") ? 3 : 0,
      leave: g.kind === "group" && !skip.has("leave") ? 2 : 0,
      update: 2,
    });
    switch (op) {
      case "invite":
        if (g.kind !== "group" || outsiders.length === 0) return undefined;
        return { op, actor, g, targets: rng.sample(outsiders, rng.int(1, 3)).sort() };
      case "remove":
        if (g.kind !== "group" || others.length === 0 || !isAdmin) return undefined;
        return { op, actor, g, targets: rng.sample(others, rng.int(1, 2)).sort() };
      case "leave":
        if (g.kind !== "group") return undefined;
        return { op, actor, g, targets: [] };
      case "update":
        return { op, actor, g, targets: [] };
    }
  }

  #label(p: CommitPlan): string {
    const ref = refFor(p.g, p.actor.name);
    return p.op === "invite" || p.op === "remove"
      ? `${p.actor.name} ${p.op} ${ref} [${p.targets}]`
      : `${p.actor.name} ${p.op} ${ref}`;
  }

  #execCommit(p: CommitPlan): Promise<Outcome> {
    const c = p.actor.client;
    const ref = refFor(p.g, p.actor.name);
    return this.#run(this.#label(p), () => {
      switch (p.op) {
        case "invite":
          return c.invite(ref, p.targets);
        case "remove":
          return c.remove(ref, p.targets);
        case "leave":
          return c.leave(ref);
        case "update":
          return c.update(ref);
      }
    });
  }

  /**
   * Apply a group change's outcome: done, refused (nothing happened), or unknown (the client
   * crashed during it, or the network failed: it may complete later; its targets are in
   * doubt until a quiescent check sees the outcome). A refusal is taken at its word, also
   * after a lost answer: a change that happened although the client reported it refused is
   * a bug the roster checks then catch.
   */
  #apply(p: CommitPlan, out: Outcome, t: number, crashed: boolean, wasOffline: boolean): void {
    const affected = p.op === "leave" ? [p.actor.name] : p.targets;
    if (out.ok) {
      for (const u of affected) {
        this.model.setMember(p.g, u, p.op === "invite", t);
      }
      if (p.op === "leave") {
        const set = this.#leaves.get(p.g.key) ?? new Set<string>();
        set.add(p.actor.name);
        this.#leaves.set(p.g.key, set);
      }
      return;
    }
    const unknown = crashed || (isTransport(out.error) && !wasOffline);
    if (unknown) {
      for (const u of affected) this.model.addDoubt(p.g, u, p.actor.name, t);
      if (p.op === "update") this.#count("doubt.update");
    }
  }

  async #commitAndApply(
    p: CommitPlan,
    t: number,
    opts: { strict: boolean },
  ): Promise<Outcome> {
    const wasOffline = p.actor.offline;
    const knew = this.#knows(p.actor, p.g);
    const seams = p.actor.seams;
    const out = await this.#execCommit(p);
    this.#apply(p, out, t, seams.dead, wasOffline);
    if (opts.strict && !wasOffline) this.#refused(this.#label(p), out, p.g, knew);
    return out;
  }

  async #stepCommit(rng: Prng, s: number, op: CommitPlan["op"]): Promise<void> {
    const p = this.#planCommit(rng, { op });
    if (!p) return;
    await this.#commitAndApply(p, s, { strict: true });
    this.#observe(p.actor, s);
  }

  async #stepConcurrent(rng: Prng, s: number): Promise<void> {
    if (rng.chance(0.15)) {
      // both sides open the same DM at once
      const online = this.#online();
      if (online.length < 2) return;
      const [a, b] = rng.sample(online, 2) as [Actor, Actor];
      const g = this.model.dm(a.name, b.name, SUITES[0]);
      const outs = await Promise.all([
        this.#run(`${a.name} dm @${b.name}`, () => a.client.dm(b.name)),
        this.#run(`${b.name} dm @${a.name}`, () => b.client.dm(a.name)),
      ]);
      if (outs.some((o) => o.ok)) {
        this.model.setMember(g, a.name, true, s);
        this.model.setMember(g, b.name, true, s);
      }
      outs.forEach((o, i) => this.#refused(`racing dm ${i ? b.name : a.name}`, o, g));
      return;
    }
    const talk = this.#groupList().filter((g) => g.roster.size >= 2);
    if (talk.length === 0) return;
    const g = rng.pick(talk);
    const [x, y] = rng.sample([...g.roster].sort(), 2).map((n) => this.#actor(n)) as [
      Actor,
      Actor,
    ];
    const p1 = this.#planCommit(rng, { g, who: x, avoid: new Set([y.name]) });
    // the second may target the first committer only with a removal; targets stay disjoint
    const avoid = new Set([...(p1?.targets ?? [])]);
    let p2 = this.#planCommit(rng, { g, who: y, avoid: new Set([...avoid]) });
    if (p2 && p1 && p1.op === "leave" && p2.targets.includes(x.name)) p2 = undefined;
    const withSend = rng.chance(0.3);
    const plans = [p1, p2].filter((p): p is CommitPlan => p !== undefined);
    const sender = withSend ? this.#actor(rng.pick([...g.roster].sort())) : undefined;
    const outs = await Promise.all([
      ...plans.map(async (p) => ({ p, out: await this.#execCommit(p) })),
      ...(sender ? [this.#send(sender, g, `s${s}-${sender.name}`, s).then(() => undefined)] : []),
    ]);
    for (const o of outs) {
      if (o) this.#apply(o.p, o.out, s, false, o.p.actor.offline);
    }
    for (const p of plans) this.#observe(p.actor, s);
    if (sender) this.#observe(sender, s);
  }

  // ------------------------------------------------------------------ changes, receipts, roles

  /** Last clock reading (ms, the user's own clock) after a change by user to a message. */
  readonly #changeClock = new Map<string, number>();

  /** `a`'s own clock (the one its client stamps changes with). */
  #clockOf(a: Actor): number {
    return this.#clock ? this.#clock.now() + a.skewMs : Date.now();
  }

  /**
   * Later wins by the author's clock: a change is made only when the user's clock is past
   * its last change of the message (a skew or suspend may have set it back), so the model's
   * order is the clients' order.
   */
  #clockAhead(a: Actor, id: string): boolean {
    return this.#clockOf(a) > (this.#changeClock.get(`${a.name}|${id}`) ?? -Infinity);
  }

  /** `a`'s row of `m` (by id when known, else its own text). */
  #rowOf(a: Actor, g: GroupModel, m: MessageModel): SeenMessage | undefined {
    return a.history(refFor(g, a.name)).find((h) =>
      m.id ? h.messageId === m.id : h.body === m.text && !h.unreadable
    );
  }

  /** Recent sent messages of `g` (or every conversation) that no deletion was attempted on. */
  #changeable(g?: GroupModel): MessageModel[] {
    const out: MessageModel[] = [];
    for (const m of this.model.messages.values()) {
      if (m.state !== "sent" || (g && m.group !== g.key)) continue;
      if (m.changes?.some((c) => c.kind === "deletion")) continue;
      out.push(m);
    }
    return out.slice(-40);
  }

  /** Run a change (edit, deletion, reaction) and record it in the model. */
  async #change(
    a: Actor,
    m: MessageModel,
    row: SeenMessage,
    kind: "edit" | "deletion" | "reaction",
    value: string,
    s: number,
  ): Promise<void> {
    const g = this.model.groups.get(m.group)!;
    const ref = refFor(g, a.name);
    const id = row.messageId!;
    const c = a.client;
    const knew = this.#knows(a, g);
    const wasOffline = a.offline;
    const label = `${a.name} ${kind} ${ref} ${m.text}${value ? ` -> ${value}` : ""}`;
    const out = await this.#run(
      label,
      () =>
        kind === "edit"
          ? c.edit(ref, id, value)
          : kind === "deletion"
          ? c.deleteMessage(ref, id)
          : c.react(ref, id, value),
    );
    this.#changeClock.set(`${a.name}|${id}`, this.#clockOf(a));
    this.model.addChange(m, id, { kind, by: a.name, value, t: s, taken: out.ok });
    if (!wasOffline) this.#refused(label, out, g, knew);
  }

  /** The author of a sent message edits it or deletes it for everyone. */
  async #stepAuthorChange(rng: Prng, s: number, kind: "edit" | "delete"): Promise<void> {
    const ms = this.#changeable().filter((m) => {
      const a = this.#actor(m.sender);
      const g = this.model.groups.get(m.group)!;
      // (alone in a group nobody else could see a change: the client refuses to send)
      return !a.seams.dead && g.roster.has(a.name) && g.roster.size >= 2 && g.doubt.size === 0;
    });
    if (ms.length === 0) return;
    const m = rng.pick(ms);
    const a = this.#actor(m.sender);
    const row = this.#rowOf(a, this.model.groups.get(m.group)!, m);
    if (!row?.messageId || row.direction !== "out") {
      this.#note(`${a.name} has no row of ${m.text}`);
      return;
    }
    if (!this.#clockAhead(a, row.messageId)) {
      this.#note(`${a.name}'s clock is behind its last change of ${m.text}: skipped`);
      return;
    }
    this.#count(`op.${kind}`);
    const text = `e${s}-${m.text}`;
    await this.#change(
      a,
      m,
      row,
      kind === "edit" ? "edit" : "deletion",
      kind === "edit" ? text : "",
      s,
    );
  }

  /** A member reacts to a message it has (never with the emoji it shows: no toggle). */
  async #stepReact(rng: Prng, s: number): Promise<void> {
    const p = this.#pickTalk(rng);
    if (!p || p.g.doubt.size > 0 || p.a.seams.dead) return;
    const ms = this.#changeable(p.g);
    if (ms.length === 0) return;
    const m = rng.pick(ms);
    const row = this.#rowOf(p.a, p.g, m);
    if (!row?.messageId || row.deleted) return;
    if (!this.#clockAhead(p.a, row.messageId)) return;
    const mine = row.reactions?.find((r) => r.user === p.a.name)?.emoji;
    const emoji = rng.pick(EMOJI.filter((e) => e !== mine));
    this.#count("op.react");
    await this.#change(p.a, m, row, "reaction", emoji, s);
  }

  /** A member reads a conversation (read receipts for what it had not read). */
  async #stepRead(rng: Prng, s: number): Promise<void> {
    const choices: { a: Actor; g: GroupModel }[] = [];
    for (const a of this.#online()) {
      for (const g of this.model.groupsOf(a.name)) {
        try {
          if (a.client.unread(refFor(g, a.name)) > 0) choices.push({ a, g });
        } catch { /* not learnt yet */ }
      }
    }
    if (choices.length === 0) return;
    const { a, g } = rng.pick(choices);
    const ref = refFor(g, a.name);
    g.reads.set(a.name, [...(g.reads.get(a.name) ?? []), s]);
    this.#count("op.read");
    const out = await this.#run(`${a.name} read ${ref}`, () => a.client.markRead(ref));
    this.#refused(`${a.name} read ${ref}`, out, g);
  }

  /** A settled group with an online admin and a member. */
  #pickRoles(rng: Prng, admin: boolean): { g: GroupModel; a: Actor } | undefined {
    const groups = this.#groupList().filter((g) =>
      g.kind === "group" && !g.adminDoubt && g.doubt.size === 0 && g.roster.size >= 2
    );
    const pairs: { g: GroupModel; a: Actor }[] = [];
    for (const g of groups) {
      for (const n of [...g.roster].sort()) {
        const a = this.#actor(n);
        if (g.admins.has(n) === admin && !a.offline && !a.seams.dead && this.#knows(a, g)) {
          pairs.push({ g, a });
        }
      }
    }
    return pairs.length ? rng.pick(pairs) : undefined;
  }

  /** An admin grants or revokes admin (the last admin is never revoked). */
  async #stepAdmin(rng: Prng, s: number): Promise<void> {
    const p = this.#pickRoles(rng, true);
    if (!p) return;
    const { g, a } = p;
    const members = [...g.roster].sort();
    const grantable = members.filter((u) => !g.admins.has(u));
    const revocable = g.admins.size >= 2 ? members.filter((u) => g.admins.has(u)) : [];
    const grant = revocable.length === 0 || (grantable.length > 0 && rng.chance(0.6));
    const pool = grant ? grantable : revocable;
    if (pool.length === 0) return;
    const u = rng.pick(pool);
    const ref = refFor(g, a.name);
    const label = `${a.name} ${grant ? "grant" : "revoke"} admin ${ref} ${u}`;
    this.#count("op.admin");
    let changed: boolean | undefined;
    const out = await this.#run(label, async () => {
      changed = await a.client.setAdmin(ref, u, grant);
    });
    if (out.ok) {
      if (changed) {
        if (grant) g.admins.add(u);
        else g.admins.delete(u);
      } else {
        this.violate(
          "admins-model",
          `${label} changed nothing; the model's admins [${[...g.admins]}]`,
        );
      }
    } else if (a.seams.dead || isTransport(out.error)) {
      g.adminDoubt = true;
      this.#note(`${g.key}: admins in doubt`);
    } else this.#refused(label, out, g);
    void s;
  }

  /** A member who is not an admin tries to remove another: refused, nothing changes. */
  async #stepBadRemove(rng: Prng, _s: number): Promise<void> {
    const p = this.#pickRoles(rng, false);
    if (!p) return;
    const { g, a } = p;
    const target = rng.pick([...g.roster].sort().filter((u) => u !== a.name));
    const ref = refFor(g, a.name);
    this.#count("op.badremove");
    const out = await this.#run(
      `${a.name} (not admin) remove ${ref} [${target}]`,
      () => a.client.remove(ref, [target]),
    );
    if (out.ok) {
      this.violate(
        "non-admin-removal-refused",
        `${a.name} is not an admin of ${g.key} (model admins [${[
          ...g.admins,
        ]}]) and removed ${target}`,
      );
      this.model.setMember(g, target, false, _s);
    } else if ((out.error as { code?: string }).code === "forbidden") {
      this.#count("check.refused-removal");
    } else this.#refused(`${a.name} (not admin) remove ${ref}`, out, g);
  }

  /** A member tries to edit or delete someone else's message: refused by its own client. */
  async #stepBadEdit(rng: Prng, s: number): Promise<void> {
    const ms = this.#changeable().filter((m) => {
      const g = this.model.groups.get(m.group)!;
      return g.roster.size >= 2 && g.doubt.size === 0;
    });
    if (ms.length === 0) return;
    const m = rng.pick(ms);
    const g = this.model.groups.get(m.group)!;
    const others = [...g.roster].sort().map((n) => this.#actor(n)).filter((a) =>
      a.name !== m.sender && !a.offline && !a.seams.dead
    );
    if (others.length === 0) return;
    const a = rng.pick(others);
    const row = this.#rowOf(a, g, m);
    if (!row?.messageId || row.deleted) return;
    const ref = refFor(g, a.name);
    const del = rng.chance(0.4);
    const text = `x${s}-${m.text}`;
    this.#count("op.badedit");
    const out = await this.#run(
      `${a.name} ${del ? "delete" : "edit"} ${m.sender}'s ${m.text} (not the author)`,
      () =>
        del
          ? a.client.deleteMessage(ref, row.messageId!)
          : a.client.edit(ref, row.messageId!, text),
    );
    if (out.ok) {
      this.violate(
        "non-author-change-refused",
        `${a.name} ${del ? "deleted" : "edited"} ${m.sender}'s ${m.text} in ${g.key}`,
      );
    } else if (!isTransport(out.error)) this.#count("check.refused-change");
  }

  #stepOffline(rng: Prng, s: number): void {
    const online = this.#online();
    if (online.length <= 2) return;
    const a = rng.pick(online);
    a.goOffline();
    const spans = this.#offline.get(a.name) ?? [];
    spans.push({ from: s, to: Infinity });
    this.#offline.set(a.name, spans);
    this.#note(`${a.name} offline`);
  }

  async #stepBack(rng: Prng, s: number): Promise<void> {
    const off = this.actors.filter((a) => a.offline);
    if (off.length === 0) return;
    const a = rng.pick(off);
    this.#offline.get(a.name)!.at(-1)!.to = s;
    const out = await this.#run(`${a.name} back online`, () => a.comeBack());
    this.#refused(`${a.name} back online`, out);
    this.#observe(a, s);
  }

  /**
   * Let `a`'s background work (push-driven syncs) finish, so that a fault armed next
   * counts the operation's own calls and writes (replays hit the same point).
   */
  async #quiet(a: Actor): Promise<void> {
    if (a.offline) return;
    await a.client.sync().catch(() => {});
  }

  /** A random single operation for `a` (for fault steps): a send or a group change. */
  #randomOp(rng: Prng, a: Actor, s: number): (() => Promise<void>) | undefined {
    if (rng.chance(0.5)) {
      const p = this.#pickTalk(rng, a);
      if (p) {
        return async () => {
          await this.#send(a, p.g, `s${s}-${a.name}`, s);
        };
      }
    }
    const mine = this.model.groupsOf(a.name);
    if (mine.length === 0) return undefined;
    const p = this.#planCommit(rng, { g: rng.pick(mine), who: a });
    if (!p) return undefined;
    return async () => {
      await this.#commitAndApply(p, s, { strict: false });
    };
  }

  async #stepCrash(rng: Prng, s: number): Promise<void> {
    const online = this.#online();
    if (online.length === 0) return;
    const a = rng.pick(online);
    const fault: ArmedFault = rng.chance(0.5)
      ? {
        kind: "crashAtCall",
        n: rng.int(1, 6),
        after: rng.chance(0.5),
        ...(rng.chance(0.5) ? { only: rng.pick(CALL_KINDS), n: 1 } : {}),
      }
      : rng.chance(0.4)
      ? { kind: "crashAtWrite", n: rng.int(1, 8) }
      // inside a store transaction: the statement throws, nothing of it may land (small
      // n: most operations make only a few writes inside their transactions)
      : { kind: "crashInTransaction", n: rng.int(1, 4) };
    this.#note(
      `${a.name} armed ${fault.kind} #${fault.n}${
        "only" in fault && fault.only ? ` ${fault.only}` : ""
      }${"after" in fault && fault.after ? " after" : ""}`,
    );
    const op = this.#randomOp(rng, a, s);
    await this.#quiet(a);
    a.seams.arm(fault);
    if (op) await op();
    a.seams.arm(undefined);
    this.#count("fault.crash");
    // which crash point was reached (an op may end before its armed point)
    if (a.seams.dead) {
      this.#count(
        fault.kind === "crashAtCall"
          ? "fault.crash-at-call"
          : fault.kind === "crashAtWrite"
          ? "fault.crash-at-write"
          : "fault.crash-in-transaction",
      );
    }
    // every second crash of a client on files (the first, third, …) is a power cut at the
    // same point (no draw: the seed's streams stay as they were)
    const power = a.storeKind === "file" && this.#fileCrashes++ % 2 === 0;
    if (power) this.#count("fault.client-power-cut");
    const out = await this.#run(
      `${a.name} restart after ${power ? "power cut" : "crash"}`,
      () => a.crashAndRestart(s, power),
    );
    this.#refused(`${a.name} restart after a crash`, out);
    this.#observe(a, s);
  }

  async #stepLost(rng: Prng, s: number): Promise<void> {
    const online = this.#online();
    if (online.length === 0) return;
    const a = rng.pick(online);
    const fault: ArmedFault = {
      kind: "loseAnswer",
      n: rng.int(1, 5),
      dropLink: rng.chance(0.5),
      ...(rng.chance(0.6) ? { only: rng.pick(CALL_KINDS), n: 1 } : {}),
    };
    this.#note(
      `${a.name} armed lost answer #${fault.n}${fault.only ? ` ${fault.only}` : ""}${
        fault.dropLink ? " (drop link)" : ""
      }`,
    );
    const op = this.#randomOp(rng, a, s);
    if (!op) return;
    await this.#quiet(a);
    a.seams.arm(fault);
    await op();
    if (!a.seams.armed) this.#count("fault.lost");
    a.seams.arm(undefined);
    this.#observe(a, s);
  }

  async #stepDup(rng: Prng, s: number): Promise<void> {
    const p = this.#pickTalk(rng);
    if (!p) return;
    const others = [...p.g.roster].filter((n) => n !== p.a.name).map((n) => this.#actor(n));
    for (const o of others) o.seams.duplicatePushes(rng.int(1, 4));
    this.#note(`pushes to [${others.map((o) => o.name)}] doubled`);
    const knew = this.#knows(p.a, p.g);
    const out = await this.#send(p.a, p.g, `s${s}-${p.a.name}`, s);
    if (!p.a.offline) this.#refused(`${p.a.name} send to ${p.g.key}`, out, p.g, knew);
    this.#observe(p.a, s);
    await this.#sleep(rng.int(20, 150)); // let the pushes arrive while the fault is on
    for (const o of others) o.seams.duplicatePushes(0);
  }

  async #stepRestart(rng: Prng, s: number): Promise<void> {
    const signal = rng.chance(0.5) ? "SIGTERM" : "SIGKILL";
    const online = this.#online();
    const busy = rng.sample(online, rng.int(0, 2));
    const ops = busy.map((a) => ({ a, op: this.#randomOp(rng, a, s) }));
    const delay = rng.int(0, 120);
    this.#note(`server ${signal} after ${delay} ms`);
    const running = Promise.all(ops.map((o) => o.op?.()));
    await this.#sleep(delay);
    if (this.#net) await this.#net.crashServer();
    else await this.#server!.restart(signal);
    this.#count(`fault.${signal}`);
    await running;
    for (const o of ops) this.#observe(o.a, s);
  }

  /**
   * A power cut of the server: like a crash, and every write no fsync covered is lost (the
   * files go back to the last durable image, tests/sim/disk.ts).
   */
  async #stepPowerCut(rng: Prng, s: number): Promise<void> {
    const net = this.#net;
    if (!net) return;
    const online = this.#online();
    const talk = this.#pickTalk(rng);
    if (talk && !talk.a.offline && rng.chance(0.6)) {
      // right after the server acknowledged a message or a commit: the ack must hold
      const kinds = rng.chance(0.7) ? ["enqueue"] : ["enqueue", "commit"];
      const others = rng.sample(online.filter((a) => a !== talk.a), rng.int(0, 1));
      const ops = [
        {
          a: talk.a,
          op: async () => {
            const knew = this.#knows(talk.a, talk.g);
            const out = await this.#send(talk.a, talk.g, `s${s}-${talk.a.name}`, s);
            if (!talk.a.offline) {
              this.#refused(`${talk.a.name} send to ${talk.g.key}`, out, talk.g, knew);
            }
          },
        },
        ...others.map((a) => ({ a, op: this.#randomOp(rng, a, s) })),
      ];
      this.#note(`server power cut at the next answer to ${kinds.join("|")}`);
      net.armPowerCutAtAnswer(kinds);
      await Promise.all(ops.map((o) => o.op?.()));
      net.armPowerCutAtAnswer(undefined);
      const cutting = net.powerCutting;
      if (cutting) {
        await cutting;
        this.#count("fault.power-cut");
        this.#count("fault.power-cut-at-answer");
      }
      for (const o of ops) this.#observe(o.a, s);
      return;
    }
    const busy = rng.sample(online, rng.int(0, 2));
    const ops = busy.map((a) => ({ a, op: this.#randomOp(rng, a, s) }));
    const delay = rng.int(0, 120);
    this.#note(`server power cut after ${delay} ms`);
    const running = Promise.all(ops.map((o) => o.op?.()));
    await this.#sleep(delay);
    await net.powerCutServer();
    this.#count("fault.power-cut");
    await running;
    for (const o of ops) this.#observe(o.a, s);
  }

  /**
   * The server's disk fills (writes refused "try again later"), operations run into it,
   * then space is freed: what the clients kept queued must go out at the next heal.
   */
  async #stepDiskFull(rng: Prng, s: number): Promise<void> {
    const net = this.#net;
    if (!net) return;
    const online = this.#online();
    const busy = rng.sample(online, rng.int(1, 3));
    const ops = busy.map((a) => ({ a, op: this.#randomOp(rng, a, s) }));
    const ms = rng.int(100, 6_000);
    this.#note(`server disk full for ${ms} ms`);
    net.server.disk.fill();
    this.#count("fault.disk-full");
    const free = this.#sleep(ms).then(() => net.server.disk.free());
    await Promise.all(ops.map((o) => o.op?.()));
    await free;
    for (const o of ops) this.#observe(o.a, s);
  }

  /**
   * Clocks: a client's skew against the server changes (± minutes), a client is suspended
   * (its clock jumps hours ahead of the server's), or the whole machine's time jumps
   * (server and clients: a resume), past request timeouts, retries and session ages.
   */
  #stepClock(rng: Prng): void {
    const clock = this.#clock;
    if (!clock) return;
    const k = rng.weighted({ skew: 2, suspend: 2, jump: 2 });
    if (k === "jump") {
      const ms = rng.int(1, 40) * 3_600_000 + rng.int(0, 3_599_999);
      clock.jump(ms);
      this.#note(`time jumps ${Math.round(ms / 60_000)} min (server and clients)`);
      this.#count("fault.time-jump");
      return;
    }
    const a = rng.pick(this.actors);
    if (k === "skew") {
      a.skewMs = rng.int(-10 * 60_000, 10 * 60_000);
      this.#note(`${a.name} clock skew ${Math.round(a.skewMs / 1000)} s`);
      this.#count("fault.clock-skew");
    } else {
      a.skewMs += rng.int(1, 30) * 3_600_000;
      this.#note(`${a.name} suspended: its clock now ${Math.round(a.skewMs / 60_000)} min ahead`);
      this.#count("fault.client-suspend");
    }
  }

  /** A connection for the checker's own questions to the server. */
  #rosterLink() {
    if (this.#net) return this.#net.connector("checker")({ server: "sim:7000" });
    return connectServer({ server: this.#server!.addr, caCertPem: this.#server!.certPem });
  }

  /** Move what the network and its tap saw into the log and the violations. */
  #drainNet(): void {
    const net = this.#net;
    if (!net) return;
    for (const n of net.notes.splice(0)) this.#note(n);
    for (const v of net.ledger.violations.splice(0)) this.violate(v.invariant, v.detail);
  }

  /**
   * A partition of one client (links drop, connects fail) or of the server from everyone,
   * for a while of virtual time, with operations running into it; then it heals.
   */
  async #stepPartition(rng: Prng, s: number): Promise<void> {
    const net = this.#net;
    if (!net) return;
    const online = this.#online();
    if (online.length === 0) return;
    const whole = rng.chance(0.3);
    const victim = rng.pick(online);
    const ms = rng.int(200, 9_000);
    const busy = whole ? rng.sample(online, rng.int(1, 2)) : [victim];
    const ops = busy.map((a) => ({ a, op: this.#randomOp(rng, a, s) }));
    this.#note(`partition ${whole ? "server" : victim.name} for ${ms} ms`);
    if (whole) net.partitionServer(true);
    else net.partition(victim.name, true);
    this.#count(`fault.partition`);
    const heal = this.#sleep(ms).then(() => {
      if (whole) net.partitionServer(false);
      else net.partition(victim.name, false);
    });
    await Promise.all(ops.map((o) => o.op?.()));
    await heal;
    for (const o of ops) this.#observe(o.a, s);
  }

  // ------------------------------------------------------------------ quiescent checks

  /** Flush and sync every online client until nothing moves. */
  async #settle(t: number): Promise<void> {
    const online = this.#online();
    await Promise.all(online.map(async (a) => {
      const out = await this.#run(`${a.name} flush`, async () => {
        await a.client.ensureSession();
        await a.client.flushOutbox();
      }, true);
      this.#refused(`${a.name} session + flush at a quiescent point`, out);
    }));
    for (const a of online) this.#observe(a, t);
    let quiet = 0;
    let lastErrors: string[] = [];
    for (let round = 0; round < 15 && quiet < 2; round++) {
      const errors: string[] = [];
      const counts = await Promise.all(online.map(async (a) => {
        try {
          return await a.client.sync();
        } catch (e) {
          errors.push(`${a.name}: ${errText(e)}`);
          return 1;
        }
      }));
      quiet = counts.every((n) => n === 0) ? quiet + 1 : 0;
      lastErrors = errors;
      await this.#sleep(quiet ? 60 : 20);
    }
    if (quiet < 2) {
      this.violate(
        "no-stuck-client",
        `clients never became quiet at ${t}${
          lastErrors.length ? `: ${lastErrors.join("; ")}` : ""
        }`,
      );
    }
  }

  async #check(t: number, final: boolean): Promise<void> {
    this.#line = [];
    for (const a of this.actors) a.seams.arm(undefined);
    // everything heals: no network faults while the checks run
    if (this.#net) this.#net.calm = true;
    if (final) {
      for (const a of this.actors.filter((x) => x.offline)) {
        this.#offline.get(a.name)!.at(-1)!.to = t - 0.25;
        const out = await this.#run(`${a.name} back online`, () => a.comeBack());
        this.#refused(`${a.name} back online (final)`, out);
        this.#observe(a, t - 0.25);
      }
    }
    await this.#settle(t);
    // a leaver offline before its (possibly stale) leave was committed: in doubt until back
    // (one the server's acknowledged roster no longer holds is gone; process mode: no tap)
    for (const [key, users] of this.#leaves) {
      const g = this.model.groups.get(key);
      if (!g) continue;
      const server = this.#net?.ledger.roster(key);
      for (const u of users) {
        if (!this.#actor(u).offline || !this.model.leaverOffline(g, u, t, server)) continue;
        this.#note(`${g.key}: ${u} left but is offline: in doubt until back`);
      }
    }
    // doubts whose owner is online are settled now: read the outcome
    for (const g of this.model.groups.values()) {
      if (g.doubt.size === 0) continue;
      const owners = [...g.doubt.values()].map((d) => this.#actor(d.owner));
      if (owners.some((o) => o.offline)) continue;
      // settled by what the server acknowledged (the tap's ledger), not by the clients
      // under test; the process mode has no tap and asks the clients
      const seen = this.#net ? this.#net.ledger.roster(g.key) : observedRoster(this, g);
      if (!seen) continue;
      for (const [u, d] of [...g.doubt]) {
        // a leave whose answer was lost is done once its client keeps it (asked, waiting for
        // another member's commit: seed 5012), although the server still delivers to it
        if (seen.has(u) && d.owner === u && this.#asksToLeave(this.#actor(u), g)) {
          this.model.resolveDoubt(g, u, false, t);
          this.#leaves.set(g.key, (this.#leaves.get(g.key) ?? new Set()).add(u));
          this.#note(`${g.key}: ${u} asked to leave`);
          continue;
        }
        this.model.resolveDoubt(g, u, seen.has(u), t);
      }
      this.#note(`${g.key} doubt resolved: roster [${[...g.roster].sort()}]`);
    }
    checkAgreement(this);
    checkAdmins(this);
    checkConversations(this);
    await checkServerRoster(this, () => this.#rosterLink());
    // liveness: every online member sends to every conversation it is in
    const tp = t + 0.25;
    await Promise.all(
      this.#online().map(async (a) => {
        for (const g of this.model.groupsOf(a.name)) {
          if (g.roster.size < 2 || g.doubt.size > 0) continue;
          const i = [...this.model.groups.keys()].indexOf(g.key);
          const out = await this.#send(a, g, `p${tp}-${a.name}-${i}`, tp);
          if (!out.ok) {
            this.violate("no-stuck-client", `${a.name} cannot send to ${g.key}: ${out.text}`);
          }
        }
      }),
    );
    for (const a of this.#online()) this.#observe(a, tp);
    await this.#settle(t + 0.4);
    if (final) {
      for (const m of this.model.messages.values()) {
        if (m.state !== "pending") continue;
        // everything healed: what a client was asked to send is owed, whatever its status; a
        // sender removed before it went out shows it "failed" (terminal), never pending
        this.violate(
          "nothing-pending",
          `${m.sender}'s ${m.text} to ${m.group} (sent at ${m.sentAt}) is still not sent after the final heal`,
        );
        this.model.accept(m, t + 0.4);
      }
    }
    // one read of each history for the three (synchronous: nothing changes in between)
    const history = historyReader();
    const doubts = checkMessages(this, t + 0.4, history);
    const c0 = performance.now();
    checkChanges(this, t + 0.4, history);
    checkReceipts(this, history);
    this.#count("changes-check-ms", Math.round(performance.now() - c0));
    if (final) {
      // an invariant whose check never ran proves nothing: a family scheduled often enough
      // must have been checked at least once
      for (const [op, check] of Object.entries(FAMILIES)) {
        const n = this.#stats[`op.${op}`] ?? 0;
        if (n >= VACUITY_MIN && (this.#stats[check] ?? 0) === 0) {
          this.violate("checks-ran", `${op} ran ${n} times but ${check} never ran`);
        }
      }
    }
    if (final) {
      const n = this.model.messages.size;
      this.#stats["messages-in-doubt"] = doubts;
      // excuses are counted, and bounded: a run that excuses most of its checks proves little
      const bound = Math.ceil(n * DOUBT_BOUND) + 5;
      this.#note(`${doubts} messages in doubt of ${n} (bound ${bound})`);
      if (doubts > bound) {
        this.violate(
          "doubts-bounded",
          `${doubts} of ${n} messages in doubt: more than the bound ${bound} (${
            DOUBT_BOUND * 100
          } % + 5)`,
        );
      }
    }
    this.#drainNet();
    if (this.#net) this.#net.calm = false;
    this.#count("checks");
    const line = `check ${t}${final ? " (final)" : ""}: ${this.#line.join("; ")}`;
    this.#log.push(line);
    if (this.#o.verbose) this.#o.progress?.(line);
  }
}

/**
 * `n` in letters (`16` → `bg`): group names from step numbers must not look alike under the
 * username skeleton (`g6` and `g8` would, both reading as `gb`), or a client holding both
 * shows them with an id suffix.
 */
function letterTag(n: number): string {
  return [...String(n)].map((d) => "abcdefghjk"[Number(d)]).join("");
}
