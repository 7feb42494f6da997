/**
 * Client store tests: a real state file and SQLite database in a temp directory, opened
 * with small Argon2id parameters (one test uses the defaults). Covers round trips, the
 * single wrong-password/damaged-file message with byte-for-byte unchanged files, locking
 * across processes, crash leftovers, idempotence, ordering, transactions, at-rest secrecy
 * (file scans) and redaction.
 */

import { Buffer } from "node:buffer";
import { inspect } from "node:util";
import { DatabaseSync } from "node:sqlite";
import { fromUtf8, randomBytes, toBase64, toHex, utf8 } from "../src/bytes.ts";
import { DEFAULT_ARGON2ID_PARAMS, IdentityKeyPair } from "../src/crypto/mod.ts";
import { StorageError, UsageError } from "../src/errors.ts";
import {
  type ClientMetaInit,
  clientStatePaths,
  ClientStore,
  type Conversation,
  DERIVING_KEY_MESSAGE,
  STATE_OPEN_FAILED_MESSAGE,
  type StoredMessage,
} from "../src/store/mod.ts";
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "./_support/assert.ts";

/** Small Argon2id cost so most tests take milliseconds. */
const FAST = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 };
const PASSWORD = "correct horse battery staple ünïcødé";
const T0 = 1_700_000_000_000;

function identity(): { seed: Uint8Array; pub: Uint8Array } {
  const kp = IdentityKeyPair.generate();
  return { seed: kp.exportPrivateKey(), pub: kp.publicKey };
}

