/**
 * The local control socket: other `qpq` commands of the same state run through the process
 * that holds it (a REPL, a chat), so a script can send while a person chats.
 *
 * The process holding the state lock listens on a Unix domain socket in a directory of its
 * own next to the state file (`.<state file>.ctl/s`, the directory 0700, the socket 0600,
 * both removed on exit; one left by a crashed process is replaced: whoever holds the lock
 * is the only one serving). A command that finds the lock held connects there:
 *
 * ```
 * server ─► {v:1, challenge: 32 random bytes}
 * client ─► {v:1, nonce: 32 random bytes, args, mac}
 *           mac = HMAC(control key, "qpq control client v1" ‖ challenge ‖ nonce ‖ JSON(args))
 * server: wrong mac ─► {refused} (counted; 5 wrong: every connection refused for 60 s)
 * server ─► {proof: HMAC(control key, "qpq control server v1" ‖ nonce ‖ challenge)}
 * server ─► {out: line} | {err: line} …, then {exit: code}
 * ```
 *
 * The control key is derived from the state key (HKDF, its own label; see
 * `_client_keys.ts`), so only a process that knows the password (QPQ_PASSWORD or the
 * prompt) can act as the user: file permissions alone keep other OS users out, and the
 * MAC keeps out same-user processes without the password. Each frame is a u32 big-endian
 * length and JSON, at most {@link MAX_FRAME_BYTES}. The command runs in the serving
 * process through its open client, one at a time and never beside the REPL's own command
 * ({@link exclusive}), its output sent back line by line.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { basename, dirname, join, resolve } from "node:path";
import { concat, constantTimeEqual, fromHex, toHex, utf8 } from "../bytes.ts";
import { AuthError, QpqError, TransportError, UsageError } from "../errors.ts";
import { OUTPUT, type OutputSink } from "./_args.ts";
import { visibleLines } from "./_terminal.ts";

/** Version of the control protocol (the `v` of both hellos). */
export const CONTROL_VERSION = 1;
/** Largest frame either side reads (bytes). */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Largest client hello (bytes): the arguments of one command line. */
const MAX_HELLO_BYTES = 16 * 1024;
const MAX_ARGS = 64;
const MAX_LINE_CHARS = 16 * 1024;
/** How long the server waits for a client's hello. */
const HELLO_TIMEOUT_MS = 10_000;
/** Wrong answers before the socket refuses everyone for {@link LOCKOUT_MS}. */
export const MAX_FAILURES = 5;
const LOCKOUT_MS = 60_000;
/** Delay before answering a wrong MAC (slows guessing). */
const FAILURE_DELAY_MS = 500;
const CLIENT_LABEL = utf8("qpq control client v1");
const SERVER_LABEL = utf8("qpq control server v1");

/** Commands that may run through the serving process. */
export const FORWARDABLE = new Set([
  "send",
  "react",
  "edit",
  "delete",
  "list",
  "members",
  "history",
  "recv",
  "whoami",
  "requests",
  "accept",
  "block",
  "unblock",
  "dm",
  "create-group",
  "invite",
  "join",
  "remove",
  "leave",
  "verify",
  "update",
  "receipts",
  "admin",
  "rename",
  "describe",
  "disappear",
]);

/**
 * How a served command runs: the command table's dispatcher, handed over by src/cli/main.ts
 * when it loads (the command modules cannot import the table that imports them).
 */
let commandRunner: ((args: string[]) => Promise<number>) | undefined;

/** Set by src/cli/main.ts: run one qpq command line as if typed. */
export function setCommandRunner(run: (args: string[]) => Promise<number>): void {
  commandRunner = run;
}

/** Run a served command line through the command table {@link setCommandRunner} set. */
export function runCommandLine(args: string[]): Promise<number> {
  if (commandRunner === undefined) throw new Error("qpq: no command table to serve from");
  return commandRunner(args);
}

/** Thrown by a command that ran through the serving process: exit with its code. */
export class ForwardedExit extends Error {
  override name = "ForwardedExit";
  constructor(readonly exitCode: number) {
    super(`forwarded command exited ${exitCode}`);
  }
}

