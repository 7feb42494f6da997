/**
 * The client end to end with real processes: one `qpq server` process (killed and
 * restarted on the same port and data dir in the middle) and one `qpq` CLI process per
 * command, for three users in their own state files. Checks the exact text output, that
 * nothing is printed twice, removal, DMs, history, errors, the offline queue, JSON output,
 * members and epoch authenticators, and finally that no plaintext or password is stored
 * in any file of the server or the clients.
 */
import { assert, assertEquals, assertRejects } from "./_support/assert.ts";
import { type CliResult, runQpq, startServerProcess, untimed } from "./_support/cli.ts";
import { connectServer } from "../src/client/connection.ts";
import { openLocalStore } from "../src/client/open_store.ts";
import { QpqError } from "../src/errors.ts";
import { fromHex } from "../src/bytes.ts";

const USERS = ["alice", "bob", "carol"] as const;
type User = typeof USERS[number];
/** Long, distinctive passwords so the at-rest scan cannot match by chance. */
const PASSWORDS: Record<User, string> = {
  alice: "alice-pw-Xq7!correct horse",
  bob: "bob-pw-Zr2?battery staple",
  carol: "carol-pw-Lm5#purple monkey",
};

Deno.test("qpq client end to end: three CLI users, a group, a DM, a server restart and an offline queue", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "qpq-e2e-" });
  const dataDir = `${root}/server`;
  const clientDir = `${root}/clients`;
  await Deno.mkdir(clientDir);
  let server = await startServerProcess(dataDir, "127.0.0.1:0");
  const listen = server.addr; // the restarts reuse this port
  const cert = `${dataDir}/server-cert.pem`;
  const plaintexts: string[] = [];
  const say = (text: string) => (plaintexts.push(text), text);

  const q = (user: User, args: string[], password = PASSWORDS[user]): Promise<CliResult> =>
    runQpq([
      ...args,
      "--username",
      user,
      "--server",
      listen,
      "--ca-cert",
      cert,
      "--state",
      `${clientDir}/${user}.bin`,
    ], { cwd: clientDir, env: { QPQ_PASSWORD: password } });
  /** Run and require exit 0 with nothing on stderr; returns stdout lines. */
  const ok = async (user: User, args: string[]): Promise<string[]> => {
    const r = await q(user, args);
    assertEquals(r.code, 0, `${user} ${args.join(" ")}: ${r.stderr}`);
    assertEquals(r.stderr, "", `${user} ${args.join(" ")} stderr`);
    return r.stdout.split("\n").filter((l) => l.length > 0);
  };
  const recvAll = async (): Promise<[string[], string[], string[]]> => {
    const [a, b, c] = await Promise.all(USERS.map((u) => ok(u, ["recv"])));
    return [a!, b!, c!];
  };
  /** Lines that are messages (`[...] ...`), in order. */
  const messages = (lines: string[]) => lines.filter((l) => l.startsWith("["));

  try {
    await t.step("register-user for alice, bob and carol", async () => {
      const out = await Promise.all(USERS.map((u) => ok(u, ["register-user"])));
      for (const [i, u] of USERS.entries()) {
        assertEquals(out[i]![0], `Registered ${u} on ${listen}`);
        assert(out[i]![1]!.startsWith("identity fingerprint: "), out[i]!.join("\n"));
      }
    });

    await t.step("create-group, invite two users in one command, both join", async () => {
      assertEquals(
        (await ok("alice", ["create-group", "team"]))[0]!.startsWith("Group #team"),
        true,
      );
      assertEquals(await ok("alice", ["invite", "team", "bob", "carol"]), [
        "Invited bob, carol to #team",
      ]);
      const [b, c] = await Promise.all([ok("bob", ["join"]), ok("carol", ["join"])]);
      assertEquals(b, ["* joined #team (invited by alice)"]);
      assertEquals(c, ["* joined #team (invited by alice)"]);
    });

    await t.step("messages in every direction print exactly once", async () => {
      assertEquals(await ok("alice", ["send", "--group", "team", say("hello")]), [
        "sent to #team",
      ]);
      const [b1, c1] = await Promise.all([ok("bob", ["recv"]), ok("carol", ["recv"])]);
      assertEquals(messages(b1), ["[#team] alice: hello"]);
      assertEquals(messages(c1), ["[#team] alice: hello"]);
      assertEquals(
        await ok("bob", ["send", "--group", "team", say("bob says the build is green")]),
        [
          "sent to #team",
        ],
      );
      // qpq send receives what is waiting first (QpqClient.send's receiveFirst)
      assertEquals(await ok("carol", ["send", "--group", "team", say("carol says ship it")]), [
        "[#team] bob: bob says the build is green",
        "sent to #team",
      ]);
      const [a, b, c] = await recvAll();
      assertEquals(messages(a), [
        "[#team] bob: bob says the build is green",
        "[#team] carol: carol says ship it",
      ]);
      assertEquals(messages(b), ["[#team] carol: carol says ship it"]);
      assertEquals(messages(c), []);
      // a second recv repeats nothing
      const again = await Promise.all(USERS.map((u) => ok(u, ["recv"])));
      assertEquals(again, [[], [], []]);
    });

    await t.step("the server restarts on the same port mid-conversation", async () => {
      await ok("alice", ["send", "--group", "team", say("sent before the restart")]);
      assertEquals(await server.stop(), 0, "server exit code after SIGTERM");
      server = await startServerProcess(dataDir, listen);
      assertEquals(server.addr, listen);
      assertEquals(await ok("bob", ["send", "--group", "team", say("sent after the restart")]), [
        "[#team] alice: sent before the restart",
        "sent to #team",
      ]);
      const [a, b, c] = await recvAll();
      assertEquals(messages(a), ["[#team] bob: sent after the restart"]);
      assertEquals(messages(b), []);
      assertEquals(messages(c), [
        "[#team] alice: sent before the restart",
        "[#team] bob: sent after the restart",
      ]);
      assertEquals(await Promise.all(USERS.map((u) => ok(u, ["recv"]))), [[], [], []]);
    });

    await t.step("members agree on every member, with one epoch authenticator", async () => {
      const views = await Promise.all(USERS.map((u) => ok(u, ["members", "team", "--json"])));
      const parsed = views.map((v) => JSON.parse(v[0]!));
      for (const p of parsed) {
        assertEquals(p.type, "members");
        assertEquals(p.conversation, "#team");
        assertEquals([...p.members].sort(), ["alice", "bob", "carol"]);
        assertEquals(p.epoch, parsed[0].epoch);
        assertEquals(p.epochAuthenticator, parsed[0].epochAuthenticator);
      }
      assert(/^[0-9a-f]{64,128}$/.test(parsed[0].epochAuthenticator), parsed[0].epochAuthenticator);
      const text = await ok("bob", ["members", "team"]);
      assertEquals(text[0], "#team: alice (admin), bob, carol");
      assertEquals(
        text[1],
        `epoch ${parsed[0].epoch}, authenticator ${parsed[0].epochAuthenticator.slice(0, 16)}…`,
      );
    });

    await t.step("after remove, carol reads nothing new and the server refuses her", async () => {
      assertEquals(await ok("alice", ["remove", "team", "carol"]), ["Removed carol from #team"]);
      await ok("alice", ["send", "--group", "team", say("carol must not read this")]);
      const c = await ok("carol", ["recv"]);
      assertEquals(c, ["* alice removed you from #team"]);
      const b = await ok("bob", ["recv"]);
      assertEquals(b, [
        "* alice removed carol from #team",
        "[#team] alice: carol must not read this",
      ]);
      assertEquals(await ok("carol", ["recv"]), []);
      const members = await q("carol", ["members", "team"]);
      assertEquals(members.code, 1);
      assertEquals(members.stderr, "qpq: You are not a member of #team\n");
      const list = await ok("carol", ["list"]);
      assert(!list.some((l) => l.includes("#team")), list.join("\n"));
      const [a2, b2] = await Promise.all(
        ["alice", "bob"].map((u) => ok(u as User, ["members", "team", "--json"])),
      );
      const pa = JSON.parse(a2![0]!);
      const pb = JSON.parse(b2![0]!);
      assertEquals([...pa.members].sort(), ["alice", "bob"]);
      assertEquals([...pb.members].sort(), ["alice", "bob"]);
      assertEquals(pa.epochAuthenticator, pb.epochAuthenticator);

      // carol's own session, straight to the server: the channel is no longer hers
      const store = await openLocalStore(`${clientDir}/carol.bin`, PASSWORDS.carol, {
        create: false,
        username: "carol",
        server: listen,
      });
      const token = store.meta.sessionToken!;
      const channel = store.findConversationByName("#team")!.channelId!;
      await store.close();
      const conn = await connectServer({
        server: listen,
        caCertPem: await Deno.readTextFile(cert),
      });
      try {
        await conn.call({ kind: "resume", token }, "session");
        const refused = [
          () => conn.call({ kind: "members", channelId: fromHex(channel) }, "memberList"),
          () =>
            conn.call({
              kind: "enqueue",
              channelId: fromHex(channel),
              messageId: crypto.getRandomValues(new Uint8Array(16)),
              payload: new Uint8Array([1, 2, 3]),
              messageKind: "application",
              epoch: 0,
              recipients: [],
            }, "enqueued"),
        ];
        for (const call of refused) {
          const e = await assertRejects(call, QpqError);
          // a channel she left looks exactly like one that never existed
          assertEquals((e as QpqError).code, "forbidden", String(e));
          assertEquals((e as QpqError).message, "Not a member of this conversation");
        }
        const fetched = await conn.call({ kind: "fetch", afterSeq: 0, limit: 100 }, "messages");
        assertEquals(fetched.messages.length, 0, "carol's queue holds nothing after removal");
      } finally {
        await conn.close();
      }
    });

    await t.step("a DM: [alice] hi, and history shows both directions", async () => {
      assertEquals(await ok("alice", ["send", "--to", "bob", "hi"]), ["sent to @bob"]);
      assertEquals(await ok("bob", ["recv"]), ["* joined @alice (invited by alice)", "[alice] hi"]);
      await ok("bob", ["send", "--to", "alice", say("hi alice, got your DM")]);
      assertEquals(await ok("alice", ["recv"]), ["[bob] hi alice, got your DM"]);
      const expected = ["[alice] hi", "[bob] hi alice, got your DM"];
      assertEquals(untimed(await ok("alice", ["history", "@bob"])), expected);
      assertEquals(untimed(await ok("bob", ["history", "alice"])), expected);
      const json = (await ok("bob", ["history", "@alice", "--json"])).map((l) => JSON.parse(l));
      assertEquals(json.map((m) => [m.sender, m.body, m.direction]), [
        ["alice", "hi", "in"],
        ["bob", "hi alice, got your DM", "out"],
      ]);
    });

    await t.step("a wrong password: exit 1 and one exact line", async () => {
      const r = await q("bob", ["recv"], "not bob's password");
      assertEquals(r.code, 1);
      assertEquals(r.stdout, "");
      assertEquals(r.stderr, "qpq: Cannot open state: wrong password or damaged file\n");
    });

    await t.step(
      "server down: one line and exit 1; send queues and goes out once later",
      async () => {
        assertEquals(await server.stop(), 0, "server exit code after SIGTERM");
        const queuedText = say("queued while the server was down");
        const [down, queued] = await Promise.all([
          q("alice", ["recv"]),
          q("bob", ["send", "--group", "team", queuedText]),
        ]);
        assertEquals(down.code, 1);
        assertEquals(down.stdout, "");
        assertEquals(down.stderr.split("\n").filter((l) => l).length, 1, down.stderr);
        assert(down.stderr.startsWith(`qpq: Cannot reach server at ${listen}`), down.stderr);
        assertEquals(queued.code, 0, queued.stderr);
        assertEquals(queued.stdout, "");
        assertEquals(queued.stderr, "queued for #team (server unreachable)\n");
        const who = await ok("bob", ["whoami", "--json"]);
        assertEquals(JSON.parse(who[0]!).queued, 1);

        server = await startServerProcess(dataDir, listen);
        const sent = await ok("bob", [
          "send",
          "--group",
          "team",
          say("the first one after the outage"),
          "--json",
        ]);
        const s = JSON.parse(sent[0]!);
        assertEquals([s.type, s.conversation, s.queued], ["sent", "#team", false]);
        const recv = (await ok("alice", ["recv", "--json"])).map((l) => JSON.parse(l));
        assertEquals(recv.map((m) => [m.type, m.conversation, m.sender, m.body, m.direction]), [
          ["message", "#team", "bob", queuedText, "in"],
          ["message", "#team", "bob", "the first one after the outage", "in"],
        ]);
        assertEquals(await ok("alice", ["recv"]), []);
        assertEquals(JSON.parse((await ok("bob", ["whoami", "--json"]))[0]!).queued, 0);
        const history = untimed(await ok("bob", ["history", "team", "--count", "2"]));
        assertEquals(history, [
          `[#team] bob: ${queuedText}`,
          "[#team] bob: the first one after the outage",
        ]);
      },
    );

    await t.step("no plaintext or password in any file of the server or the clients", async () => {
      // scan once with the server running (its WAL in place) and once after it stopped
      await scanForSecrets([dataDir, clientDir], plaintexts, Object.values(PASSWORDS));
      assertEquals(await server.stop(), 0, "server exit code after SIGTERM");
      await scanForSecrets([dataDir, clientDir], plaintexts, Object.values(PASSWORDS));
    });
  } finally {
    try {
      server.child.kill("SIGKILL");
      await server.child.status;
    } catch { /* stopped already */ }
    await Deno.remove(root, { recursive: true });
  }
});

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walk(p);
    else if (e.isFile) yield p;
  }
}

function indexOfBytes(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Every file under `dirs` (state .bin, .db, -wal, -shm, server db, …) free of `secrets`. */
async function scanForSecrets(dirs: string[], texts: string[], passwords: string[]) {
  // 2-byte texts ("hi") would match random ciphertext by chance; from 5 bytes ("hello")
  // a chance match in a few MB is about one in a million
  const needles = [...texts, ...passwords].filter((s) => s.length >= 5).map((s) => ({
    s,
    b: new TextEncoder().encode(s),
  }));
  assert(needles.length >= 10, "enough needles");
  let files = 0;
  const kinds = new Set<string>();
  for (const dir of dirs) {
    for await (const path of walk(dir)) {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(path);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue; // a -shm or -wal just went away
        throw e;
      }
      files++;
      kinds.add(/(\.bin|\.db|-wal|-shm|\.pem|\.lock|\.sqlite)$/.exec(path)?.[1] ?? "other");
      for (const n of needles) {
        assertEquals(indexOfBytes(bytes, n.b), -1, `${JSON.stringify(n.s)} found in ${path}`);
      }
    }
  }
  assert(files >= 6, `only ${files} files scanned`);
  assert(kinds.has(".bin") && kinds.has(".db"), [...kinds].join(","));
}