function initialMeta(username = "alice"): ClientMetaInit {
  const id = identity();
  return {
    username,
    server: "localhost:4433",
    identitySeed: id.seed,
    identityPublic: id.pub,
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qpq-client-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function create(path: string, meta = initialMeta()): Promise<ClientStore> {
  return ClientStore.open(path, PASSWORD, { create: true, initialMeta: meta, kdf: FAST });
}

function conv(id: string, name: string, createdAt = T0, kind: Conversation["kind"] = "dm") {
  return { id, kind, name, peer: "bob", createdAt } satisfies Conversation;
}

function msg(conversationId: string, messageId: string, body: string, at = T0): StoredMessage {
  return {
    conversationId,
    messageId,
    sender: "bob",
    body,
    sentAt: at,
    receivedAt: at + 5,
    direction: "in",
  };
}

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

type Snapshot = Map<string, { bytes: string; mtime: number | undefined }>;

function snapshot(dir: string): Snapshot {
  const out: Snapshot = new Map();
  for (const e of Deno.readDirSync(dir)) {
    const p = `${dir}/${e.name}`;
    out.set(e.name, {
      bytes: toHex(Deno.readFileSync(p)),
      mtime: Deno.statSync(p).mtime?.getTime(),
    });
  }
  return out;
}

function assertSnapshot(dir: string, before: Snapshot): void {
  const after = snapshot(dir);
  assertEquals([...after.keys()].sort(), [...before.keys()].sort(), "file set changed");
  for (const [name, v] of before) {
    const a = after.get(name)!;
    assert(a.bytes === v.bytes, `${name} bytes changed`);
    assertEquals(a.mtime, v.mtime, `${name} mtime changed`);
  }
}

async function assertOpenFails(path: string, password = PASSWORD): Promise<void> {
  const e = await assertRejects(
    () => ClientStore.open(path, password, { kdf: FAST }),
    StorageError,
  );
  assertEquals(e.message, STATE_OPEN_FAILED_MESSAGE);
}

// ------------------------------------------------------------------------ round trip

Deno.test("ClientStore.open creates a state and reads everything back after reopening", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/qpq-alice.bin`;
    const meta = initialMeta();
    const progress: string[] = [];
    const s = await ClientStore.open(path, PASSWORD, {
      create: true,
      initialMeta: meta,
      kdf: FAST,
      onProgress: (m) => progress.push(m),
    });
    assert(s.created);
    assertEquals(progress, [DERIVING_KEY_MESSAGE]);
    const token = randomBytes(32);
    s.updateMeta({ sessionToken: token, sessionExpiresAt: T0 + 3600_000, deviceId: "dev-1" });
    const groupState = randomBytes(4096);
    s.putKv("group:0a0b", groupState);
    s.putKv("kp:ff01", utf8("kp private"));
    s.putKv("cursor", utf8("17"));
    const gid = randomBytes(16);
    s.upsertConversation({ ...conv("c1", "bob"), channelId: "ch-1" });
    s.upsertConversation({
      id: "c2",
      kind: "group",
      name: "friends",
      groupId: gid,
      createdAt: T0 + 1,
    });
    assert(s.addMessage(msg("c1", "m1", "hello")));
    assert(
      s.addMessage({ ...msg("c2", "m2", "out", T0 + 2), direction: "out", status: "pending" }),
    );
    assert(s.setMessageStatus("m2", "delivered"));
    const req = randomBytes(100);
    assert(
      s.addOutbox({
        messageId: "m2",
        conversationId: "c2",
        request: req,
        createdAt: T0,
        attempts: 0,
      }),
    );
    await s.close();
    assert(s.closed);
    assertThrows(() => s.getKv("cursor"), UsageError, "closed");

    const r = await ClientStore.open(path, PASSWORD);
    try {
      assert(!r.created);
      const m = r.meta;
      assertEquals(m.version, 1);
      assertEquals(m.username, meta.username);
      assertEquals(m.server, meta.server);
      assertEquals(m.identitySeed, meta.identitySeed);
      assertEquals(m.identityPublic, meta.identityPublic);
      assertEquals(m.sessionToken, token);
      assertEquals(m.sessionExpiresAt, T0 + 3600_000);
      assertEquals(m.deviceId, "dev-1");
      assertEquals(r.getKv("group:0a0b"), groupState);
      assertEquals(r.getKv("kp:ff01"), utf8("kp private"));
      assertEquals(r.getKv("missing"), undefined);
      assertEquals(r.listKv(), ["cursor", "group:0a0b", "kp:ff01"]);
      assertEquals(r.listKv("kp:"), ["kp:ff01"]);
      assert(r.deleteKv("kp:ff01"));
      assert(!r.deleteKv("kp:ff01"));
      assertEquals(r.getConversation("c1"), { ...conv("c1", "bob"), channelId: "ch-1" });
      assertEquals(r.getConversation("c2")?.groupId, gid);
      assertEquals(r.findConversationByName("friends")?.id, "c2");
      assertEquals(r.findConversationByName("nobody"), undefined);
      assertEquals(r.listConversations().map((c) => c.id), ["c1", "c2"]);
      assertEquals(r.history("c1", 10), [msg("c1", "m1", "hello")]);
      assertEquals(r.history("c2", 10)[0]?.status, "delivered");
      assert(r.hasMessage("m1"));
      assert(!r.hasMessage("m9"));
      assertEquals(r.listOutbox(), [
        { messageId: "m2", conversationId: "c2", request: req, createdAt: T0, attempts: 0 },
      ]);
    } finally {
      await r.close();
    }
    assertEquals(names(dir), [
      "qpq-alice.bin",
      "qpq-alice.bin.db",
    ]);
  });
});

Deno.test("ClientStore.open with default Argon2id params records them and reopens", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/state.bin`;
    const t = performance.now();
    const s = await ClientStore.open(path, PASSWORD, { create: true, initialMeta: initialMeta() });
    const createMs = performance.now() - t;
    await s.close();
    const file = Deno.readFileSync(path);
    assertEquals(fromUtf8(file.subarray(0, 4)), "QPQS");
    const len = (file[5]! << 8) | file[6]!;
    const params = JSON.parse(fromUtf8(file.subarray(7, 7 + len)));
    assertEquals(params, { ...DEFAULT_ARGON2ID_PARAMS });
    assert(params.memoryKiB >= 19 * 1024 && params.iterations >= 2, "below the OWASP minimum");
    // The kdf option only applies to new states: the header's parameters win on reopen.
    const r = await ClientStore.open(path, PASSWORD, { kdf: FAST });
    assertEquals(r.meta.username, "alice");
    await r.close();
    assert(createMs < 20_000, `Argon2id took ${createMs} ms`);
  });
});

// ------------------------------------------------------------------- open failures