/** Proof of the state key: what the serving process and a forwarding command share. */
export interface ControlKey {
  controlMac(...parts: Uint8Array[]): Uint8Array;
}

/** The socket directory and socket of a state. */
export function controlPaths(statePath: string): { dir: string; socket: string } {
  const abs = resolve(statePath);
  const dir = join(dirname(abs), `.${basename(abs)}.ctl`);
  return { dir, socket: join(dir, "s") };
}

/** Whether this platform has Unix domain sockets for the control socket. */
export function controlSupported(): boolean {
  return Deno.build.os !== "windows";
}

/** The client a forwarded command runs on (set while the serving process runs it). */
export const SERVED = new AsyncLocalStorage<object>();

const chains = new WeakMap<object, Promise<unknown>>();

/**
 * Run `fn` after every earlier `exclusive` call for the same `owner` has finished: the
 * REPL's commands and forwarded ones take turns on the one client.
 */
export function exclusive<T>(owner: object, fn: () => Promise<T>): Promise<T> {
  const before = chains.get(owner) ?? Promise.resolve();
  const result = before.then(fn, fn);
  chains.set(owner, result.catch(() => {}));
  return result;
}

/** Why a directory cannot hold the control socket, or undefined when it is private. */
function notPrivate(dir: string): string | undefined {
  const st = Deno.lstatSync(dir);
  if (!st.isDirectory) return "it is not a directory";
  if (st.uid !== null && st.uid !== Deno.uid()) return `it belongs to another user (uid ${st.uid})`;
  if (st.mode !== null && (st.mode & 0o077) !== 0) {
    return `others may use it (mode ${(st.mode & 0o777).toString(8)})`;
  }
  return undefined;
}

async function readFrame(conn: Deno.Conn, max: number): Promise<unknown | null> {
  const head = await readExactly(conn, 4);
  if (head === null) return null;
  const len = new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
  if (len > max) throw new TransportError(`Control frame too large (${len} bytes)`);
  const body = await readExactly(conn, len);
  if (body === null) throw new TransportError("Control connection closed in a frame");
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw new TransportError("Control frame is not JSON");
  }
}

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const got = await conn.read(out.subarray(off));
    if (got === null) {
      if (off === 0) return null;
      throw new TransportError("Control connection closed in a frame");
    }
    off += got;
  }
  return out;
}

async function writeFrame(conn: Deno.Conn, value: unknown): Promise<void> {
  const body = utf8(JSON.stringify(value));
  const head = new Uint8Array(4);
  new DataView(head.buffer).setUint32(0, body.length);
  const all = concat(head, body);
  let off = 0;
  while (off < all.length) off += await conn.write(all.subarray(off));
}

function record(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? v as Record<string, unknown>
    : {};
}

function hex32(v: unknown): Uint8Array | undefined {
  if (typeof v !== "string" || !/^[0-9a-f]{64}$/.test(v)) return undefined;
  return fromHex(v);
}

function clientMac(key: ControlKey, challenge: Uint8Array, nonce: Uint8Array, args: string[]) {
  return key.controlMac(CLIENT_LABEL, challenge, nonce, utf8(JSON.stringify(args)));
}

/** What the serving process runs for a forwarded command line. */
export type RunForwarded = (args: string[]) => Promise<number>;

/** The listening side, in the process holding the state lock. */
export class ControlServer {
  readonly #listener: Deno.Listener;
  readonly #paths: { dir: string; socket: string };
  readonly #key: ControlKey;
  readonly #run: RunForwarded;
  readonly #conns = new Set<Deno.Conn>();
  #failures = 0;
  #lockedUntil = 0;
  #closed = false;
  #accepting: Promise<void>;

  private constructor(
    listener: Deno.Listener,
    paths: { dir: string; socket: string },
    key: ControlKey,
    run: RunForwarded,
  ) {
    this.#listener = listener;
    this.#paths = paths;
    this.#key = key;
    this.#run = run;
    this.#accepting = this.#accept();
  }

