/**
 * Small things that confused a new user (issue 21, part 1), each through the real entry
 * point: config errors that say where and what was meant, and the rest below.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import {
  type CliResult,
  type QpqAs,
  qpqRunFlags,
  runQpq,
  spawnQpq,
  startServerProcess,
  withCliUsers,
} from "./_support/cli.ts";

Deno.test("qpq server: a config error names its line; an unknown key gets a did-you-mean", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-small-" });
  try {
    await Deno.writeTextFile(
      `${dir}/typo.toml`,
      `listen = "127.0.0.1:0"\n\nmax_mesage_bytes = 9\n`,
    );
    const r = await runQpq(["server", "--config", `${dir}/typo.toml`, "--data-dir", `${dir}/d`]);
    assertEquals(r.code, 2, r.stderr);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assertStringIncludes(r.stderr, `Unknown key "max_mesage_bytes" in ${dir}/typo.toml line 3`);
    assertStringIncludes(r.stderr, `did you mean "max_message_bytes"?`);
    await Deno.writeTextFile(`${dir}/type.toml`, `# a comment\nfsync = "yes"\n`);
    const t = await runQpq(["server", "--config", `${dir}/type.toml`, "--data-dir", `${dir}/d`]);
    assertEquals(t.code, 2, t.stderr);
    assertStringIncludes(t.stderr, `Key "fsync" in ${dir}/type.toml line 2 must be true or false`);
    await Deno.writeTextFile(`${dir}/bad.toml`, `listen = "x"\nfsync = = true\n`);
    const b = await runQpq(["server", "--config", `${dir}/bad.toml`, "--data-dir", `${dir}/d`]);
    assertEquals(b.code, 2, b.stderr);
    assertEquals(b.stderr.trim().split("\n").length, 1, b.stderr);
    assertStringIncludes(b.stderr, `Cannot parse config ${dir}/bad.toml line 2: `);
    // nothing written for a configuration that was refused
    assert(!(await Deno.stat(`${dir}/d`).then(() => true, () => false)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qpq ping without --ca-cert says what to pass, and where the server keeps it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-small-" });
  const server = await startServerProcess(`${dir}/data`, "127.0.0.1:0");
  try {
    const r = await runQpq(["ping", "--server", server.addr], { cwd: dir });
    assertEquals(r.code, 1, r.stderr);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assertStringIncludes(r.stderr, "not trusted: pass --ca-cert FILE");
    assertStringIncludes(r.stderr, "server-cert.pem");
    assert(!r.stderr.includes("pinned"), r.stderr);
    const ok = await runQpq([
      "ping",
      "--server",
      server.addr,
      "--ca-cert",
      `${dir}/data/server-cert.pem`,
    ]);
    assertEquals(ok.code, 0, ok.stderr);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** `qpq send --to bob` as alice with raw bytes on standard input. */
async function sendBytes(
  env: Record<string, string>,
  dir: string,
  bytes: Uint8Array,
): Promise<CliResult> {
  const child = spawnQpq(["send", "--to", "bob", "--username", "alice"], {
    cwd: dir,
    env,
    stdin: true,
  });
  const w = child.stdin.getWriter();
  await w.write(bytes);
  await w.close();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("qpq send refuses binary standard input (NUL, not UTF-8) with a hint", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    for (const u of ["alice", "bob"]) assertEquals((await qpq(u, "register-user")).code, 0);
    const nul = await sendBytes(env("alice"), dir, new Uint8Array([0x68, 0x69, 0x00, 0x01]));
    assertEquals(nul.code, 2, nul.stderr);
    assertStringIncludes(nul.stderr, "Standard input is binary (a NUL byte at offset 2)");
    assertStringIncludes(nul.stderr, "base64");
    const latin1 = await sendBytes(env("alice"), dir, new Uint8Array([0x63, 0x61, 0x66, 0xe9]));
    assertEquals(latin1.code, 2, latin1.stderr);
    assertStringIncludes(latin1.stderr, "Standard input is not UTF-8 text");
    // nothing went out; text still does
    const text = await sendBytes(env("alice"), dir, new TextEncoder().encode("café ✓\n"));
    assertEquals(text.code, 0, text.stderr);
    const got = await qpq("bob", "accept", "@alice");
    assertEquals(got.code, 0, got.stderr);
    assertEquals(got.stdout.split("\n").filter((l) => l.startsWith("[alice]")), ["[alice] café ✓"]);
  });
});