Deno.test("ClientStore.open rejects a wrong password with the exact message and changes no file", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/qpq-alice.bin`;
    const s = await create(path);
    s.putKv("k", utf8("v"));
    await s.close();
    const before = snapshot(dir);
    await new Promise((r) => setTimeout(r, 20)); // so a rewrite would move mtime
    for (const pw of ["wrong", PASSWORD + " ", "", utf8(PASSWORD + "x")]) {
      await assertOpenFails(path, pw as string);
      assertSnapshot(dir, before);
    }
    const r = await ClientStore.open(path, PASSWORD);
    assertEquals(r.getKv("k"), utf8("v"));
    await r.close();
  });
});

Deno.test("ClientStore.open reports a damaged header, meta record or truncated file with the same message", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    await (await create(path)).close();
    const good = Deno.readFileSync(path);
    const jsonLen = (good[5]! << 8) | good[6]!;
    const saltAt = 8 + jsonLen;
    const checkAt = saltAt + 16;
    const metaAt = checkAt + 32 + 4;
    const variants: [string, Uint8Array][] = [];
    const flip = (what: string, i: number) => {
      const b = good.slice();
      b[i]! ^= 0x01;
      variants.push([what, b]);
    };
    flip("magic", 0);
    flip("format version", 4);
    flip("salt", saltAt + 3);
    flip("key check", checkAt + 7);
    flip("meta length", metaAt - 1);
    flip("meta nonce", metaAt + 2);
    flip("meta ciphertext", metaAt + 30);
    flip("meta tag", good.length - 1);
    for (const n of [0, 3, 7, saltAt, checkAt + 10, metaAt, good.length - 1]) {
      variants.push([`truncated to ${n}`, good.slice(0, n)]);
    }
    variants.push(["trailing byte", new Uint8Array([...good, 0])]);
    variants.push([
      "KDF JSON",
      (() => {
        const b = good.slice();
        b[7] = 0x5b; // "[" instead of "{"
        return b;
      })(),
    ]);
    for (const [what, bytes] of variants) {
      Deno.writeFileSync(path, bytes);
      const before = snapshot(dir);
      try {
        await assertOpenFails(path);
      } catch (e) {
        throw new Error(`variant ${what}: ${(e as Error).message}`);
      }
      assertSnapshot(dir, before);
    }
    Deno.writeFileSync(path, good);
    await (await ClientStore.open(path, PASSWORD)).close();
  });
});

Deno.test("ClientStore.open reports a database from another state or a truncated one as damaged", async () => {
  await withDir(async (dir) => {
    const a = `${dir}/a.bin`;
    const b = `${dir}/b.bin`;
    await (await create(a)).close();
    await (await create(b)).close();
    const goodDb = Deno.readFileSync(`${a}.db`);
    Deno.copyFileSync(`${b}.db`, `${a}.db`); // same password, different salt
    await assertOpenFails(a);
    Deno.writeFileSync(`${a}.db`, goodDb.slice(0, 100));
    await assertOpenFails(a);
    Deno.writeFileSync(`${a}.db`, goodDb);
    await (await ClientStore.open(a, PASSWORD)).close();
    Deno.removeSync(`${a}.db`);
    await assertRejects(() => ClientStore.open(a, PASSWORD), StorageError, "a.bin.db is missing");
    assert(!(await exists(`${a}.db`)), "a missing database must not be recreated");
  });
});

Deno.test("ClientStore.open refuses a missing state without create and writes nothing", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/nobody.bin`;
    const e = await assertRejects(() => ClientStore.open(path, PASSWORD), UsageError);
    assertEquals(e.message, `No local state at ${path}: register or log in first`);
    await assertRejects(
      () => ClientStore.open(path, PASSWORD, { create: true }),
      UsageError,
      "initial meta is required",
    );
    assertEquals(names(dir), []);
  });
});

Deno.test("ClientStore.open with create opens an existing state instead of overwriting it", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const s = await create(path);
    s.putKv("keep", utf8("me"));
    await s.close();
    const r = await create(path, initialMeta("mallory"));
    try {
      assert(!r.created);
      assertEquals(r.meta.username, "alice");
      assertEquals(r.getKv("keep"), utf8("me"));
    } finally {
      await r.close();
    }
    await assertOpenFails(path, "other password");
  });
});

Deno.test("ClientStore.open moves an undecryptable leftover database aside when creating", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    await (await create(path)).close();
    Deno.removeSync(path); // as if the process died after the db rename, before the state
    const progress: string[] = [];
    const s = await ClientStore.open(path, PASSWORD, {
      create: true,
      initialMeta: initialMeta(),
      kdf: FAST,
      onProgress: (m) => progress.push(m),
    });
    await s.close();
    const listed = names(dir);
    assertEquals(listed.length, 3);
    assert(listed.some((n) => /^s\.bin\.db\.orphan-\d+$/.test(n)), listed.join(","));
    assertStringIncludes(progress.join("\n"), "aside");
  });
});

