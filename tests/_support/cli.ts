/**
 * Spawn the real `qpq` entry point (main.ts) as a process, with the same permissions the
 * `qpq` task grants.
 *
 * @module
 */
import { startTestServer, type TestServer } from "./server.ts";

/** Permission and unstable flags of `deno task qpq` (kept in step with deno.json). */
export async function qpqRunFlags(): Promise<string[]> {
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  const task: string = denoJson.tasks.qpq;
  const parts = task.split(/\s+/);
  return parts.slice(2, parts.indexOf("main.ts"));
}

/** Result of a finished process. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/** Options for {@link runQpq}. */
export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string;
  timeoutMs?: number;
}

/** Run `qpq ...args` to completion. */
export async function runQpq(args: string[], options: RunOptions = {}): Promise<CliResult> {
  const child = spawnQpq(args, { ...options, stdin: options.stdin !== undefined });
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  return await finish(child, options.timeoutMs ?? 60_000);
}

/** Wait for a spawned child (stdout and stderr piped), SIGKILLed after `timeoutMs`. */
export async function finish(child: Deno.ChildProcess, timeoutMs: number): Promise<CliResult> {
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Start `qpq ...args` and return the child process (stdout/stderr piped). */
export function spawnQpq(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; stdin?: boolean } = {},
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", CONFIG, ...FLAGS, MAIN, ...args],
    ...(options.cwd ? { cwd: options.cwd } : {}),
    env: { NO_COLOR: "1", ...options.env },
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

const FLAGS = await qpqRunFlags();

/** Read lines from a child's stdout until `pred` matches one; returns all lines read. */
export async function readUntil(
  stream: ReadableStream<Uint8Array>,
  pred: (line: string) => boolean,
  timeoutMs = 30_000,
): Promise<{ lines: string[]; reader: ReadableStreamDefaultReader<string> }> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  const lines: string[] = [];
  let buf = "";
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      if (pred(line)) return { lines, reader };
    }
  }
  throw new Error(`expected line not seen; got:\n${lines.join("\n")}${buf}`);
}

/** A `qpq server` child process started by {@link startServerProcess}. */
export interface ServerProcess {
  child: Deno.ChildProcess;
  /** The bound address (`HOST:PORT`). */
  addr: string;
  /** Everything the server wrote on stderr, once it exited. */
  stderr: Promise<string>;
  /** SIGTERM and wait; resolves to the exit code. Repeated calls share the first. */
  stop(): Promise<number>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

/**
 * Start `qpq server --listen LISTEN --data-dir DIR ...extra` and wait for its address.
 * Listen on port 0 for a fresh server; a restart on the address of a server just stopped
 * retries while the port is still taken (the OS may hold it for a moment), for up to 5 s.
 */
export async function startServerProcess(
  dataDir: string,
  listen: string,
  options: { extra?: string[]; env?: Record<string, string>; cwd?: string } = {},
): Promise<ServerProcess> {
  const args = ["server", "--listen", listen, "--data-dir", dataDir, ...(options.extra ?? [])];
  for (let attempt = 0;; attempt++) {
    const child = spawnQpq(args, {
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    const stderr = new Response(child.stderr).text();
    let started;
    try {
      started = await readUntil(child.stdout, (l) => l.includes("listening on"));
    } catch (e) {
      await child.status;
      const err = await stderr;
      if (err.includes("Cannot listen") && attempt < 50) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      throw new Error(`qpq server did not start: ${err.trim() || (e as Error).message}`);
    }
    const addr = /listening on (\S+)/.exec(started.lines.join("\n"))?.[1];
    if (!addr) throw new Error(`no address in ${started.lines.join("\n")}`);
    // keep draining stdout so the server never blocks on a full pipe
    const drained = (async () => {
      while (!(await started.reader.read()).done) { /* discard */ }
    })().catch(() => {});
    let stopped: Promise<number> | undefined;
    const signal = (sig: Deno.Signal): Promise<number> => {
      try {
        child.kill(sig);
      } catch { /* already gone */ }
      return (async () => {
        const status = await child.status;
        await drained;
        await stderr;
        return status.code;
      })();
    };
    return {
      child,
      addr,
      stderr,
      stop: () => stopped ??= signal("SIGTERM"),
      kill: async () => {
        stopped ??= signal("SIGKILL");
        await stopped;
      },
    };
  }
}

/** `qpq ...args --username user`, as `user` types it (see {@link withCliUsers}). */
export type QpqAs = (user: string, ...args: string[]) => Promise<CliResult>;

/**
 * A test server and a working directory for CLI users: `qpq(user, ...args)` runs the real
 * entry point there with `QPQ_SERVER`, `QPQ_CA_CERT` and the password `pw-<user>`. Both are
 * removed afterwards.
 */
export async function withCliUsers(
  fn: (
    qpq: QpqAs,
    ctx: { ts: TestServer; dir: string; env: (user: string) => Record<string, string> },
  ) => Promise<void>,
  server: { file?: Record<string, string | number | boolean> } = {},
): Promise<void> {
  const ts = await startTestServer(server);
  const dir = await Deno.makeTempDir({ prefix: "qpq-cli-users-" });
  await Deno.writeTextFile(`${dir}/ca.pem`, ts.certPem);
  const env = (user: string) => ({
    QPQ_SERVER: ts.addr,
    QPQ_CA_CERT: `${dir}/ca.pem`,
    QPQ_PASSWORD: `pw-${user}`,
  });
  const qpq: QpqAs = (user, ...args) =>
    runQpq([...args, "--username", user], { cwd: dir, env: env(user) });
  try {
    await fn(qpq, { ts, dir, env });
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A history line's local time prefix and the message's number (`14:05 [3] `). */
const TIME_PREFIX = /^([01][0-9]|2[0-3]):[0-5][0-9] (\[[0-9]+\] )?/;
/** The line history prints where a new local day begins. */
const DAY_LINE = /^── (Sun|Mon|Tue|Wed|Thu|Fri|Sat) [0-9]{1,2} [A-Z][a-z]{2} [0-9]{4} ──$/;

/**
 * History lines without their day lines, time prefixes and numbers (`14:05 [1] [alice] hi` →
 * `[alice] hi`); throws when a line has neither form, so the times cannot silently go missing.
 */
export function untimed(lines: string[]): string[] {
  return lines.flatMap((l) => {
    if (DAY_LINE.test(l)) return [];
    if (!TIME_PREFIX.test(l)) throw new Error(`history line without its time: ${l}`);
    // the receipt marks of our own messages (✓ sent, ✓✓ delivered, ✓✓✓ read) depend on
    // when the others' receipts arrived: tests/cli_receipts_test.ts checks them
    return [l.replace(TIME_PREFIX, "").replace(/ ✓{1,3}$/, "")];
  });
}

/** One history line without its time prefix (a day line stays as it is). */
export function untimedLine(l: string): string {
  return l.replace(TIME_PREFIX, "");
}
