/**
 * The in-process world of `--mode memory`: the real server services (createServices: the
 * SQLite store in a temp dir, accounts, KeyPackages, delivery) in the simulation's process,
 * and a simulated network that connects the clients to them through the client's
 * {@link Connector} seam. Frames are real qpq frames (encoded, opened and decoded at each
 * edge); only the bytes travel in memory, on virtual time.
 *
 * ```
 * QpqClient ─► SimLink.call ─► encode ─► [net: delay · lose · cut mid-frame · dup] ─►
 *   server: open+decode ─► dispatch[kind](req, conn) ─► encode answer ─► TAP (ledger) ─►
 *   [net: delay · lose (client times out) · cut before it arrives] ─► client: decode
 * push (delivery pump) ─► encode ─► TAP ─► [net: delay · doubled · cut] ─► onPush
 * ```
 *
 * Each direction of a connection is one ordered stream (QUIC's guarantee): frames of one
 * connection keep their order, frames of different connections race. Partitions: a client's
 * or the server's links drop and connects fail until healed. A server crash closes every
 * connection and the store mid-flight and opens it again from its file.
 *
 * @module
 */
import type { ConnectOptions, Connector, ServerLink } from "../../src/client/connection.ts";
import { createServices } from "../../src/server/services.ts";
import { pingHandlers } from "../../src/server/ping.ts";
import type { Service } from "../../src/server/server.ts";
import type { ConnectionState, HandlerTable, ServerContext } from "../../src/server/context.ts";
import { resolveConfig } from "../../src/server/config.ts";
import { encodeFrame, openFrame } from "../../src/wire/codec.ts";
import { type EncodedRequest, withRequestId } from "../../src/wire/encoded.ts";
import type { Frame, Push, Request, Response } from "../../src/wire/messages.ts";
import { WIRE_VERSION } from "../../src/limits.ts";
import {
  errorFromWire,
  type QpqError,
  toQpqError,
  TransportError,
  UsageError,
  ValidationError,
} from "../../src/errors.ts";
import { createLogger } from "../../src/log.ts";
import { Prng } from "./prng.ts";
import type { VirtualClock } from "./vclock.ts";
import { Ledger } from "./ledger.ts";
import { SimDisk } from "./disk.ts";

/** Probabilities of network faults per frame (0 = never). */
export interface NetFaults {
  /** A request never reaches the server (the connection drops). */
  loseRequest: number;
  /** A request is cut mid-frame (the server sees a truncated frame; the connection drops). */
  cutMidFrame: number;
  /** An answer never arrives (the client times out; the connection stays). */
  loseAnswer: number;
  /** The connection drops after the server answered, before the answer arrives. */
  cutBeforeAnswer: number;
  /** Extra weight on a lost commit answer, a lost Welcome and a lost ack. */
  lossCommit: number;
  lossWelcome: number;
  lossAck: number;
  /** Extra weight on a lost or cut answer to a message sent (enqueue). */
  lossEnqueue: number;
  /** A push arrives twice (a redelivery after a resubscribe). */
  dupPush: number;
  /** The server gets a request twice (a replay the client does not know of). */
  dupRequest: number;
  /** Delay of a frame (ms): mostly 0..maxDelayMs, sometimes a long stall. */
  maxDelayMs: number;
  stall: number;
  stallMs: number;
}

/** The default fault mix (each weighted so it fires many times per 1,000 steps). */
export const DEFAULT_NET_FAULTS: NetFaults = {
  loseRequest: 0.004,
  cutMidFrame: 0.002,
  loseAnswer: 0.004,
  cutBeforeAnswer: 0.004,
  lossCommit: 0.06,
  lossWelcome: 0.05,
  lossAck: 0.05,
  lossEnqueue: 0.04,
  dupPush: 0.02,
  dupRequest: 0.004,
  maxDelayMs: 40,
  stall: 0.01,
  stallMs: 1_500,
};