// ---------------------------------------------------------------------------- locks

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** A child process that opens the state at `path`, prints "ready", then runs `then`. */
function spawnHolder(path: string, then: string): Deno.ChildProcess {
  const mod = new URL("../src/store/client/client_store.ts", import.meta.url).href;
  const code = `
    import { ClientStore } from ${JSON.stringify(mod)};
    const s = await ClientStore.open(${JSON.stringify(path)}, ${JSON.stringify(PASSWORD)});
    console.log("ready");
    ${then}`;
  return new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
}

Deno.test("ClientStore.open refuses a state locked by a live process and takes over after it dies", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    await (await create(path)).close();
    const child = spawnHolder(path, "setInterval(() => {}, 1000);");
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      let out = "";
      while (!out.includes("ready")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`child exited before locking: ${out}`);
        out += value;
      }
      const e = await assertRejects(() => ClientStore.open(path, PASSWORD), UsageError);
      assertEquals(e.message, `State ${path} is in use by another qpq process (pid ${child.pid})`);
      child.kill("SIGKILL"); // a crash: the lock file stays behind
      await child.status;
      assertEquals(Deno.readTextFileSync(`${path}.lock`).trim(), String(child.pid));
      const s = await ClientStore.open(path, PASSWORD);
      assertEquals(Deno.readTextFileSync(`${path}.lock`).trim(), String(Deno.pid));
      await s.close();
      assert(!(await exists(`${path}.lock`)), "close must remove the lock file");
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* already dead */ }
      await reader.cancel();
      await child.status;
    }
  });
});

Deno.test("ClientStore closes itself and removes its lock when the process exits without close", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    await (await create(path)).close();
    const child = spawnHolder(path, `s.putKv("k", new Uint8Array([7])); Deno.exit(0);`);
    const out = await new Response(child.stdout).text();
    assertEquals((await child.status).code, 0, out);
    assertEquals(names(dir), ["s.bin", "s.bin.db"]);
    const s = await ClientStore.open(path, PASSWORD);
    assertEquals(s.getKv("k"), new Uint8Array([7]));
    await s.close();
  });
});

Deno.test("ClientStore.open takes over a stale lock file naming a dead pid", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    await (await create(path)).close();
    const dead = new Deno.Command("true").spawn();
    await dead.status;
    Deno.writeTextFileSync(`${path}.lock`, `${dead.pid}\n`);
    const s = await ClientStore.open(path, PASSWORD);
    assertEquals(Deno.readTextFileSync(`${path}.lock`).trim(), String(Deno.pid));
    await s.close();
  });
});

Deno.test("ClientStore.open refuses a second open of the same state in one process", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const s = await create(path);
    const e = await assertRejects(() => ClientStore.open(path, PASSWORD), UsageError);
    assertEquals(e.message, `State ${path} is already open in this process`);
    // Also through another spelling of the same path.
    await assertRejects(
      () => ClientStore.open(`${dir}/./s.bin`, PASSWORD),
      UsageError,
      "already open",
    );
    // And two concurrent opens: exactly one wins.
    await s.close();
    const results = await Promise.allSettled([
      ClientStore.open(path, PASSWORD),
      ClientStore.open(path, PASSWORD),
    ]);
    assertEquals(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) if (r.status === "fulfilled") await r.value.close();
    await (await ClientStore.open(path, PASSWORD)).close();
  });
});

// ------------------------------------------------------------------- meta and crash

