/**
 * First use, as a new user meets it (issue 21, part 1): passwords asked again when wrong and
 * twice when new (on a terminal), a new name registered only when the person says so, and
 * `demo-group` reusing its two demo accounts instead of leaving two more on each run.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { qpqRunFlags, runQpq, withCliUsers } from "./_support/cli.ts";

Deno.test("qpq demo-group run twice in one dir reuses its two accounts and their group", async () => {
  await withCliUsers(async (_qpq, { ts, dir }) => {
    const demo = () =>
      runQpq([
        "demo-group",
        "--server",
        ts.addr,
        "--ca-cert",
        `${dir}/ca.pem`,
        "--dir",
        `${dir}/demo`,
      ]);
    const first = await demo();
    assertEquals(first.code, 0, first.stderr);
    const second = await demo();
    assertEquals(second.code, 0, second.stderr);
    const names = (out: string) => [...new Set(out.match(/(alice|bob)-[0-9a-f]{6}/g) ?? [])];
    assertEquals(names(first.stdout).length, 2, first.stdout);
    assertEquals(names(second.stdout), names(first.stdout), second.stdout);
    assert(!second.stdout.includes("registered"), second.stdout);
    assert(second.stdout.includes("Hi Alice, Bob here"), second.stdout);
  });
});

/** True when tmux runs here (the prompts need a real terminal). */
async function hasTmux(): Promise<boolean> {
  try {
    return (await new Deno.Command("tmux", { args: ["-V"], stdout: "null" }).output()).success;
  } catch {
    return false;
  }
}

const TMUX = await hasTmux();

/** `qpq ...args` in a real terminal (a detached tmux session): keys in, screen out. */
class Terminal {
  #sock = `qpq-first-${crypto.randomUUID().slice(0, 8)}`;

  async #tmux(...args: string[]): Promise<string> {
    const r = await new Deno.Command("tmux", { args: ["-L", this.#sock, ...args] }).output();
    assert(r.success, `tmux ${args[0]}: ${new TextDecoder().decode(r.stderr)}`);
    return new TextDecoder().decode(r.stdout);
  }

  /** Start `qpq ...args`; its exit code is printed as `[exit N]` when it ends. */
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
    await this.#tmux(
      "new-session",
      "-d",
      "-s",
      "qpq",
      "-x",
      "160",
      "-y",
      "40",
      "-c",
      cwd,
      ...vars,
      `${cmd}; echo "[exit $?]"; sleep 600`,
    );
  }

  /** Type `text` and press Enter. */
  async line(text: string): Promise<void> {
    if (text) await this.#tmux("send-keys", "-t", "qpq", "-l", text);
    await this.#tmux("send-keys", "-t", "qpq", "Enter");
  }

  async lines(): Promise<string[]> {
    const text = await this.#tmux("capture-pane", "-p", "-t", "qpq");
    return text.split("\n").map((l) => l.trimEnd()).filter((l) => l.length > 0);
  }

  /** Wait until a line on screen starts with `start`, `after` lines seen before it. */
  async see(start: string, after = 0, ms = 30_000): Promise<string[]> {
    const deadline = Date.now() + ms;
    let lines: string[] = [];
    while (Date.now() < deadline) {
      lines = await this.lines();
      if (lines.filter((l) => l.startsWith(start)).length > after) return lines;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${JSON.stringify(start)} not on screen:\n${lines.join("\n")}`);
  }

  async close(): Promise<void> {
    await new Deno.Command("tmux", { args: ["-L", this.#sock, "kill-server"], stderr: "null" })
      .output();
  }
}

/** `env` without the password: it is typed at the terminal. */
function typed(env: Record<string, string>): Record<string, string> {
  const { QPQ_PASSWORD: _, ...rest } = env;
  return rest;
}

Deno.test({
  name: "a wrong password typed at the terminal is asked again (3 tries), not the end",
  ignore: !TMUX,
  async fn() {
    await withCliUsers(async (qpq, { dir, env }) => {
      assertEquals((await qpq("alice", "register-user")).code, 0);
      const t = new Terminal();
      try {
        await t.start(["whoami", "--username", "alice"], dir, typed(env("alice")));
        await t.see("Password for alice:");
        await t.line("not alice's password");
        await t.see("Wrong password (or a damaged state file): try again");
        await t.see("Password for alice:", 1);
        await t.line("pw-alice");
        const lines = await t.see("[exit 0]");
        assert(lines.some((l) => l.startsWith("alice on ")), lines.join("\n"));
      } finally {
        await t.close();
      }
      const t3 = new Terminal();
      try {
        await t3.start(["whoami", "--username", "alice"], dir, typed(env("alice")));
        for (let i = 0; i < 3; i++) {
          await t3.see("Password for alice:", i);
          await t3.line(`wrong ${i}`);
        }
        const lines = await t3.see("[exit 1]");
        assert(
          lines.includes("qpq: Cannot open state: wrong password or damaged file"),
          lines.join("\n"),
        );
      } finally {
        await t3.close();
      }
    });
  },
});

Deno.test({
  name: "a new state's password is typed twice at the terminal; two that differ are asked again",
  ignore: !TMUX,
  async fn() {
    await withCliUsers(async (qpq, { dir, env }) => {
      const t = new Terminal();
      try {
        await t.start(["register-user", "--username", "carol"], dir, typed(env("carol")));
        await t.see("Password for carol (new):");
        await t.line("first try");
        await t.see("Repeat the password:");
        await t.line("first tyr");
        await t.see("The passwords do not match: try again");
        await t.see("Password for carol (new):", 1);
        await t.line("pw-carol");
        await t.see("Repeat the password:", 1);
        await t.line("pw-carol");
        await t.see("[exit 0]");
        assert((await t.lines()).includes("Registered carol on " + env("carol").QPQ_SERVER));
      } finally {
        await t.close();
      }
      // the password is the one typed twice
      assertEquals((await qpq("carol", "whoami")).code, 0);
    });
  },
});

Deno.test({
  name: "qpq repl at a terminal asks before registering a name the server does not know",
  ignore: !TMUX,
  async fn() {
    await withCliUsers(async (qpq, { dir, env }) => {
      const t = new Terminal();
      try {
        await t.start(["repl", "--username", "dave"], dir, env("dave"));
        await t.see(`No account dave on ${env("dave").QPQ_SERVER}. Register it? [y/N]`);
        await t.line("n");
        const lines = await t.see("[exit 2]");
        assert(
          lines.some((l) => l.startsWith("qpq: Not registered: no account dave on ")),
          lines.join("\n"),
        );
      } finally {
        await t.close();
      }
      // nothing left behind: the name is still free and no state blocks a later try
      assert(!(await Deno.stat(`${dir}/qpq-dave.bin`).then(() => true, () => false)));
      const y = new Terminal();
      try {
        await y.start(["repl", "--username", "dave"], dir, env("dave"));
        await y.see("No account dave on ");
        await y.line("y");
        await y.see("* registered dave on ");
        await y.see("qpq repl: dave on ");
        await y.line("/quit");
        await y.see("[exit 0]");
      } finally {
        await y.close();
      }
      assertStringIncludes((await qpq("dave", "whoami")).stdout, "dave on ");
    });
  },
});

Deno.test("every client command's --help names QPQ_USERNAME beside --username", async () => {
  for (const cmd of ["list", "send", "repl"]) {
    const r = await runQpq([cmd, "--help"]);
    assertEquals(r.code, 0, r.stderr);
    assertStringIncludes(r.stdout, "--username NAME      your user name (env QPQ_USERNAME)");
  }
});
