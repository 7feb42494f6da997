/**
 * `qpq repl` driven as a real process: through piped stdin (one line at a time, waiting
 * for each answer), and once in a real terminal under tmux to check that an incoming
 * message does not garble a half-typed line.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { qpqRunFlags, runQpq, spawnQpq, untimed, untimedLine } from "./_support/cli.ts";
import { startTestServer, type TestServer } from "./_support/server.ts";

/** Line-by-line reader over a child's stdout that can wait for a line more than once. */
class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #buf = "";
  /** Every line read so far. */
  readonly all: string[] = [];
  #next = 0;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Wait for a line matching `pred` (after the last one returned); returns the lines up to it. */
  async until(pred: (line: string) => boolean, timeoutMs = 20_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      for (let i = this.#next; i < this.all.length; i++) {
        if (pred(this.all[i]!)) {
          const got = this.all.slice(this.#next, i + 1);
          this.#next = i + 1;
          return got;
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

  /** Read to the end. */
  async rest(): Promise<string[]> {
    while (true) {
      const r = await this.#reader.read();
      if (r.done) break;
      this.#buf += r.value;
    }
    this.all.push(...this.#buf.split("\n").filter((l) => l.length > 0));
    this.#buf = "";
    const got = this.all.slice(this.#next);
    this.#next = this.all.length;
    return got;
  }
}

interface Setup {
  ts: TestServer;
  dir: string;
  cert: string;
  args: (user: string) => string[];
  env: (user: string) => Record<string, string>;
}

async function setup(): Promise<Setup> {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-repl-" });
  const cert = `${dir}/server-cert.pem`;
  await Deno.writeTextFile(cert, ts.certPem);
  return {
    ts,
    dir,
    cert,
    args: (user) => [
      "--username",
      user,
      "--server",
      ts.addr,
      "--ca-cert",
      cert,
      "--state",
      `${dir}/${user}.bin`,
    ],
    env: (user) => ({ QPQ_PASSWORD: `pw of ${user}` }),
  };
}

async function teardown(s: Setup): Promise<void> {
  await s.ts.close();
  await Deno.remove(s.dir, { recursive: true });
}

Deno.test("qpq repl over piped stdin: auto-registers, slash commands, sends and receives", async () => {
  const s = await setup();
  try {
    const reg = await runQpq(["register-user", ...s.args("bob")], { env: s.env("bob") });
    assertEquals(reg.code, 0, reg.stderr);

    const child = spawnQpq(["repl", ...s.args("alice")], { env: s.env("alice"), stdin: true });
    const stderr = new Response(child.stderr).text();
    const out = new Lines(child.stdout);
    const w = child.stdin.getWriter();
    const send = (line: string) => w.write(new TextEncoder().encode(line + "\n"));
    /** Type a line and wait for the answer line. */
    const ask = async (line: string, answer: (l: string) => boolean) => {
      await send(line);
      return await out.until(answer);
    };
    try {
      const start = await out.until((l) => l.startsWith("qpq repl: "));
      assertEquals(start, [
        `* registered alice on ${s.ts.addr}`,
        `qpq repl: alice on ${s.ts.addr} — /help for commands`,
      ]);

      const who = await ask("/whoami", (l) => l.startsWith("active:"));
      assertEquals(who[0], `alice on ${s.ts.addr} (online)`);
      assert(/^identity fingerprint: [0-9 ]+$/.test(who[1]!), who[1]);
      assertEquals(who[2], "active: none; conversations: 0");

      const help = await ask("/help", (l) => l.startsWith("anything else"));
      for (const cmd of ["/dm", "/create-group", "/invite", "/switch", "/list", "/members"]) {
        assert(help.some((l) => l.startsWith(cmd + " ")), `${cmd} in /help`);
      }
      // one column for what each does (issue 21: they were misaligned), verify and update too
      const columns = new Set(
        help.filter((l) => l.startsWith("/")).map((l) =>
          l.length - l.replace(/^.*? {2,}/, "").length
        ),
      );
      assertEquals(columns.size, 1, help.join("\n"));
      assert(
        help.some((l) => l.startsWith("/verify ")) && help.some((l) => l.startsWith("/update ")),
      );

      // mistakes answer with one error line and the loop goes on
      assertEquals(await ask("/frobnicate", (l) => l.startsWith("error:")), [
        "error: Unknown command /frobnicate: /help lists them; //… sends a line starting with /",
      ]);
      // words past what a command takes are refused, not dropped (it created "#Bad")
      assertEquals(await ask("/create-group Bad Name", (l) => l.startsWith("error:")), [
        "error: Usage: /create-group <name>: too many words",
      ]);
      assertEquals(await ask("text with no conversation", (l) => l.startsWith("error:")), [
        "error: No active conversation: /dm <user>, /create-group <name> or /switch",
      ]);
      assertEquals(await ask("/dm nosuchuser", (l) => l.startsWith("error:")), [
        "error: Unknown user nosuchuser",
      ]);

      assertEquals(await ask("/dm bob", (l) => l.startsWith("*")), ["* now talking in @bob"]);
      await send("hello bob, this is the repl");
      await send("//shrug: a line that starts with a slash");
      assertEquals(await ask("/create-group crew", (l) => l.startsWith("*")), ["* created #crew"]);
      assertEquals(await ask("/invite bob", (l) => l.startsWith("*")), ["* invited bob to #crew"]);
      await send("hello crew");
      assertEquals(await ask("/members", (l) => l.startsWith("#crew")), [
        "#crew: alice (admin), bob",
      ]);
      assertEquals(await ask("/switch @bob", (l) => l.startsWith("*")), ["* now talking in @bob"]);
      assertEquals(await ask("/list", (l) => l.endsWith("#crew")), ["* @bob", "  #crew"]);
      assertEquals(await ask("/members", (l) => l.startsWith("@bob")), ["@bob: alice, bob"]);
      const h1 = await ask("/history", (l) => untimedLine(l).startsWith("[alice] /"));
      // our own messages carry their receipt mark in the REPL too (✓ sent so far)
      const ours = h1.filter((l) => untimedLine(l).startsWith("[alice]"));
      assert(ours.length === 2 && ours.every((l) => / ✓{1,3}$/.test(l)), h1.join("\n"));
      // another conversation's history without switching to it
      const hc = await ask("/history crew", (l) => untimedLine(l).includes("hello crew"));
      assertEquals(untimed(hc), ["[#crew] alice: hello crew"]);
      assertEquals(untimed(h1), [
        "[alice] hello bob, this is the repl",
        "[alice] /shrug: a line that starts with a slash",
      ]);

      // alice is not bob's contact: the CLI shows bob two requests, one line each
      const got0 = await runQpq(["recv", ...s.args("bob")], { env: s.env("bob") });
      assertEquals(got0.code, 0, got0.stderr);
      // (a DM request is reported once the fetched page is in, with its count)
      assertEquals(got0.stdout.trim().split("\n"), [
        "alice invites you to #crew",
        "request from @alice: 2 messages",
      ]);
      // accepting shows both lines; his answer arrives by push, or at the latest on /sync
      const got = await runQpq(["accept", "alice", ...s.args("bob")], { env: s.env("bob") });
      assertEquals(got.code, 0, got.stderr);
      assertEquals(got.stdout.trim().split("\n"), [
        "* joined @alice (invited by alice)",
        "[alice] hello bob, this is the repl",
        "[alice] /shrug: a line that starts with a slash",
        "* joined #crew (invited by alice)",
        "[#crew] alice: hello crew",
      ]);
      const reply = await runQpq(
        ["send", "--to", "alice", "hi alice, bob here", ...s.args("bob")],
        {
          env: s.env("bob"),
        },
      );
      assertEquals(reply.code, 0, reply.stderr);
      await send("/sync");
      assertEquals(await out.until((l) => l.startsWith("[bob]")), ["[bob] hi alice, bob here"]);
      assertEquals(untimed(await ask("/history", (l) => untimedLine(l).startsWith("[bob]"))), [
        "[alice] hello bob, this is the repl",
        "[alice] /shrug: a line that starts with a slash",
        "[bob] hi alice, bob here",
      ]);

      await send("/quit");
      assertEquals(await out.rest(), []);
      assertEquals((await child.status).code, 0);
      assertEquals(await stderr, "");
    } finally {
      await w.close().catch(() => {});
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await out.rest().catch(() => []);
      await stderr;
    }
  } finally {
    await teardown(s);
  }
});

Deno.test("qpq repl ends at end of input and starts with an existing state", async () => {
  const s = await setup();
  try {
    // first run registers; the second opens the same state and logs in by itself
    for (const expect of [["* registered carol on ", "qpq repl: carol"], ["qpq repl: carol"]]) {
      const r = await runQpq(["repl", ...s.args("carol")], {
        env: s.env("carol"),
        stdin: "/whoami\n",
      });
      assertEquals(r.code, 0, r.stderr);
      const lines = r.stdout.split("\n");
      for (const [i, e] of expect.entries()) assert(lines[i]!.startsWith(e), r.stdout);
      assertStringIncludes(r.stdout, `carol on ${s.ts.addr} (online)`);
    }
  } finally {
    await teardown(s);
  }
});

/** A `qpq server` child process on `listen` (port 0: any) with `dataDir`. */
async function serverProcess(dataDir: string, listen: string) {
  const child = spawnQpq(["server", "--listen", listen, "--data-dir", dataDir]);
  const stderr = new Response(child.stderr).text();
  const out = new Lines(child.stdout);
  const [line] = (await out.until((l) => l.includes("listening on"))).slice(-1);
  const addr = /listening on (\S+)/.exec(line ?? "")?.[1];
  assert(addr, line);
  let stopped: Promise<void> | undefined;
  return {
    addr,
    stop(): Promise<void> {
      stopped ??= (async () => {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        await child.status;
        await out.rest();
        await stderr;
      })();
      return stopped;
    },
  };
}

Deno.test("qpq repl keeps receiving by push after the server restarts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-repl-" });
  const dataDir = `${dir}/server`;
  let server = await serverProcess(dataDir, "127.0.0.1:0");
  const listen = server.addr;
  const args = (user: string) => [
    "--username",
    user,
    "--server",
    listen,
    "--ca-cert",
    `${dataDir}/server-cert.pem`,
    "--state",
    `${dir}/${user}.bin`,
  ];
  const env = (user: string) => ({ QPQ_PASSWORD: `pw of ${user}` });
  let child: Deno.ChildProcess | undefined;
  try {
    for (const u of ["alice", "bob"]) {
      const r = await runQpq(["register-user", ...args(u)], { env: env(u) });
      assertEquals(r.code, 0, r.stderr);
    }
    const dm = await runQpq(["dm", "bob", ...args("alice")], { env: env("alice") });
    assertEquals(dm.code, 0, dm.stderr);
    const ok = await runQpq(["accept", "@alice", ...args("bob")], { env: env("bob") });
    assertEquals(ok.stdout, "* joined @alice (invited by alice)\n", ok.stderr);

    child = spawnQpq(["repl", ...args("bob")], { env: env("bob"), stdin: true });
    const out = new Lines(child.stdout);
    await out.until((l) => l.startsWith("qpq repl: bob"));
    const say = async (text: string) => {
      const r = await runQpq(["send", "--to", "bob", text, ...args("alice")], {
        env: env("alice"),
      });
      assertEquals(r.code, 0, r.stderr);
    };
    await say("before the restart");
    await out.until((l) => l === "[alice] before the restart");

    await server.stop();
    await out.until((l) => l.includes("Connection to the server lost"));
    server = await serverProcess(dataDir, listen);
    await say("after the restart");
    // no /sync typed: the REPL subscribed again by itself
    const seen = await out.until((l) => l === "[alice] after the restart", 40_000);
    assertEquals(seen.filter((l) => l.startsWith("[")), ["[alice] after the restart"]);

    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("/quit\n"));
    await w.close();
    await out.rest();
    assertEquals((await child.status).code, 0);
    await child.stderr.cancel();
  } finally {
    if (child) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
    }
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

async function hasTmux(): Promise<boolean> {
  try {
    const r = await new Deno.Command("tmux", { args: ["-V"], stdout: "null", stderr: "null" })
      .output();
    return r.success;
  } catch {
    return false;
  }
}

const TMUX = await hasTmux();

Deno.test({
  name: "qpq repl in a terminal: an incoming message does not garble a half-typed line",
  ignore: !TMUX,
  async fn() {
    const s = await setup();
    const sock = `qpq-test-${crypto.randomUUID().slice(0, 8)}`;
    const tmux = async (...args: string[]) => {
      const r = await new Deno.Command("tmux", { args: ["-L", sock, ...args] }).output();
      assert(r.success, `tmux ${args[0]}: ${new TextDecoder().decode(r.stderr)}`);
      return new TextDecoder().decode(r.stdout);
    };
    const screen = () => tmux("capture-pane", "-p", "-t", "qpq");
    const waitScreen = async (pred: (text: string) => boolean, what: string) => {
      const deadline = Date.now() + 20_000;
      let text = "";
      while (Date.now() < deadline) {
        text = await screen();
        if (pred(text)) return text;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`${what} not on screen:\n${text}`);
    };
    try {
      for (const u of ["alice", "bob"]) {
        const r = await runQpq(["register-user", ...s.args(u)], { env: s.env(u) });
        assertEquals(r.code, 0, r.stderr);
      }
      const dm = await runQpq(["dm", "bob", ...s.args("alice")], { env: s.env("alice") });
      assertEquals(dm.code, 0, dm.stderr);
      const ok = await runQpq(["accept", "@alice", ...s.args("bob")], { env: s.env("bob") });
      assertEquals(ok.code, 0, ok.stderr);
      const deno = Deno.execPath();
      const main = new URL("../main.ts", import.meta.url).pathname;
      const config = new URL("../deno.json", import.meta.url).pathname;
      const cmd = [
        deno,
        "run",
        "--config",
        config,
        ...await qpqRunFlags(),
        main,
        "repl",
        ...s.args("bob"),
      ]
        .map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
      await tmux(
        "new-session",
        "-d",
        "-s",
        "qpq",
        "-x",
        "120",
        "-y",
        "30",
        "-e",
        `QPQ_PASSWORD=${s.env("bob").QPQ_PASSWORD}`,
        "-e",
        "NO_COLOR=1",
        cmd,
      );
      await waitScreen((t) => t.includes("qpq repl: bob"), "banner");
      await tmux("send-keys", "-t", "qpq", "/switch @alice", "Enter");
      await waitScreen((t) => t.split("\n").some((l) => l.trimEnd() === "[@alice] >"), "prompt");
      await tmux("send-keys", "-t", "qpq", "-l", "half typed wor");

      const sent = await runQpq(
        ["send", "--to", "bob", "ping while you type", ...s.args("alice")],
        {
          env: s.env("alice"),
        },
      );
      assertEquals(sent.code, 0, sent.stderr);
      const text = await waitScreen((t) => t.includes("[alice] ping while you type"), "incoming");
      const lines = text.split("\n").map((l) => l.trimEnd()).filter((l) => l.length > 0);
      const at = lines.indexOf("[alice] ping while you type");
      assert(at >= 0, text);
      assertEquals(lines[at + 1], "[@alice] > half typed wor", `prompt line intact:\n${text}`);
      assertEquals(lines.filter((l) => l.includes("half typed")).length, 1, text);

      // finishing the line sends all of it
      await tmux("send-keys", "-t", "qpq", "-l", "d");
      await tmux("send-keys", "-t", "qpq", "Enter");
      await tmux("send-keys", "-t", "qpq", "/quit", "Enter");
      const got = await runQpq(["recv", ...s.args("alice")], { env: s.env("alice") });
      assertEquals(got.stdout, "[bob] half typed word\n", got.stderr);
    } finally {
      await new Deno.Command("tmux", { args: ["-L", sock, "kill-server"], stderr: "null" })
        .output();
      await teardown(s);
    }
  },
});

Deno.test({
  name: "qpq repl in a terminal: typing a line tells the peer (alice is typing…), once per burst",
  ignore: !TMUX,
  async fn() {
    const s = await setup();
    const sock = `qpq-test-${crypto.randomUUID().slice(0, 8)}`;
    const tmux = async (...args: string[]) => {
      const r = await new Deno.Command("tmux", { args: ["-L", sock, ...args] }).output();
      assert(r.success, `tmux ${args[0]}: ${new TextDecoder().decode(r.stderr)}`);
      return new TextDecoder().decode(r.stdout);
    };
    const screen = () => tmux("capture-pane", "-p", "-t", "qpq");
    const waitScreen = async (pred: (text: string) => boolean, what: string) => {
      const deadline = Date.now() + 20_000;
      let text = "";
      while (Date.now() < deadline) {
        text = await screen();
        if (pred(text)) return text;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`${what} not on screen:\n${text}`);
    };
    let bob: Deno.ChildProcess | undefined;
    try {
      for (const u of ["alice", "bob"]) {
        const r = await runQpq(["register-user", ...s.args(u)], { env: s.env(u) });
        assertEquals(r.code, 0, r.stderr);
      }
      const dm = await runQpq(["dm", "bob", ...s.args("alice")], { env: s.env("alice") });
      assertEquals(dm.code, 0, dm.stderr);
      const ok = await runQpq(["accept", "@alice", ...s.args("bob")], { env: s.env("bob") });
      assertEquals(ok.code, 0, ok.stderr);
      // bob: piped (no terminal), so the indicator is one line
      bob = spawnQpq(["repl", ...s.args("bob")], { env: s.env("bob"), stdin: true });
      const out = new Lines(bob.stdout);
      await out.until((l) => l.startsWith("qpq repl: "));
      const w = bob.stdin.getWriter();
      await w.write(new TextEncoder().encode("/switch @alice\n"));
      await out.until((l) => l === "* now talking in @alice");
      const deno = Deno.execPath();
      const main = new URL("../main.ts", import.meta.url).pathname;
      const config = new URL("../deno.json", import.meta.url).pathname;
      const cmd = [deno, "run", "--config", config, ...await qpqRunFlags(), main, "repl"]
        .concat(s.args("alice"))
        .map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
      await tmux(
        "new-session",
        "-d",
        "-s",
        "qpq",
        "-x",
        "120",
        "-y",
        "30",
        "-e",
        `QPQ_PASSWORD=${s.env("alice").QPQ_PASSWORD}`,
        "-e",
        "NO_COLOR=1",
        cmd,
      );
      await waitScreen((t) => t.includes("qpq repl: alice"), "banner");
      await tmux("send-keys", "-t", "qpq", "/switch @bob", "Enter");
      await waitScreen((t) => t.split("\n").some((l) => l.trimEnd() === "[@bob] >"), "prompt");
      // a command being typed says nothing; a message does
      await tmux("send-keys", "-t", "qpq", "-l", "/whoa");
      await new Promise((r) => setTimeout(r, 500));
      await tmux("send-keys", "-t", "qpq", "C-u");
      await tmux("send-keys", "-t", "qpq", "-l", "hel");
      await out.until((l) => l === "* alice is typing…");
      await tmux("send-keys", "-t", "qpq", "-l", "lo");
      await tmux("send-keys", "-t", "qpq", "Enter");
      const got = await out.until((l) => l.includes("hello"));
      assertEquals(got.map(untimedLine), ["[alice] hello"], "one typing line, then the message");
      await tmux("send-keys", "-t", "qpq", "/quit", "Enter");
      await w.write(new TextEncoder().encode("/history\n/quit\n"));
      await w.close();
      const rest = await out.rest();
      assert(rest.some((l) => l.includes("hello")), rest.join("\n"));
      assert(!rest.some((l) => l.includes("typing")), `typing is never stored:\n${rest}`);
      assertEquals((await bob.status).code, 0);
      bob = undefined;
    } finally {
      try {
        bob?.kill();
        await bob?.status;
      } catch { /* gone */ }
      await new Deno.Command("tmux", { args: ["-L", sock, "kill-server"], stderr: "null" })
        .output();
      await teardown(s);
    }
  },
});

Deno.test("qpq repl: a stranger's DM is one request line; /requests, /accept, /block, /unblock", async () => {
  const s = await setup();
  try {
    for (const u of ["bob", "mallory", "eve"]) {
      const r = await runQpq(["register-user", ...s.args(u)], { env: s.env(u) });
      assertEquals(r.code, 0, r.stderr);
    }
    const child = spawnQpq(["repl", ...s.args("bob")], { env: s.env("bob"), stdin: true });
    const stderr = new Response(child.stderr).text();
    const out = new Lines(child.stdout);
    const w = child.stdin.getWriter();
    const send = (line: string) => w.write(new TextEncoder().encode(line + "\n"));
    const ask = async (line: string, answer: (l: string) => boolean) => {
      await send(line);
      return await out.until(answer);
    };
    const from = async (user: string, text: string) => {
      const r = await runQpq(["send", "--to", "bob", text, ...s.args(user)], {
        env: s.env(user),
      });
      assertEquals(r.code, 0, r.stderr);
    };
    try {
      await out.until((l) => l.startsWith("qpq repl: bob"));
      await from("mallory", "one");
      // pushed: one line for the request, nothing of its content
      assertEquals(await out.until((l) => l.startsWith("request")), [
        "request from @mallory: 1 message",
      ]);
      await from("mallory", "two\u001b[2J");
      // pushed: the request again with its new count, still nothing of its content
      assertEquals(await out.until((l) => l.startsWith("request")), [
        "request from @mallory: 2 messages",
      ]);
      assertEquals(await ask("/requests", (l) => l.startsWith("request")), [
        "request from @mallory: 2 messages",
      ]);
      assertEquals(await ask("/accept --help", (l) => l.startsWith("/accept")), [
        "/accept @user|#group  accept a request and show its messages",
      ]);
      assertEquals(await ask("/accept nobody", (l) => l.startsWith("error:")), [
        "error: No request from nobody: see qpq requests",
      ]);
      assertEquals(await ask("/accept @mallory", (l) => l.startsWith("[mallory] two")), [
        "* joined @mallory (invited by mallory)",
        "[mallory] one",
        "[mallory] two^[[2J",
      ]);
      assertEquals(await ask("/requests", (l) => l.startsWith("*")), ["* no requests"]);
      // eve is blocked before she writes: nothing of hers ever arrives
      assertEquals(await ask("/block @eve", (l) => l.startsWith("*")), ["* blocked @eve"]);
      await from("eve", "let me in");
      await from("mallory", "three");
      assertEquals(await out.until((l) => l.startsWith("[mallory]")), ["[mallory] three"]);
      assertEquals(await ask("/block", (l) => l.startsWith("blocked")), ["blocked @eve"]);
      assertEquals(await ask("/requests", (l) => l.startsWith("*")), ["* no requests"]);
      // what the block dropped is counted, and the DM she opened meanwhile asks to be repaired
      assertEquals(await ask("/unblock eve", (l) => l.startsWith("*")), [
        "* unblocked @eve (1 message sent while blocked was dropped; asked to be added again to 1 conversation)",
      ]);
      assertEquals(await ask("/block", (l) => l.startsWith("*")), ["* no blocked users"]);
      await send("/quit");
      assertEquals(await out.rest(), []);
      assertEquals((await child.status).code, 0);
      assertEquals(await stderr, "");
    } finally {
      await w.close().catch(() => {});
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await out.rest().catch(() => []);
      await stderr;
    }
  } finally {
    await teardown(s);
  }
});

Deno.test("qpq repl: /receipts N shows who got and read our message; /receipts on|off", async () => {
  const s = await setup();
  try {
    for (const u of ["alice", "bob"]) {
      const r = await runQpq(["register-user", ...s.args(u)], { env: s.env(u) });
      assertEquals(r.code, 0, r.stderr);
    }
    const dm = await runQpq(["dm", "bob", ...s.args("alice")], { env: s.env("alice") });
    assertEquals(dm.code, 0, dm.stderr);
    const ok = await runQpq(["accept", "@alice", ...s.args("bob")], { env: s.env("bob") });
    assertEquals(ok.code, 0, ok.stderr);
    const child = spawnQpq(["repl", ...s.args("bob")], { env: s.env("bob"), stdin: true });
    const stderr = new Response(child.stderr).text();
    const out = new Lines(child.stdout);
    const w = child.stdin.getWriter();
    const send = (line: string) => w.write(new TextEncoder().encode(line + "\n"));
    const ask = async (line: string, answer: (l: string) => boolean) => {
      await send(line);
      return await out.until(answer);
    };
    try {
      await out.until((l) => l.startsWith("qpq repl: bob"));
      const help = await ask("/help", (l) => l.startsWith("anything else"));
      assert(help.some((l) => l.startsWith("/receipts <N>|on|off")), help.join("\n"));
      await ask("/switch @alice", (l) => l.startsWith("* now talking"));
      await send("hello alice");
      assertEquals(await ask("/receipts 1", (l) => l.startsWith("  alice")), [
        "Receipts (sent):",
        "  alice: not yet",
      ]);
      // alice's device gets it (delivered) and shows it (read): her receipts come back
      const recv = await runQpq(["recv", ...s.args("alice")], { env: s.env("alice") });
      assertEquals(recv.code, 0, recv.stderr);
      await send("/sync");
      const got = await ask("/receipts 1", (l) => l.startsWith("  alice"));
      assertEquals(got[0], "Receipts (read):");
      assert(got[1]!.startsWith("  alice: read "), got.join("\n"));
      assertEquals(await ask("/receipts off", (l) => l.startsWith("*")), ["* read receipts off"]);
      assertEquals(await ask("/receipts on", (l) => l.startsWith("*")), ["* read receipts on"]);
      assertEquals(await ask("/receipts", (l) => l.startsWith("error:")), [
        "error: Usage: /receipts <N>|on|off",
      ]);
      assertEquals(await ask("/receipts 7", (l) => l.startsWith("error:")), [
        "error: No message 7 in @alice: see qpq history",
      ]);
      await send("/quit");
      assertEquals((await child.status).code, 0);
      assertEquals(await stderr, "");
    } finally {
      await w.close().catch(() => {});
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await out.rest().catch(() => []);
      await stderr;
    }
  } finally {
    await teardown(s);
  }
});

Deno.test("qpq repl: /rename renames the current group (prompt and list follow); bad names refused", async () => {
  const s = await setup();
  try {
    const child = spawnQpq(["repl", ...s.args("alice")], { env: s.env("alice"), stdin: true });
    const stderr = new Response(child.stderr).text();
    const out = new Lines(child.stdout);
    const w = child.stdin.getWriter();
    const send = (line: string) => w.write(new TextEncoder().encode(line + "\n"));
    const ask = async (line: string, answer: (l: string) => boolean) => {
      await send(line);
      return await out.until(answer);
    };
    try {
      await out.until((l) => l.startsWith("qpq repl: alice"));
      assertEquals(await ask("/rename crew", (l) => l.startsWith("error:")), [
        "error: No active conversation: /dm <user>, /create-group <name> or /switch",
      ]);
      await ask("/create-group team", (l) => l.startsWith("* created"));
      assertEquals(await ask("/rename crew", (l) => l.startsWith("*")), [
        "* alice renamed #team to #crew",
      ]);
      assertEquals(await ask("/list", (l) => l.includes("#crew")), ["* #crew"]);
      assertEquals(await ask("/rename crew", (l) => l.startsWith("*")), [
        "* #crew already has that name",
      ]);
      const bad = await ask("/rename x\u202ey", (l) => l.startsWith("error:"));
      assertStringIncludes(bad[0]!, "Invalid group name");
      await send("/quit");
      assertEquals((await child.status).code, 0);
      assertEquals(await stderr, "");
    } finally {
      await w.close().catch(() => {});
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await out.rest().catch(() => []);
      await stderr;
    }
  } finally {
    await teardown(s);
  }
});