Deno.test("ClientStore.updateMeta rewrites atomically and a stray temp file leaves the old state readable", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const s = await create(path);
    const token = randomBytes(32);
    s.updateMeta({ sessionToken: token, sessionExpiresAt: T0 });
    await s.close();
    const old = Deno.readFileSync(path);
    // A crash after writing the temporary file but before the rename.
    Deno.writeFileSync(`${path}.tmp-0123456789ab`, old.slice(0, old.length - 9));
    Deno.writeFileSync(`${path}.tmp-ba9876543210`, new Uint8Array(0));
    const r = await ClientStore.open(path, PASSWORD);
    try {
      assertEquals(r.meta.sessionToken, token);
      assert(!(await exists(`${path}.tmp-0123456789ab`)), "stray temp files are removed");
      r.updateMeta({ sessionToken: undefined, sessionExpiresAt: undefined, server: "h:1" });
      assertEquals(r.meta.sessionToken, undefined);
      assert(!("sessionToken" in r.meta));
      assertThrows(() => r.updateMeta({ identitySeed: new Uint8Array(5) }), UsageError);
      assertEquals(r.meta.server, "h:1");
    } finally {
      await r.close();
    }
    const listed = names(dir);
    assertEquals(listed, ["s.bin", "s.bin.db"]);
    const again = await ClientStore.open(path, PASSWORD);
    assertEquals(again.meta.server, "h:1");
    assertEquals(again.meta.sessionToken, undefined);
    await again.close();
  });
});

// ------------------------------------------------------------------------- messages

Deno.test("ClientStore.addMessage is idempotent on messageId and needs a known conversation", async () => {
  await withDir(async (dir) => {
    const s = await create(`${dir}/s.bin`);
    try {
      s.upsertConversation(conv("c1", "bob"));
      assert(s.addMessage(msg("c1", "m1", "first")));
      assert(!s.addMessage(msg("c1", "m1", "first")));
      assert(!s.addMessage(msg("c1", "m1", "a different body")));
      assertEquals(s.history("c1", 10).map((m) => m.body), ["first"]);
      const e = assertThrows(() => s.addMessage(msg("nope", "m2", "x")), UsageError);
      assertEquals((e as UsageError).code, "not_found");
      assertThrows(() => s.addMessage({ ...msg("c1", "", "x") }), UsageError, "message id");
      assert(!s.setMessageStatus("m404", "sent"));
    } finally {
      await s.close();
    }
  });
});

Deno.test("ClientStore.history returns the newest count messages oldest first", async () => {
  await withDir(async (dir) => {
    const s = await create(`${dir}/s.bin`);
    try {
      s.upsertConversation(conv("c1", "bob"));
      s.upsertConversation(conv("c2", "carol"));
      for (let i = 0; i < 30; i++) {
        s.addMessage(msg(i % 3 === 0 ? "c2" : "c1", `m${i}`, `body ${i}`, T0 + i));
      }
      const c1 = [...Array(30).keys()].filter((i) => i % 3 !== 0).map((i) => `body ${i}`);
      assertEquals(s.history("c1", 5).map((m) => m.body), c1.slice(-5));
      assertEquals(s.history("c1", 1000).map((m) => m.body), c1);
      assertEquals(s.history("c2", 2).map((m) => m.messageId), ["m24", "m27"]);
      assertEquals(s.history("c1", 0), []);
      assertEquals(s.history("unknown", 5), []);
      assertThrows(() => s.history("c1", -1), UsageError);
    } finally {
      await s.close();
    }
  });
});

Deno.test("ClientStore.upsertConversation replaces by id and refuses a name another one uses", async () => {
  await withDir(async (dir) => {
    const s = await create(`${dir}/s.bin`);
    try {
      s.upsertConversation(conv("c2", "zed", T0 + 5));
      s.upsertConversation(conv("c1", "bob", T0));
      s.upsertConversation({ ...conv("c1", "bobby", T0), channelId: "ch" });
      assertEquals(s.findConversationByName("bob"), undefined);
      assertEquals(s.findConversationByName("bobby")?.channelId, "ch");
      const e = assertThrows(() => s.upsertConversation(conv("c3", "zed")), UsageError);
      assertEquals((e as UsageError).code, "conflict");
      assertEquals(s.listConversations().map((c) => c.id), ["c1", "c2"]);
      assertThrows(
        () => s.upsertConversation({ ...conv("c4", "x"), kind: "nope" as "dm" }),
        UsageError,
      );
    } finally {
      await s.close();
    }
  });
});

