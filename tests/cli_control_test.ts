/**
 * Commands beside an open REPL (issue 21 part 1): a REPL holds its state and serves the
 * user's other `qpq` commands through its local control socket (src/cli/_control.ts). A
 * script's `send` and `list` work while the REPL runs; a second REPL gets one line, exit 1;
 * a wrong password (or no answer to the challenge) is refused and counted; a stale socket
 * is replaced; a directory others may use is refused.
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { type CliResult, readUntil, runQpq, spawnQpq, withCliUsers } from "./_support/cli.ts";

function ok(r: CliResult): string {
  assertEquals(r.code, 0, r.stderr);
  return r.stdout;
}

/** A REPL child with its stdin open and its stdout read until a line matches. */
async function startRepl(dir: string, env: Record<string, string>, user: string) {
  const child = spawnQpq(["repl", "--username", user], { cwd: dir, env, stdin: true });
  const w = child.stdin.getWriter();
  const stderr = new Response(child.stderr).text();
  const { lines, reader } = await readUntil(child.stdout, (l) => l.startsWith("qpq repl:"));
  let buf = "";
  const more = async (pred: (l: string) => boolean, ms = 20_000) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const i = buf.indexOf("\n");
      if (i >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(l);
        if (pred(l)) return l;
        continue;
      }
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
    }
    throw new Error(`line not seen; got:\n${lines.join("\n")}`);
  };
  return {
    child,
    lines,
    more,
    type: (s: string) => w.write(new TextEncoder().encode(s)),
    quit: async () => {
      await w.write(new TextEncoder().encode("/quit\n"));
      await w.close();
      while (!(await reader.read()).done) { /* drain */ }
      const st = await child.status;
      return { code: st.code, stderr: await stderr };
    },
    kill: async () => {
      child.kill("SIGKILL");
      await w.close().catch(() => {});
      while (!(await reader.read().catch(() => ({ done: true }))).done) { /* drain */ }
      await child.status;
      await stderr;
    },
  };
}

const ctlDir = (dir: string, user: string) => `${dir}/.qpq-${user}.bin.ctl`;

Deno.test("qpq send and list work beside an open REPL, through it; a second REPL gets one line", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    ok(await qpq("alice", "register-user"));
    ok(await qpq("bob", "register-user"));
    const repl = await startRepl(dir, env("alice"), "alice");
    try {
      assertEquals(Deno.statSync(ctlDir(dir, "alice")).mode! & 0o777, 0o700);
      assertEquals(Deno.lstatSync(`${ctlDir(dir, "alice")}/s`).mode! & 0o777, 0o600);

      const sent = await qpq("alice", "send", "--to", "bob", "from a script");
      assertEquals(sent.code, 0, sent.stderr);
      assertEquals(sent.stdout, "sent to @bob\n");
      assertEquals(ok(await qpq("alice", "list")), "@bob\tdm\n");
      assertEquals(JSON.parse(ok(await qpq("alice", "list", "--json"))).type, "list");
      // an error of the forwarded command: its one line, its exit code (2: a usage mistake)
      const bad = await qpq("alice", "send", "--to", "bob");
      assert(bad.code === 2 || bad.code === 1, `${bad.code} ${bad.stderr}`);
      // a message on standard input goes through the REPL too (read here, passed on)
      const piped = await runQpq(["send", "--to", "bob", "--username", "alice"], {
        cwd: dir,
        env: env("alice"),
        stdin: "piped -- line one\n",
      });
      assertEquals(piped.code, 0, piped.stderr);
      assertEquals(piped.stdout, "sent to @bob\n");
      const binary = await runQpq(["send", "--to", "bob", "--username", "alice"], {
        cwd: dir,
        env: env("alice"),
        stdin: "a\0b",
      });
      assertEquals(binary.code, 2, binary.stderr);
      assert(binary.stderr.includes("binary"), binary.stderr);
      const long = await runQpq(["send", "--to", "bob", "--username", "alice"], {
        cwd: dir,
        env: env("alice"),
        stdin: "x".repeat(20_000),
      });
      assertEquals(long.code, 2, long.stderr);
      assert(long.stderr.includes("quit it and run the command again"), long.stderr);
      // the commands added with receipts and roles go through it as well
      assertEquals(ok(await qpq("alice", "receipts", "off")), "Read receipts off\n");
      assertEquals(ok(await qpq("alice", "receipts", "on")), "Read receipts on\n");

      // a first DM is a request: bob accepts it (and so sees it)
      const accepted = ok(await qpq("bob", "accept", "alice"));
      assert(accepted.includes("from a script"), accepted);
      assert(accepted.includes("piped -- line one"), accepted);
      // the REPL still shows what arrives, and runs its own commands
      ok(await qpq("bob", "send", "--to", "alice", "to the repl"));
      await repl.type("/sync\n");
      await repl.more((l) => l.includes("[bob] to the repl"));

      const second = await qpq("alice", "repl");
      assertEquals(second.code, 1, second.stderr);
      assertEquals(second.stderr.trim().split("\n").length, 1, second.stderr);
      assert(second.stderr.includes("cannot run beside"), second.stderr);

      const q = await repl.quit();
      assertEquals(q.code, 0, q.stderr);
    } catch (e) {
      await repl.kill();
      throw e;
    }
    // gone with the REPL
    assert(!exists(ctlDir(dir, "alice")), "the socket directory is removed on exit");
    assert(ok(await qpq("alice", "list")).startsWith("@bob\tdm"));
  });
});

