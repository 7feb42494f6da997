/**
 * Offline first (issue 21, part 1): with the server down, what the device holds answers at
 * once, `send` queues in well under a second more than a local command, and the REPL starts
 * offline and goes online in the background once the server is back, saying so in one line.
 * Every command is the real entry point in its own process.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import {
  type CliResult,
  runQpq,
  type ServerProcess,
  spawnQpq,
  startServerProcess,
} from "./_support/cli.ts";

/** A server process with a data dir, and `qpq(user, ...args)` run in a client directory. */
async function withServerProcess(
  fn: (ctx: {
    server: () => ServerProcess;
    restart: () => Promise<void>;
    qpq: (user: string, ...args: string[]) => Promise<CliResult & { ms: number }>;
    dir: string;
    env: (user: string) => Record<string, string>;
  }) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "qpq-offline-" });
  const dataDir = `${root}/data`;
  const dir = `${root}/clients`;
  await Deno.mkdir(dir);
  let server = await startServerProcess(dataDir, "127.0.0.1:0");
  const listen = server.addr; // the restart reuses this port
  const env = (user: string) => ({
    QPQ_SERVER: listen,
    QPQ_CA_CERT: `${dataDir}/server-cert.pem`,
    QPQ_PASSWORD: `pw-${user}`,
  });
  const qpq = async (user: string, ...args: string[]) => {
    const t0 = performance.now();
    const r = await runQpq([...args, "--username", user], { cwd: dir, env: env(user) });
    return { ...r, ms: performance.now() - t0 };
  };
  try {
    await fn({
      server: () => server,
      restart: async () => {
        server = await startServerProcess(dataDir, listen);
      },
      qpq,
      dir,
      env,
    });
  } finally {
    await server.kill();
    await Deno.remove(root, { recursive: true });
  }
}