/** True when tmux runs here (the terminal tests need a real terminal). */
async function hasTmux(): Promise<boolean> {
  try {
    return (await new Deno.Command("tmux", { args: ["-V"], stdout: "null" }).output()).success;
  } catch {
    return false;
  }
}

const TMUX = await hasTmux();

/** `qpq ...args` in a real terminal (a detached tmux session), keys in, screen out. */
class Terminal {
  #sock = `qpq-small-${crypto.randomUUID().slice(0, 8)}`;

  async #tmux(...args: string[]): Promise<string> {
    const r = await new Deno.Command("tmux", { args: ["-L", this.#sock, ...args] }).output();
    assert(r.success, `tmux ${args[0]}: ${new TextDecoder().decode(r.stderr)}`);
    return new TextDecoder().decode(r.stdout);
  }

  /** Start `qpq ...args` in `cwd` with `env`; when it exits the pane stays to be read. */
  async start(args: string[], cwd: string, env: Record<string, string>): Promise<void> {
    const cmd = [
      Deno.execPath(),
      "run",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      ...await qpqRunFlags(),
      new URL("../main.ts", import.meta.url).pathname,
      ...args,
    ].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
    const vars = Object.entries({ NO_COLOR: "1", ...env }).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
    // the exit code is printed when qpq ends, and the shell waits so the screen can be read
    await this.#tmux(
      "new-session",
      "-d",
      "-s",
      "qpq",
      "-x",
      "120",
      "-y",
      "40",
      "-c",
      cwd,
      ...vars,
      `${cmd}; echo "[exit $?]"; sleep 600`,
    );
  }

  /** Type `text` literally. */
  type(text: string): Promise<string> {
    return this.#tmux("send-keys", "-t", "qpq", "-l", text);
  }

  /** Press keys by tmux name (`Enter`, `C-c`, `C-d`, `Tab`). */
  press(...keys: string[]): Promise<string> {
    return this.#tmux("send-keys", "-t", "qpq", ...keys);
  }

  /** The screen's lines, trailing blanks trimmed. */
  async lines(): Promise<string[]> {
    const text = await this.#tmux("capture-pane", "-p", "-t", "qpq");
    const lines = text.split("\n").map((l) => l.trimEnd());
    while (lines.length > 0 && lines.at(-1) === "") lines.pop();
    return lines;
  }

  /** Wait until `pred` holds for the screen's lines; returns them. */
  async until(pred: (lines: string[]) => boolean, what: string, ms = 30_000): Promise<string[]> {
    const deadline = Date.now() + ms;
    let lines: string[] = [];
    while (Date.now() < deadline) {
      lines = await this.lines();
      if (pred(lines)) return lines;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${what} not on screen:\n${lines.join("\n")}`);
  }

  /** Wait for a line on screen equal to `line`. */
  see(line: string, ms?: number): Promise<string[]> {
    return this.until((ls) => ls.includes(line), JSON.stringify(line), ms);
  }

  /** Wait until the last line is `line` (where the cursor is). */
  last(line: string, ms?: number): Promise<string[]> {
    return this.until((ls) => ls.at(-1) === line, `last line ${JSON.stringify(line)}`, ms);
  }

  async close(): Promise<void> {
    await new Deno.Command("tmux", { args: ["-L", this.#sock, "kill-server"], stderr: "null" })
      .output();
  }
}

/** A test server, a directory and a terminal; every one removed afterwards. */
async function withTerminal(
  fn: (
    t: Terminal,
    qpq: QpqAs,
    ctx: { dir: string; env: (user: string) => Record<string, string> },
  ) => Promise<void>,
): Promise<void> {
  await withCliUsers(async (qpq, { dir, env }) => {
    const t = new Terminal();
    try {
      await fn(t, qpq, { dir, env });
    } finally {
      await t.close();
    }
  });
}

Deno.test({
  name: "qpq repl: after a removal from the active group the prompt no longer names it",
  ignore: !TMUX,
  async fn() {
    await withTerminal(async (t, qpq, { dir, env }) => {
      for (const u of ["alice", "bob"]) assertEquals((await qpq(u, "register-user")).code, 0);
      assertEquals((await qpq("alice", "create-group", "team")).code, 0);
      assertEquals((await qpq("alice", "invite", "team", "bob")).code, 0);
      assertEquals((await qpq("bob", "accept", "#team")).code, 0);
      await t.start(["repl", "--username", "bob"], dir, env("bob"));
      await t.until((ls) => ls.some((l) => l.startsWith("qpq repl: bob")), "banner");
      await t.type("/switch #team");
      await t.press("Enter");
      await t.last("[#team] >");
      const r = await qpq("alice", "remove", "team", "bob");
      assertEquals(r.code, 0, r.stderr);
      await t.see("* alice removed you from #team");
      await t.last(">");
    });
  },
});

Deno.test({
  name: "qpq repl: Ctrl-C clears the line and stays; Ctrl-D on an empty line quits on a new line",
  ignore: !TMUX,
  async fn() {
    await withTerminal(async (t, qpq, { dir, env }) => {
      assertEquals((await qpq("alice", "register-user")).code, 0);
      await t.start(["repl", "--username", "alice"], dir, env("alice"));
      await t.until((ls) => ls.some((l) => l.startsWith("qpq repl: alice")), "banner");
      await t.last(">");
      await t.type("half a line");
      await t.last("> half a line");
      await t.press("C-c");
      await t.last(">");
      // still running, with an empty line: what is typed next is all there is
      await t.type("/whoami");
      await t.press("Enter");
      await t.until((ls) => ls.some((l) => l.startsWith("alice on ")), "whoami");
      await t.last(">");
      await t.press("C-c"); // on an empty line: how to quit
      await t.see("* Ctrl-D or /quit exits");
      await t.type("x");
      await t.press("C-d"); // not empty: deletes (nothing), does not quit
      await t.last("> x");
      await t.press("BSpace");
      await t.last(">");
      await t.press("C-d");
      const lines = await t.see("[exit 0]");
      assertEquals(lines.at(-2), ">", lines.join("\n"));
    });
  },
});

Deno.test({
  name: "qpq repl: Tab completes commands, #groups and @users (members too, not only DM partners)",
  ignore: !TMUX,
  async fn() {
    await withTerminal(async (t, qpq, { dir, env }) => {
      for (const u of ["alice", "bob", "carol"]) {
        assertEquals((await qpq(u, "register-user")).code, 0);
      }
      assertEquals((await qpq("alice", "create-group", "team")).code, 0);
      assertEquals((await qpq("alice", "invite", "team", "bob", "carol")).code, 0);
      await t.start(["repl", "--username", "alice"], dir, env("alice"));
      await t.until((ls) => ls.some((l) => l.startsWith("qpq repl: alice")), "banner");
      await t.type("/sw");
      await t.press("Tab");
      await t.last("> /switch");
      await t.type(" #t");
      await t.press("Tab");
      await t.last("> /switch #team");
      await t.press("Enter");
      await t.last("[#team] >");
      await t.type("/verify ca");
      await t.press("Tab");
      await t.last("[#team] > /verify carol");
      await t.press("C-c");
      await t.type("/dm @b");
      await t.press("Tab");
      await t.last("[#team] > /dm @bob");
      await t.press("C-c");
      await t.type("see you @c");
      await t.press("Tab");
      await t.last("[#team] > see you @carol");
    });
  },
});