function exists(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

const RAW = new URL("./_support/control_raw.ts", import.meta.url).pathname;

/** Speak the control protocol by hand, from another process (see control_raw.ts). */
async function rawClient(path: string, hello: unknown): Promise<unknown[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "--allow-write", RAW, path, JSON.stringify(hello)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("the control socket refuses a wrong password and a process that cannot answer its challenge", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    ok(await qpq("alice", "register-user"));
    ok(await qpq("bob", "register-user"));
    const repl = await startRepl(dir, env("alice"), "alice");
    try {
      const wrong = await qpq("alice", "list", "--password", "not-alices");
      assertEquals(wrong.code, 1, wrong.stderr);
      assertEquals(wrong.stderr.trim().split("\n").length, 1, wrong.stderr);
      assert(/wrong password/i.test(wrong.stderr), wrong.stderr);

      // same OS user, no password: a made-up answer to the challenge does not run anything
      const socket = `${ctlDir(dir, "alice")}/s`;
      const forged = () =>
        rawClient(socket, {
          v: 1,
          nonce: "00".repeat(32),
          args: ["send", "--to", "bob", "forged"],
          mac: "11".repeat(32),
        });
      const frames = await forged();
      assertEquals(frames.length, 2, JSON.stringify(frames)); // challenge, refusal: no proof
      assert(/wrong password/i.test(String((frames[1] as { refused?: string }).refused)));
      // malformed and oversized requests: refused, the REPL unharmed
      const junk = await rawClient(socket, { v: 1, args: "x" });
      assert(JSON.stringify(junk).includes("Malformed"), JSON.stringify(junk));
      const huge = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-net", "--allow-read", "--allow-write", RAW, socket, "-"],
        stdout: "null",
        stderr: "null",
      }).output();
      assertEquals(huge.code, 0);
      // counted: after five wrong answers every connection is refused for a while
      for (let i = 0; i < 4; i++) await forged();
      const locked = await rawClient(socket, {});
      assert(JSON.stringify(locked).includes("Too many wrong passwords"), JSON.stringify(locked));
      const refused = await qpq("alice", "list");
      assertEquals(refused.code, 1, refused.stderr);
      assert(refused.stderr.includes("Too many wrong passwords"), refused.stderr);

      // nothing forged reached bob
      const r = await qpq("bob", "requests");
      assert(!r.stdout.includes("alice"), r.stdout);
      // the REPL still works
      await repl.type("/list\n");
      const q = await repl.quit();
      assertEquals(q.code, 0, q.stderr);
    } catch (e) {
      await repl.kill();
      throw e;
    }
  });
});

Deno.test("a stale control socket is replaced; a socket directory others may use is refused", async () => {
  await withCliUsers(async (qpq, { dir, env }) => {
    ok(await qpq("alice", "register-user"));
    ok(await qpq("bob", "register-user"));
    // a crashed REPL's leftovers: the directory and a dead socket file
    const first = await startRepl(dir, env("alice"), "alice");
    await first.kill();
    assert(exists(`${ctlDir(dir, "alice")}/s`), "SIGKILL leaves the socket behind");
    // no process serves it and the lock is free: the command runs directly
    assertEquals(
      ok(await qpq("alice", "list")),
      "No conversations yet: try qpq dm <user> or qpq create-group <name>\n",
    );

    const repl = await startRepl(dir, env("alice"), "alice");
    try {
      ok(await qpq("alice", "send", "--to", "bob", "after a crash"));
      const got = ok(await qpq("bob", "accept", "alice"));
      assert(got.includes("[alice] after a crash"), got);

      // a directory others may use (or another user's): not trusted, one line, exit 1
      Deno.chmodSync(ctlDir(dir, "alice"), 0o755);
      const open = await qpq("alice", "list");
      assertEquals(open.code, 1, open.stderr);
      assertEquals(open.stderr.trim().split("\n").length, 1, open.stderr);
      assert(open.stderr.includes("not private"), open.stderr);
      Deno.chmodSync(ctlDir(dir, "alice"), 0o700);
      ok(await qpq("alice", "list"));
      const q = await repl.quit();
      assertEquals(q.code, 0, q.stderr);
    } catch (e) {
      await repl.kill();
      throw e;
    }
  });
});