Deno.test("ClientStore outbox lists oldest first and counts attempts until removed", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const s = await create(path);
    const entry = (id: string, at: number) => ({
      messageId: id,
      conversationId: "c1",
      request: utf8(`req ${id}`),
      createdAt: at,
      attempts: 0,
    });
    assert(s.addOutbox(entry("b", T0 + 1)));
    assert(s.addOutbox(entry("a", T0 + 2)));
    assert(!s.addOutbox(entry("b", T0 + 3)));
    assertEquals(s.listOutbox().map((e) => e.messageId), ["b", "a"]);
    assertEquals(s.bumpOutbox("a"), 1);
    assertEquals(s.bumpOutbox("a"), 2);
    assertEquals(s.bumpOutbox("zz"), undefined);
    await s.close();
    const r = await ClientStore.open(path, PASSWORD);
    try {
      assertEquals(r.listOutbox(), [entry("b", T0 + 1), { ...entry("a", T0 + 2), attempts: 2 }]);
      assert(r.removeOutbox("b"));
      assert(!r.removeOutbox("b"));
      assertEquals(r.listOutbox().map((e) => e.messageId), ["a"]);
      assert(r.removeOutbox("a"));
      assertEquals(r.listOutbox(), []);
    } finally {
      await r.close();
    }
  });
});

// --------------------------------------------------------------------- transactions

Deno.test("ClientStore.transaction commits together and a throw leaves nothing", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const s = await create(path);
    s.upsertConversation(conv("g", "friends", T0, "group"));
    s.putKv("group:g", utf8("epoch 1"));
    const boom = new Error("boom");
    const thrown = assertThrows(() =>
      s.transaction(() => {
        s.putKv("group:g", utf8("epoch 2"));
        s.addMessage(msg("g", "m1", "hi"));
        s.putKv("cursor", utf8("5"));
        s.addOutbox({
          messageId: "o",
          conversationId: "g",
          request: utf8("r"),
          createdAt: T0,
          attempts: 0,
        });
        throw boom;
      })
    );
    assert(thrown === boom, "the callback's error is rethrown as is");
    assertEquals(s.getKv("group:g"), utf8("epoch 1"));
    assert(!s.hasMessage("m1"));
    assertEquals(s.getKv("cursor"), undefined);
    assertEquals(s.listOutbox(), []);

    // A nested transaction that throws rolls back only its own writes when caught.
    const n = s.transaction(() => {
      s.putKv("group:g", utf8("epoch 2"));
      try {
        s.transaction(() => {
          s.putKv("cursor", utf8("6"));
          throw new Error("inner");
        });
      } catch { /* handled */ }
      s.addMessage(msg("g", "m1", "hi"));
      return 42;
    });
    assertEquals(n, 42);
    assertEquals(s.getKv("cursor"), undefined);
    // A failing call (unknown conversation) inside rolls back the whole group.
    assertThrows(() =>
      s.transaction(() => {
        s.putKv("cursor", utf8("7"));
        s.addMessage(msg("nope", "m2", "x"));
      }), UsageError);
    assertEquals(s.getKv("cursor"), undefined);
    // Async callbacks are refused and their synchronous part undone.
    assertThrows(
      // deno-lint-ignore require-await
      () => s.transaction(async () => s.putKv("cursor", utf8("8"))),
      UsageError,
      "synchronous",
    );
    assertEquals(s.getKv("cursor"), undefined);
    await s.close();
    const r = await ClientStore.open(path, PASSWORD);
    assertEquals(r.getKv("group:g"), utf8("epoch 2"));
    assertEquals(r.history("g", 5).map((m) => m.body), ["hi"]);
    await r.close();
  });
});

// --------------------------------------------------------------- secrecy at rest

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.length).indexOf(Buffer.from(needle)) >= 0;
}

function scanFiles(path: string, needles: Map<string, Uint8Array>): string[] {
  const hits: string[] = [];
  const p = clientStatePaths(path);
  let scanned = 0;
  for (const f of [p.state, p.db, p.wal, p.shm, p.lock]) {
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(f);
    } catch {
      continue;
    }
    scanned++;
    for (const [what, n] of needles) if (contains(bytes, n)) hits.push(`${what} in ${f}`);
  }
  assert(scanned >= 2, "nothing scanned");
  return hits;
}