function ok<R extends CliResult>(r: R): R {
  assertEquals(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return r;
}

/** Slack over a local-only command (`whoami`) that an offline answer may take (old: 10 s). */
const OFFLINE_SLACK_MS = 3_000;

Deno.test("offline: list and members answer from the device at once, send queues at once", async () => {
  await withServerProcess(async ({ server, qpq, dir, env }) => {
    for (const u of ["alice", "bob"]) ok(await qpq(u, "register-user"));
    ok(await qpq("alice", "create-group", "team"));
    ok(await qpq("alice", "invite", "team", "bob"));
    ok(await qpq("alice", "send", "--to", "bob", "hi bob"));
    assertEquals(await server().stop(), 0);

    // the same process start, state and key derivation as the others, and no server
    const local = ok(await qpq("alice", "whoami"));
    const list = ok(await qpq("alice", "list"));
    assertEquals(list.stdout, "#team\tgroup\n@bob\tdm\n");
    assertEquals(list.stderr.trim().split("\n").length, 1, list.stderr);
    assertStringIncludes(list.stderr, "qpq: warning: Offline, showing what this device has");
    const json = ok(await qpq("alice", "list", "--json"));
    const listed = JSON.parse(json.stdout);
    assertEquals([listed.type, listed.offline], ["list", true]);
    const members = ok(await qpq("alice", "members", "team"));
    assertEquals(members.stdout.split("\n")[0], "#team: alice (admin), bob");
    const history = ok(await qpq("alice", "history", "@bob"));
    assertStringIncludes(history.stdout, "[alice] hi bob");
    const send = ok(await qpq("alice", "send", "--to", "bob", "while the server is down"));
    assertEquals(send.stdout, "");
    assertEquals(send.stderr, "queued for @bob (server unreachable)\n");
    for (const r of [list, json, members, history, send]) {
      assert(
        r.ms < local.ms + OFFLINE_SLACK_MS,
        `${r.ms.toFixed(0)} ms offline against ${local.ms.toFixed(0)} ms for whoami`,
      );
    }
    assertEquals(JSON.parse(ok(await qpq("alice", "whoami", "--json")).stdout).queued, 1);
    // chat starts offline too: its history, then the line that says so
    const chat = await runQpq(["chat", "@bob", "--username", "alice"], {
      cwd: dir,
      env: env("alice"),
      stdin: "/quit\n",
      timeoutMs: 20_000,
    });
    assertEquals(chat.code, 0, chat.stderr);
    const lines = chat.stdout.split("\n");
    assert(lines.includes("[alice] hi bob"), chat.stdout);
    assert(lines.some((l) => l.startsWith("Offline: no answer from ")), chat.stdout);
  });
});

/** Lines of a child's stdout, awaited one match at a time. */
class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #buf = "";
  readonly all: string[] = [];
  #next = 0;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Wait for a line matching `pred` after the last one returned. */
  async until(pred: (line: string) => boolean, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      for (let i = this.#next; i < this.all.length; i++) {
        if (pred(this.all[i]!)) {
          this.#next = i + 1;
          return this.all[i]!;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`line not seen; output so far:\n${this.all.join("\n")}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        this.#reader.read(),
        new Promise<"timeout">((res) => timer = setTimeout(() => res("timeout"), left)),
      ]);
      clearTimeout(timer);
      if (r === "timeout") continue;
      if (r.done) throw new Error(`output ended; got:\n${this.all.join("\n")}${this.#buf}`);
      this.#buf += r.value;
      let i;
      while ((i = this.#buf.indexOf("\n")) >= 0) {
        this.all.push(this.#buf.slice(0, i));
        this.#buf = this.#buf.slice(i + 1);
      }
    }
  }

  async rest(): Promise<void> {
    while (!(await this.#reader.read()).done) { /* drain */ }
  }
}

Deno.test("offline: the repl starts without the server, queues, and goes online when it is back", async () => {
  await withServerProcess(async ({ server, restart, qpq, dir, env }) => {
    for (const u of ["alice", "bob"]) ok(await qpq(u, "register-user"));
    ok(await qpq("alice", "send", "--to", "bob", "before"));
    ok(await qpq("bob", "accept", "@alice"));
    assertEquals(await server().stop(), 0);

    const t0 = performance.now();
    const child = spawnQpq(["repl", "--username", "alice"], {
      cwd: dir,
      env: env("alice"),
      stdin: true,
    });
    const stderr = new Response(child.stderr).text();
    const out = new Lines(child.stdout);
    const w = child.stdin.getWriter();
    const type = (line: string) => w.write(new TextEncoder().encode(line + "\n"));
    try {
      await out.until((l) => l.startsWith("qpq repl: alice on "));
      const offline = await out.until((l) => l.startsWith("Offline: "));
      // old: no REPL at all (exit 1 after the 10 s handshake timeout)
      assert(performance.now() - t0 < 9_000, `offline REPL after ${performance.now() - t0} ms`);
      assertStringIncludes(offline, "what you send is queued");
      await type("/switch @bob");
      await out.until((l) => l === "* now talking in @bob");
      const typed = performance.now();
      await type("typed offline");
      await out.until((l) => l.startsWith("(queued: server unreachable"));
      assert(performance.now() - typed < 3_000, `queued after ${performance.now() - typed} ms`);
      await type("/whoami");
      assertStringIncludes(await out.until((l) => l.startsWith("alice on ")), "(offline)");

      await restart();
      const online = await out.until((l) => l.startsWith("Online: "), 60_000);
      assertEquals(online, `Online: connected to ${server().addr}`);
      // what was queued went out without another line typed
      const deadline = Date.now() + 30_000;
      let got = "";
      while (Date.now() < deadline && !got.includes("[alice] typed offline")) {
        got = ok(await qpq("bob", "recv")).stdout;
        if (!got.includes("[alice] typed offline")) await new Promise((r) => setTimeout(r, 300));
      }
      assertStringIncludes(got, "[alice] typed offline");
      ok(await qpq("bob", "send", "--to", "alice", "welcome back"));
      await out.until((l) => l === "[bob] welcome back");
      await type("/quit");
      await w.close();
      assertEquals((await child.status).code, 0, await stderr);
      assertEquals(out.all.filter((l) => l.startsWith("Online: ")).length, 1, out.all.join("\n"));
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await out.rest().catch(() => {});
      await stderr.catch(() => "");
      await child.status;
    }
  });
});