const NO_FAULTS: NetFaults = {
  loseRequest: 0,
  cutMidFrame: 0,
  loseAnswer: 0,
  cutBeforeAnswer: 0,
  lossCommit: 0,
  lossWelcome: 0,
  lossAck: 0,
  lossEnqueue: 0,
  dupPush: 0,
  dupRequest: 0,
  maxDelayMs: 0,
  stall: 0,
  stallMs: 0,
};

/** The server's services in this process, on a SQLite file in `dir`. */
export class MemServer {
  readonly dir: string;
  readonly clock: VirtualClock;
  #services: Service[] = [];
  dispatch: HandlerTable = {};
  up = false;
  starts = 0;
  /** Periodic purges run (virtual time; for the report). */
  purges = 0;
  readonly #tail: string[] = [];
  /** The store's disk: durable image at each fsync (power cuts), fills and frees. */
  readonly disk: SimDisk;

  private constructor(dir: string, clock: VirtualClock) {
    this.dir = dir;
    this.clock = clock;
    this.disk = new SimDisk(dir);
  }

  /** Open the store and build the handlers. */
  static async start(dir: string, clock: VirtualClock): Promise<MemServer> {
    const s = new MemServer(dir, clock);
    await s.#open();
    return s;
  }

  /**
   * Opening does real I/O (the data dir, the store's files, the OPAQUE setup): it runs once
   * nothing else is runnable, with virtual time held, so its real duration cannot let time
   * jump or let other work in between (a power cut's reopen parted two runs of one seed).
   */
  async #open(): Promise<void> {
    if (!this.clock.running) return await this.#openNow();
    await this.clock.idle();
    this.clock.busy++;
    try {
      await this.#openNow();
    } finally {
      this.clock.busy--;
    }
  }

  async #openNow(): Promise<void> {
    const config = resolveConfig(
      { dataDir: this.dir, listen: "127.0.0.1:7000" },
      // fsync on, through the disk's seam (no real I/O): it takes the durable image that a
      // power cut goes back to (tests/sim/disk.ts)
      { fsync: true, log_level: "warn" },
      {},
    );
    const log = createLogger({
      level: "warn",
      write: (line: string) => {
        this.#tail.push(line);
        if (this.#tail.length > 40) this.#tail.shift();
      },
    });
    const services: Service[] = [];
    const ctx: ServerContext = {
      config,
      log,
      startedAt: this.clock.now(),
      stats: { connections: 0, requests: 0 },
      queueDepth: () => Promise.resolve(0),
      condition: () => Promise.resolve({ status: "ok", reason: "" }),
      defer: (fn, ms) => void this.clock.setTimeout(fn, ms),
      // the purge (expired sessions, messages, KeyPackages) on virtual time: the same
      // moments in every run of a seed (a real interval fired at a real-time moment)
      every: (fn, ms) => {
        let timer = 0;
        const tick = () => {
          timer = this.clock.setTimeout(() => {
            tick();
            this.purges++;
            fn();
          }, ms);
        };
        tick();
        return () => this.clock.clearTimeout(timer);
      },
      // SQLite's own checkpoints, on this thread: no worker thread's real time in a run
      storeSeams: { syncData: this.disk.syncData, onOpen: this.disk.onOpen, checkpoints: "sqlite" },
    };
    services.push({ handlers: pingHandlers(ctx) }, ...(await createServices(ctx)));
    this.#services = services;
    const dispatch: HandlerTable = {};
    for (const s of services) Object.assign(dispatch, s.handlers);
    this.dispatch = dispatch;
    this.up = true;
    this.starts++;
  }

  /** A connection closed: subscriptions and per-connection state go. */
  disconnected(state: ConnectionState): void {
    for (const c of state.cleanups) c();
    for (const s of this.#services) s.onDisconnect?.(state);
  }

  /** Close the services (the store closes; requests still inside fail). */
  async stop(): Promise<void> {
    if (!this.up) return;
    this.up = false;
    for (const s of this.#services) await s.close?.();
  }

  /** Close and open again on the same files. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#open();
  }

  /** A power cut: the disk dies, the store closes, the files go back to the last fsync. */
  async powerCut(): Promise<void> {
    this.disk.cut();
    await this.stop();
    this.disk.restore();
    await this.#open();
  }

  /** The server's last log lines. */
  tail(): string[] {
    return [...this.#tail];
  }
}

interface Pending {
  resolve: (r: Response) => void;
  reject: (e: QpqError) => void;
  timer: number;
}

let nextConnId = 1;

/** The simulated network between the clients and one {@link MemServer}. */
export class SimNet {
  readonly server: MemServer;
  readonly clock: VirtualClock;
  readonly ledger: Ledger;
  readonly #seed: number;
  readonly #streams = new Map<string, Prng>();
  #faults: NetFaults;
  /** No faults while set (quiescent checks: everything healed). */
  calm = false;
  /** Clients cut off from the network, and whether the server is. */
  readonly partitioned = new Set<string>();
  serverPartitioned = false;
  readonly #links = new Set<SimLink>();
  /** Faults fired, by name (for the report). */
  readonly fired: Record<string, number> = {};
  /** One line per fault fired (the simulation moves them into its operation log). */
  readonly notes: string[] = [];

  /** The network of `server`; its fault draws come from `seed` (see {@link SimNet.stream}). */
  constructor(server: MemServer, seed: number, faults: boolean) {
    this.server = server;
    this.clock = server.clock;
    this.#seed = seed;
    this.#faults = faults ? DEFAULT_NET_FAULTS : NO_FAULTS;
    this.ledger = new Ledger();
  }

  /** Count and note a fault. */
  fire(name: string, detail: string): void {
    this.fired[name] = (this.fired[name] ?? 0) + 1;
    this.notes.push(`net: ${name} ${detail}`);
  }

  /**
   * The fault stream `label`, derived from the seed and the label alone. Each client's
   * links draw from their own streams, one per seam (`ca/request`: its requests lost, cut,
   * doubled and their delays; `ca/answer`: the answers to them; `ca/push`: pushes to it), so
   * what one client's frames draw does not depend on how its frames interleave with other
   * clients' (a stray frame of one client shifts only its own stream).
   */
  stream(label: string): Prng {
    let s = this.#streams.get(label);
    if (!s) {
      s = Prng.fork(this.#seed, `net:${label}`);
      this.#streams.set(label, s);
    }
    return s;
  }

  /** Draw `p` from the stream `label` (never while calm). */
  chance(p: number, label = "net"): boolean {
    if (this.calm || p <= 0) return false;
    return this.stream(label).float() < p;
  }

  /** A frame's delay (ms), drawn from the stream `label`. */
  delay(label = "net"): number {
    const f = this.#faults;
    if (this.calm) return 0;
    if (this.chance(f.stall, label)) return f.stallMs;
    return f.maxDelayMs > 0 ? this.stream(label).int(0, f.maxDelayMs) : 0;
  }

  get faults(): NetFaults {
    return this.#faults;
  }

  /** The connector of client `name`. */
  connector(name: string): Connector {
    return (options: ConnectOptions): Promise<ServerLink> => {
      if (this.partitioned.has(name) || this.serverPartitioned || !this.server.up) {
        return Promise.reject(
          new TransportError(`Cannot connect to ${options.server}: no route (simulated)`, {
            code: "unavailable",
          }),
        );
      }
      const link = new SimLink(this, name, options);
      this.#links.add(link);
      this.clock.activity++;
      return Promise.resolve(link);
    };
  }

  /** Forget a closed link. */
  forget(link: SimLink): void {
    this.#links.delete(link);
  }

  /** Cut every link of client `name` (or every link with `undefined`). */
  cut(name: string | undefined, why: string): void {
    for (const l of [...this.#links]) if (name === undefined || l.owner === name) l.cut(why);
  }

  /** Partition client `name` from the server (its links drop) or heal it. */
  partition(name: string, on: boolean): void {
    if (on) {
      this.partitioned.add(name);
      this.cut(name, "partition");
    } else this.partitioned.delete(name);
  }

  /** Partition the server from everyone, or heal. */
  partitionServer(on: boolean): void {
    this.serverPartitioned = on;
    if (on) this.cut(undefined, "server partition");
  }

  /** Crash the server: every link drops, the store closes mid-flight, then opens again. */
  async crashServer(): Promise<void> {
    this.cut(undefined, "server crash");
    await this.server.restart();
  }

  /** A power cut: every link drops, writes since the last fsync are lost, it opens again. */
  async powerCutServer(): Promise<void> {
    this.cut(undefined, "server power cut");
    await this.server.powerCut();
  }

  /** Request kinds whose next successful answer is followed at once by a power cut. */
  #cutAtAnswer: ReadonlySet<string> | undefined;
  /** The power cut the armed answer started (await it), if it fired. */
  powerCutting: Promise<void> | undefined;

  /**
   * Arm (or with `undefined` disarm) a power cut right after the server's next successful
   * answer to one of `kinds`: the answer reaches its client, then the power goes before
   * anything else moves (pushes still in flight are lost with the links). An answer the
   * store released before its fsync is then an acknowledgement of something gone.
   */
  armPowerCutAtAnswer(kinds: readonly string[] | undefined): void {
    this.#cutAtAnswer = kinds ? new Set(kinds) : undefined;
    if (kinds) this.powerCutting = undefined;
  }

  /** Does this answer fire the armed power cut? (disarms it) */
  takePowerCutAtAnswer(kind: string): boolean {
    if (this.calm || !this.#cutAtAnswer?.has(kind)) return false;
    this.#cutAtAnswer = undefined;
    return true;
  }
}

/** One client connection over the simulated network. */
export class SimLink implements ServerLink {
  readonly server: string;
  readonly owner: string;
  readonly #net: SimNet;
  readonly #options: ConnectOptions;
  readonly #pending = new Map<number, Pending>();
  readonly #state: ConnectionState;
  readonly #abort = new AbortController();
  #nextId = 1;
  #closed = false;
  /** Virtual time the last frame of each direction arrives (streams keep order). */
  #upAt = 0;
  #downAt = 0;
  /** Requests the server was asked, by request id (for the tap). */
  readonly #asked = new Map<number, Request>();
  /** This client's fault streams (see {@link SimNet.stream}). */
  readonly #requests: string;
  readonly #answers: string;
  readonly #pushes: string;

  constructor(net: SimNet, owner: string, options: ConnectOptions) {
    this.#net = net;
    this.owner = owner;
    this.#requests = `${owner}/request`;
    this.#answers = `${owner}/answer`;
    this.#pushes = `${owner}/push`;
    this.server = options.server;
    this.#options = options;
    const id = nextConnId++;
    this.#state = {
      id,
      remote: `sim:${owner}:${id}`,
      source: `sim-${owner}`,
      username: undefined,
      sessionHash: undefined,
      cleanups: new Set(),
    };
  }

  call<K extends Response["kind"]>(
    request: Request | EncodedRequest,
    expect: K,
    options: { timeoutMs?: number; requestId?: number } = {},
  ): Promise<Extract<Response, { kind: K }>> {
    if (this.#closed) return Promise.reject(lost());
    const net = this.#net;
    const requestId = options.requestId ?? this.#nextId++;
    const bytes = "bytes" in request
      ? withRequestId(request, requestId)
      : encodeFrame({ version: WIRE_VERSION, requestId, type: "request", request });
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs ?? 15_000;
    return new Promise<Response>((resolve, reject) => {
      const timer = net.clock.setTimeout(() => {
        this.#pending.delete(requestId);
        reject(
          new TransportError(`Server did not answer within ${timeoutMs / 1000} s`, {
            code: "timeout",
          }),
        );
      }, timeoutMs);
      this.#pending.set(requestId, { resolve, reject, timer });
      const f = net.faults;
      if (net.chance(f.loseRequest, this.#requests)) {
        net.fire("lost-request", `${this.owner} ${request.kind}`);
        this.cut("request lost");
        return;
      }
      if (net.chance(f.cutMidFrame, this.#requests)) {
        net.fire("cut-mid-frame", `${this.owner} ${request.kind}`);
        const half = bytes.slice(0, Math.max(1, bytes.length >> 1));
        this.#up(() => {
          // the server's reader sees a frame that ends early: it cannot decode it
          try {
            openFrame(half).decode();
          } catch { /* truncated, as expected */ }
          this.cut("cut mid-frame");
        });
        return;
      }
      this.#up(() => this.#serve(bytes));
      if (net.chance(f.dupRequest, this.#requests)) {
        net.fire("dup-request", `${this.owner} ${request.kind}`);
        this.#up(() => this.#serve(bytes, true));
      }
    }).then((response) => {
      if (response.kind === "error") throw errorFromWire(response.code, response.message);
      if (response.kind !== expect) {
        throw new ValidationError(`Server answered ${response.kind} where ${expect} was expected`);
      }
      return response as Extract<Response, { kind: K }>;
    });
  }

  /** Schedule a client-to-server frame. */
  #up(fn: () => void): void {
    const clock = this.#net.clock;
    const at = Math.max(this.#upAt, clock.now() + this.#net.delay(this.#requests));
    this.#upAt = at;
    clock.setTimeout(() => {
      if (!this.#closed && this.#net.server.up) fn();
    }, at - clock.now());
  }

  /** Schedule a server-to-client frame (its delay drawn from the stream `label`). */
  #down(fn: () => void, label: string): void {
    const clock = this.#net.clock;
    const at = Math.max(this.#downAt, clock.now() + this.#net.delay(label));
    this.#downAt = at;
    clock.setTimeout(() => {
      if (!this.#closed) fn();
    }, at - clock.now());
  }

  /** The server side: open, decode, dispatch, answer. */
  async #serve(bytes: Uint8Array, replay = false): Promise<void> {
    const net = this.#net;
    const server = net.server;
    let requestId = 0;
    let response: Response;
    let request: Request | undefined;
    const clock = net.clock;
    clock.busy++;
    try {
      try {
        const opened = openFrame(bytes);
        requestId = opened.requestId;
        const frame = opened.decode();
        if (frame.type !== "request") throw new ValidationError("Expected a request frame");
        request = frame.request;
        this.#asked.set(requestId, request);
        const h = server.dispatch[request.kind] as
          | ((r: Request, c: ConnectionState, s: unknown) => Promise<Response>)
          | undefined;
        if (!h) {
          throw new UsageError(`This server does not handle ${request.kind} requests`, {
            code: "unavailable",
          });
        }
        response = await h(request, this.#state, {
          requestId,
          signal: this.#abort.signal,
          push: (push: Push) => this.#push(requestId, push),
        });
      } catch (e) {
        const err = toQpqError(e);
        response = { kind: "error", code: err.code, message: err.message };
      }
    } finally {
      clock.busy--;
      clock.activity++;
    }
    if (this.#closed || !server.up) return;
    this.#answer(requestId, request, response, replay);
  }

  #answer(requestId: number, request: Request | undefined, response: Response, replay: boolean) {
    const net = this.#net;
    const frame: Frame = { version: WIRE_VERSION, requestId, type: "response", response };
    const bytes = encodeFrame(frame);
    net.ledger.sent(this.#state.username, request, frame, replay);
    this.#asked.delete(requestId);
    if (replay) return; // the answer to a replay goes to a request the client never made
    if (response.kind !== "error" && net.takePowerCutAtAnswer(request?.kind ?? "")) {
      // the answer arrives, then the power goes: what it acknowledged must survive
      const p = this.#pending.get(requestId);
      const decoded = openFrame(bytes).decode();
      if (p && decoded.type === "response") {
        this.#pending.delete(requestId);
        net.clock.clearTimeout(p.timer);
        p.resolve(decoded.response);
      }
      net.fire("power-cut-at-answer", `${this.owner} ${request?.kind}`);
      net.powerCutting = net.powerCutServer();
      return;
    }
    const f = net.faults;
    const kind = request?.kind ?? "";
    const extra = kind === "commit"
      ? f.lossCommit
      : kind === "ack"
      ? f.lossAck
      : kind === "enqueue"
      ? f.lossEnqueue
      : 0;
    if (net.chance(f.loseAnswer + extra / 2, this.#answers)) {
      net.fire(`lost-answer`, `${this.owner} ${kind}`);
      return; // the client times out
    }
    if (net.chance(f.cutBeforeAnswer + extra / 2, this.#answers)) {
      net.fire(`cut-before-answer`, `${this.owner} ${kind}`);
      this.cut("cut before the answer");
      return;
    }
    this.#down(() => {
      const decoded = openFrame(bytes).decode();
      if (decoded.type !== "response") return;
      const p = this.#pending.get(decoded.requestId);
      if (!p) return; // timed out already
      this.#pending.delete(decoded.requestId);
      net.clock.clearTimeout(p.timer);
      p.resolve(decoded.response);
    }, this.#answers);
  }

  /** A push from the server (the delivery pump waits for it to be taken). */
  #push(requestId: number, push: Push): Promise<void> {
    const net = this.#net;
    if (this.#closed || !net.server.up) {
      return Promise.reject(new TransportError("Connection lost while sending"));
    }
    const frame: Frame = { version: WIRE_VERSION, requestId, type: "push", push };
    const bytes = encodeFrame(frame);
    net.ledger.sent(this.#state.username, undefined, frame);
    const f = net.faults;
    const welcome = push.messages.some((m) => m.messageKind === "welcome");
    if (welcome && net.chance(f.lossWelcome, this.#pushes)) {
      net.fire("lost-welcome", `to ${this.owner}`);
      this.cut("cut before a Welcome arrived");
      return Promise.resolve();
    }
    const deliver = () => {
      const decoded = openFrame(bytes).decode();
      if (decoded.type === "push") this.#options.onPush?.(decoded.push, decoded.requestId);
    };
    this.#down(deliver, this.#pushes);
    if (net.chance(f.dupPush, this.#pushes)) {
      net.fire("dup-push", `to ${this.owner}`);
      this.#down(deliver, this.#pushes);
    }
    return Promise.resolve();
  }

  /** The connection drops (a fault, a partition, a server crash). */
  cut(why: string): void {
    if (this.#closed) return;
    this.#end(new TransportError(`Connection lost (simulated: ${why})`, { code: "unavailable" }));
    this.#options.onClose?.(new TransportError("Connection lost", { code: "unavailable" }));
  }

  #end(error: QpqError): void {
    this.#closed = true;
    this.#net.forget(this);
    this.#net.clock.activity++;
    this.#abort.abort();
    for (const [, p] of this.#pending) {
      this.#net.clock.clearTimeout(p.timer);
      p.reject(error);
    }
    this.#pending.clear();
    if (this.#net.server.up) this.#net.server.disconnected(this.#state);
  }

  /** Close (our side ends the stream; like QUIC, the client hears the end: onClose). */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#end(lost());
    this.#options.onClose?.(undefined);
    return Promise.resolve();
  }
}

function lost(): TransportError {
  return new TransportError("Connection is closed", { code: "transport" });
}