  /**
   * Listen for the state at `statePath` (the caller holds its lock). Undefined, with the
   * reason passed to `warn`, when it cannot (no Unix sockets, a directory not this user's).
   */
  static start(
    statePath: string,
    key: ControlKey,
    run: RunForwarded,
    warn: (text: string) => void,
  ): ControlServer | undefined {
    if (!controlSupported()) return undefined;
    const paths = controlPaths(statePath);
    try {
      try {
        Deno.mkdirSync(paths.dir, { mode: 0o700 });
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
      const why = notPrivate(paths.dir);
      if (why !== undefined) {
        warn(`Not serving other qpq commands: ${paths.dir} is not private (${why})`);
        return undefined;
      }
      // we hold the state lock, so a socket here is a crashed holder's: replace it
      try {
        Deno.removeSync(paths.socket);
      } catch { /* none */ }
      const listener = Deno.listen({ transport: "unix", path: paths.socket });
      Deno.chmodSync(paths.socket, 0o600);
      return new ControlServer(listener, paths, key, run);
    } catch (e) {
      warn(
        `Not serving other qpq commands: ${e instanceof Error ? e.message : String(e)}`,
      );
      return undefined;
    }
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.#conns.add(conn);
        void this.#serve(conn).finally(() => {
          this.#conns.delete(conn);
          try {
            conn.close();
          } catch { /* closed */ }
        });
      }
    } catch { /* listener closed */ }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    try {
      if (Date.now() < this.#lockedUntil) {
        const s = Math.ceil((this.#lockedUntil - Date.now()) / 1000);
        await writeFrame(conn, {
          v: CONTROL_VERSION,
          refused: `Too many wrong passwords on the control socket: try again in ${s} s`,
        });
        return;
      }
      const challenge = crypto.getRandomValues(new Uint8Array(32));
      await writeFrame(conn, { v: CONTROL_VERSION, challenge: toHex(challenge) });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const hello = record(
        await Promise.race([
          readFrame(conn, MAX_HELLO_BYTES),
          new Promise<null>((ok) => timer = setTimeout(() => ok(null), HELLO_TIMEOUT_MS)),
        ]).finally(() => clearTimeout(timer)),
      );
      if (hello.v !== CONTROL_VERSION) {
        await writeFrame(conn, { refused: `Unsupported control protocol version` });
        return;
      }
      const nonce = hex32(hello.nonce);
      const mac = hex32(hello.mac);
      const args = hello.args;
      if (
        nonce === undefined || mac === undefined || !Array.isArray(args) ||
        args.length === 0 || args.length > MAX_ARGS ||
        !args.every((a) => typeof a === "string" && a.length <= MAX_LINE_CHARS)
      ) {
        await writeFrame(conn, { refused: "Malformed control request" });
        return;
      }
      const argv = args as string[];
      if (!constantTimeEqual(mac, clientMac(this.#key, challenge, nonce, argv))) {
        if (++this.#failures >= MAX_FAILURES) {
          this.#lockedUntil = Date.now() + LOCKOUT_MS;
          this.#failures = 0;
        }
        await new Promise((ok) => setTimeout(ok, FAILURE_DELAY_MS));
        await writeFrame(conn, {
          refused: "Wrong password: the running qpq process did not accept the command",
        });
        return;
      }
      this.#failures = 0;
      await writeFrame(conn, {
        proof: toHex(this.#key.controlMac(SERVER_LABEL, nonce, challenge)),
      });
      const name = argv[0]!;
      if (!FORWARDABLE.has(name)) {
        await writeFrame(conn, {
          err: `qpq: ${
            visibleLines(name.slice(0, 64))
          } cannot run beside the qpq process (pid ${Deno.pid}) that has this state open: use it there, or quit it first`,
        });
        await writeFrame(conn, { exit: 1 });
        return;
      }
      // frames in order; a client gone mid-command only loses its output
      let writes = Promise.resolve();
      let gone = false;
      const send = (frame: unknown) => {
        writes = writes.then(() => gone ? undefined : writeFrame(conn, frame)).catch(() => {
          gone = true;
        });
      };
      const sink: OutputSink = {
        out: (line) => send({ out: line.slice(0, MAX_FRAME_BYTES / 8) }),
        err: (line) => send({ err: line.slice(0, MAX_FRAME_BYTES / 8) }),
      };
      const code = await OUTPUT.run(sink, () => this.#run(argv));
      send({ exit: code });
      await writes;
    } catch { /* a bad or vanished client: never the serving process's problem */ }
  }

  /** Stop listening, end open connections, remove the socket and its directory. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await this.#accepting;
    try {
      Deno.removeSync(this.#paths.socket);
    } catch { /* gone */ }
    try {
      Deno.removeSync(this.#paths.dir);
    } catch { /* not empty or gone */ }
  }
}

/**
 * Run `args` (a whole command line) through the process serving the state at `statePath`.
 * Resolves to its exit code, its output written here as it comes; undefined when no process
 * serves (no socket, a stale one, no Unix sockets here): the caller reports the lock.
 *
 * @throws {UsageError} (exit 1) when the socket's directory is not private
 * @throws {AuthError} when the serving process refuses (a wrong password)
 */
export async function forward(
  statePath: string,
  args: string[],
  unlock: () => Promise<ControlKey & { destroy(): void }>,
): Promise<number | undefined> {
  if (!controlSupported()) return undefined;
  const paths = controlPaths(statePath);
  let why: string | undefined;
  try {
    why = notPrivate(paths.dir);
  } catch {
    return undefined; // no directory: nobody serves
  }
  if (why !== undefined) {
    throw new UsageError(
      `Not using the control socket ${paths.socket}: its directory is not private (${why}); remove it if you did not make it`,
      { code: "forbidden" },
    );
  }
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ transport: "unix", path: paths.socket });
  } catch {
    return undefined; // stale: its process is gone
  }
  const key = await unlock().catch((e) => {
    conn.close();
    throw e;
  });
  try {
    const hello = record(await readFrame(conn, MAX_FRAME_BYTES));
    if (typeof hello.refused === "string") throw new AuthError(visibleLines(hello.refused));
    const challenge = hex32(hello.challenge);
    if (hello.v !== CONTROL_VERSION || challenge === undefined) {
      throw new TransportError("The running qpq process speaks another control protocol");
    }
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const mine = {
      v: CONTROL_VERSION,
      nonce: toHex(nonce),
      args,
      mac: toHex(clientMac(key, challenge, nonce, args)),
    };
    if (utf8(JSON.stringify(mine)).length > MAX_HELLO_BYTES) {
      throw new UsageError(
        `This command line (with its standard input) is over ${
          MAX_HELLO_BYTES / 1024
        } KiB, more than the qpq process that has this state open takes: quit it and run the command again`,
      );
    }
    await writeFrame(conn, mine);
    let proven = false;
    const enc = new TextEncoder();
    while (true) {
      const frame = await readFrame(conn, MAX_FRAME_BYTES);
      if (frame === null) {
        throw new TransportError("The running qpq process closed the control connection");
      }
      const f = record(frame);
      if (typeof f.refused === "string") throw new AuthError(visibleLines(f.refused));
      if (!proven) {
        const proof = hex32(f.proof);
        if (
          proof === undefined ||
          !constantTimeEqual(proof, key.controlMac(SERVER_LABEL, nonce, challenge))
        ) {
          throw new AuthError("The control socket's process does not know this state's key");
        }
        proven = true;
        continue;
      }
      if (typeof f.out === "string") {
        Deno.stdout.writeSync(enc.encode(visibleLines(f.out) + "\n"));
      } else if (typeof f.err === "string") {
        Deno.stderr.writeSync(enc.encode(visibleLines(f.err) + "\n"));
      } else if (typeof f.exit === "number" && Number.isInteger(f.exit)) {
        return Math.min(Math.max(f.exit, 0), 255);
      } else {
        throw new TransportError("Unexpected frame from the running qpq process");
      }
    }
  } catch (e) {
    if (e instanceof QpqError) throw e;
    throw new TransportError("The running qpq process closed the control connection", {
      cause: e,
    });
  } finally {
    key.destroy();
    try {
      conn.close();
    } catch { /* closed */ }
  }
}
