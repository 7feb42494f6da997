/**
 * The real qpq server as a child process (`main.ts server`), so the simulation can stop it
 * with SIGTERM (graceful) or SIGKILL (power cut) and start it again on the same address
 * and data directory.
 *
 * @module
 */
import { readUntil, spawnQpq } from "../_support/cli.ts";

/** A running (or restartable) server process. */
export class ServerProcess {
  #child: Deno.ChildProcess | undefined;
  #drained: Promise<void> = Promise.resolve();
  #tail: string[] = [];
  /** `HOST:PORT` the server listens on (fixed after the first start). */
  addr: string;
  /** The server's certificate (PEM), generated in the data directory on first start. */
  certPem = "";
  /** How many times the server was started. */
  starts = 0;
  readonly dataDir: string;

  private constructor(dataDir: string, addr: string) {
    this.dataDir = dataDir;
    this.addr = addr;
  }

  /** Start a server on a free loopback port with a fresh data directory. */
  static async start(dataDir: string): Promise<ServerProcess> {
    const p = new ServerProcess(dataDir, "127.0.0.1:0");
    await p.#spawn();
    p.certPem = await Deno.readTextFile(`${dataDir}/server-cert.pem`);
    return p;
  }

  /** The last lines the server wrote to stderr (for a violation report). */
  tail(): string[] {
    return [...this.#tail];
  }

  async #spawn(): Promise<void> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 20; attempt++) {
      const child = spawnQpq(["server", "--listen", this.addr, "--data-dir", this.dataDir], {
        env: { QPQ_LOG: "warn" },
      });
      const errText = this.#keepTail(child.stderr);
      try {
        const { lines, reader } = await readUntil(
          child.stdout,
          (l) => l.startsWith("SHA-256 fingerprint"),
          30_000,
        );
        const addr = /listening on (\S+)/.exec(lines.join("\n"))?.[1];
        if (!addr) throw new Error(`server printed no address: ${lines.join(" | ")}`);
        this.addr = addr;
        this.#child = child;
        this.starts++;
        this.#drained = (async () => {
          while (!(await reader.read()).done) { /* drain */ }
          await errText;
        })().catch(() => {});
        return;
      } catch (e) {
        lastError = e;
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        await child.status;
        await errText.catch(() => {});
        // the port may still be held by the previous process for a moment
        await new Promise((r) => setTimeout(r, 100 + 50 * attempt));
      }
    }
    throw new Error(`cannot start the server on ${this.addr}: ${String(lastError)}`);
  }

  #keepTail(stream: ReadableStream<Uint8Array>): Promise<void> {
    return (async () => {
      const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          this.#tail.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
          if (this.#tail.length > 40) this.#tail.shift();
        }
      }
    })();
  }

  /** Stop the server with `signal` and wait until it has exited. */
  async stop(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    try {
      child.kill(signal);
    } catch { /* already gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 15_000);
    await child.status;
    clearTimeout(timer);
    await this.#drained;
  }

  /** Stop with `signal` and start again on the same address and data directory. */
  async restart(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    await this.stop(signal);
    await this.#spawn();
  }
}