Deno.test("ClientStore files contain no plaintext, password, token or group state", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const meta = initialMeta("alice-unique-username");
    const s = await create(path, meta);
    const body = `TOP-SECRET-PLAINTEXT-${toHex(randomBytes(8))}`;
    const token = randomBytes(32);
    const groupState = utf8(`GROUP-STATE-${toHex(randomBytes(16))}`);
    const request = utf8(`OUTBOX-REQUEST-${toHex(randomBytes(8))}`);
    s.updateMeta({ sessionToken: token });
    s.upsertConversation({ ...conv("conv-id-4711", "conversation-name-xyz"), peer: "peer-name-q" });
    s.addMessage(msg("conv-id-4711", "message-id-0815", body));
    s.putKv("group:secret-group-key-name", groupState);
    s.addOutbox({
      messageId: "m-out",
      conversationId: "conv-id-4711",
      request,
      createdAt: T0,
      attempts: 0,
    });
    const needles = new Map<string, Uint8Array>([
      ["body", utf8(body)],
      ["password (UTF-8)", utf8(PASSWORD)],
      ["password (NFC UTF-8)", utf8(PASSWORD.normalize("NFC"))],
      ["token", token],
      ["token hex", utf8(toHex(token))],
      ["token base64", utf8(toBase64(token))],
      ["identity seed", meta.identitySeed],
      ["identity seed base64", utf8(toBase64(meta.identitySeed))],
      ["group state", groupState],
      ["outbox request", request],
      ["username", utf8(meta.username)],
      ["conversation id", utf8("conv-id-4711")],
      ["conversation name", utf8("conversation-name-xyz")],
      ["peer", utf8("peer-name-q")],
      ["message id", utf8("message-id-0815")],
      ["kv key", utf8("secret-group-key-name")],
    ]);
    // While open (data in the WAL) and after close (checkpointed into the .db).
    const openHits = scanFiles(path, needles);
    assert(await exists(`${path}.db-wal`), "the WAL should exist while open");
    await s.close();
    const closedHits = scanFiles(path, needles);
    assertEquals([...openHits, ...closedHits], []);
    // The scanner can fail: a plaintext SQLite file with the same body is caught.
    const plain = new DatabaseSync(`${dir}/control.db`);
    plain.exec("CREATE TABLE t (v TEXT)");
    plain.prepare("INSERT INTO t VALUES (?)").run(body);
    plain.close();
    assert(contains(Deno.readFileSync(`${dir}/control.db`), utf8(body)));
  });
});

Deno.test("ClientStore kv values swapped between rows no longer open", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const s = await create(path);
    s.putKv("a", utf8("value a"));
    s.putKv("b", utf8("value b"));
    await s.close();
    const db = new DatabaseSync(`${path}.db`);
    const rows = db.prepare("SELECT k_h, sealed_value FROM kv").all();
    assertEquals(rows.length, 2);
    const upd = db.prepare("UPDATE kv SET sealed_value = ? WHERE k_h = ?");
    upd.run(rows[1]!.sealed_value as Uint8Array, rows[0]!.k_h as Uint8Array);
    upd.run(rows[0]!.sealed_value as Uint8Array, rows[1]!.k_h as Uint8Array);
    db.close();
    const r = await ClientStore.open(path, PASSWORD);
    try {
      assertThrows(() => r.getKv("a"), StorageError, "cannot be decrypted");
      assertThrows(() => r.getKv("b"), StorageError, "cannot be decrypted");
    } finally {
      await r.close();
    }
  });
});

// ------------------------------------------------------------------------ redaction

Deno.test("ClientStore and its meta redact secrets in inspect and JSON", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const meta = initialMeta();
    const s = await create(path, meta);
    try {
      const token = randomBytes(32);
      s.updateMeta({ sessionToken: token });
      const m = s.meta;
      assertEquals(m.sessionToken, token, "the fields themselves stay readable");
      const shown = [
        Deno.inspect(s, { depth: 10 }),
        Deno.inspect(m, { depth: 10 }),
        Deno.inspect({ wrapped: { s, m } }, { depth: 10 }),
        inspect(s, { depth: 10 }),
        inspect(m, { depth: 10 }),
        JSON.stringify(s),
        JSON.stringify(m),
        JSON.stringify({ m }),
        String(s),
      ].join("\n");
      for (const secret of [meta.identitySeed, token]) {
        for (const form of [toHex(secret), toBase64(secret), secret.join(","), secret.join(", ")]) {
          assert(!shown.includes(form), "a secret leaked through inspect or JSON");
        }
      }
      assertStringIncludes(Deno.inspect(m), "[redacted]");
      assertStringIncludes(JSON.stringify(m), "[redacted]");
      assertStringIncludes(Deno.inspect(m), "alice");
      assertNotEquals(Deno.inspect(s), "");
      assertInstanceOf(m.identitySeed, Uint8Array);
    } finally {
      await s.close();
    }
  });
});
