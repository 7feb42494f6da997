/**
 * Client store tests: a real state file and SQLite database in a temp directory, opened
 * with small Argon2id parameters (one test uses the defaults). Covers round trips, the
 * single wrong-password/damaged-file message with byte-for-byte unchanged files, locking
 * across processes, crash leftovers, idempotence, ordering, transactions, at-rest secrecy
 * (file scans) and redaction.
 */

import { Buffer } from "node:buffer";
import { inspect } from "node:util";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import { fromUtf8, randomBytes, toBase64, toHex, utf8 } from "../src/bytes.ts";
import { DEFAULT_ARGON2ID_PARAMS, IdentityKeyPair } from "../src/crypto/mod.ts";
import { StorageError, UsageError } from "../src/errors.ts";
import { decodeGroupState, encryptMessage, processMessage } from "../src/mls/mod.ts";
import { GroupStates } from "../src/client/group_states.ts";
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
    const group = {
      channelId: "0a0b",
      state: groupState,
      pendingCommit: randomBytes(300),
      lastUpdateMs: T0,
      leaves: ["carol"],
    };
    s.putGroup(group);
    const kp = { ref: "ff01", suite: "S", lastResort: false, privatePackage: utf8("kp private") };
    s.putKeyPackage(kp);
    s.pinKey("bob", utf8("bob's key"));
    s.setCursor(17);
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
    assertThrows(() => s.cursor(), UsageError, "closed");

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
      assertEquals(r.group("0a0b"), group);
      assertEquals(r.group("missing"), undefined);
      assertEquals(r.listKeyPackages(), [kp]);
      assertEquals(r.pinnedKey("bob"), utf8("bob's key"));
      assertEquals(r.cursor(), 17);
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
    const s = await ClientStore.open(path, PASSWORD, { create: true, initialMeta: initialMeta() });
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
    await r.close(); // its speed: bench/client_bench.ts "Argon2id derivation, default params"
  });
});

// ------------------------------------------------------------------- open failures

Deno.test("ClientStore.open rejects a wrong password with the exact message and changes no file", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/qpq-alice.bin`;
    const s = await create(path);
    s.setCursor(7);
    await s.close();
    const before = snapshot(dir);
    await new Promise((r) => setTimeout(r, 20)); // so a rewrite would move mtime
    for (const pw of ["wrong", PASSWORD + " ", "", utf8(PASSWORD + "x")]) {
      await assertOpenFails(path, pw as string);
      assertSnapshot(dir, before);
    }
    const r = await ClientStore.open(path, PASSWORD);
    assertEquals(r.cursor(), 7);
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
    assertEquals(
      e.message,
      `No local state at ${path}: qpq register-user creates an account; for an existing one, point --state at the file it was registered with`,
    );
    assertEquals(e.code, "not_found", "not a usage mistake: exit code 1 (issue 21)");
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
    s.pinKey("keep", utf8("me"));
    await s.close();
    const r = await create(path, initialMeta("mallory"));
    try {
      assert(!r.created);
      assertEquals(r.meta.username, "alice");
      assertEquals(r.pinnedKey("keep"), utf8("me"));
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
    const child = spawnHolder(path, `s.setCursor(7); Deno.exit(0);`);
    const out = await new Response(child.stdout).text();
    assertEquals((await child.status).code, 0, out);
    assertEquals(names(dir), ["s.bin", "s.bin.db"]);
    const s = await ClientStore.open(path, PASSWORD);
    assertEquals(s.cursor(), 7);
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

Deno.test("ClientStore files contain no plaintext, password, token, key or group state", async () => {
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
    const pendingCommit = utf8(`PENDING-COMMIT-${toHex(randomBytes(8))}`);
    s.putGroup({
      channelId: "channel-id-c0ffee",
      state: groupState,
      pendingCommit,
      lastUpdateMs: T0,
      leaves: ["leaving-member-x"],
      broken: "BROKEN-REASON-text",
      rejoinRequestedMs: T0,
    });
    const privatePackage = utf8(`KP-PRIVATE-${toHex(randomBytes(8))}`);
    s.putKeyPackage({
      ref: "kp-ref-a1b2c3",
      suite: "SUITE-NAME-xyz",
      lastResort: true,
      privatePackage,
    });
    const pinned = randomBytes(32);
    s.pinKey("pinned-user-name", pinned);
    s.setCursor(987654321);
    s.addMessage({ ...msg("conv-id-4711", "unreadable-id-0816", ""), unreadable: true });
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
      ["channel id", utf8("channel-id-c0ffee")],
      ["pending commit", pendingCommit],
      ["leaving member", utf8("leaving-member-x")],
      ["broken reason", utf8("BROKEN-REASON-text")],
      ["KeyPackage private part", privatePackage],
      ["KeyPackage ref", utf8("kp-ref-a1b2c3")],
      ["suite", utf8("SUITE-NAME-xyz")],
      ["pinned key", pinned],
      ["pinned user", utf8("pinned-user-name")],
      ["cursor", utf8("987654321")],
      ["unreadable message id", utf8("unreadable-id-0816")],
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

Deno.test("ClientStore values moved to another row or column no longer open", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const s = await create(path);
    const g = (id: string) => ({
      channelId: id,
      state: utf8(`state ${id}`),
      pendingCommit: utf8(`pending ${id}`),
      lastUpdateMs: T0,
      leaves: [],
    });
    s.putGroup(g("a"));
    s.putGroup(g("b"));
    s.pinKey("bob", utf8("key bob"));
    s.pinKey("carol", utf8("key carol"));
    await s.close();
    const clean = Deno.readFileSync(`${path}.db`);
    const tamper = (sql: string[], check: (r: ClientStore) => void) => {
      Deno.writeFileSync(`${path}.db`, clean);
      const db = new DatabaseSync(`${path}.db`);
      const rows = db.prepare("SELECT id_h, state, pending FROM groups").all();
      const names = db.prepare("SELECT name_h, data FROM contacts").all();
      const args: Record<string, Uint8Array> = {
        a: rows[0]!.id_h as Uint8Array,
        b: rows[1]!.id_h as Uint8Array,
        stateA: rows[0]!.state as Uint8Array,
        stateB: rows[1]!.state as Uint8Array,
        pendingA: rows[0]!.pending as Uint8Array,
        n1: names[0]!.name_h as Uint8Array,
        key2: names[1]!.data as Uint8Array,
      };
      for (const q of sql) {
        const used = [...q.matchAll(/:(\w+)/g)].map((m) => m[1]!);
        db.prepare(q.replace(/:\w+/g, "?")).run(...used.map((k) => args[k]!));
      }
      db.close();
      return ClientStore.open(path, PASSWORD).then(async (r) => {
        try {
          check(r);
        } finally {
          await r.close();
        }
      });
    };
    // Group states swapped between two rows.
    await tamper([
      "UPDATE groups SET state = :stateB WHERE id_h = :a",
      "UPDATE groups SET state = :stateA WHERE id_h = :b",
    ], (r) => {
      assertThrows(() => r.group("a"), StorageError, "cannot be decrypted");
      assertThrows(() => r.listGroups(), StorageError, "cannot be decrypted");
    });
    // A pending commit moved into the state column of its own row.
    await tamper(["UPDATE groups SET state = :pendingA WHERE id_h = :a"], (r) => {
      assertThrows(() => r.group("a"), StorageError, "cannot be decrypted");
      assertEquals(r.group("b")?.state, utf8("state b"));
    });
    // A pinned key copied to another user's row.
    await tamper(["UPDATE contacts SET data = :key2 WHERE name_h = :n1"], (r) => {
      const shown = [() => r.pinnedKey("bob"), () => r.pinnedKey("carol")].map((f) => {
        try {
          return f();
        } catch (e) {
          return e;
        }
      });
      assertEquals(shown.filter((x) => x instanceof StorageError).length, 1);
    });
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

// ------------------------------------------------------- schema versions and migration

const FIXTURE_V1 = new URL("./fixtures/client/v1.bin", import.meta.url).pathname;
const FIXTURE_V1_PASSWORD = "golden v1 fixture password";

/** A copy of the golden version-1 state in `dir` (opening migrates it). */
function copyFixtureV1(dir: string): string {
  const path = `${dir}/v1.bin`;
  Deno.copyFileSync(FIXTURE_V1, path);
  Deno.copyFileSync(`${FIXTURE_V1}.db`, `${path}.db`);
  return path;
}

function userVersion(dbPath: string): number {
  const db = new DatabaseSync(dbPath);
  try {
    return Number(db.prepare("PRAGMA user_version").get()!.user_version);
  } finally {
    db.close();
  }
}

function tables(dbPath: string): string[] {
  const db = new DatabaseSync(dbPath);
  try {
    return db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").all()
      .map((r) => String(r.name)).filter((n) => !n.startsWith("sqlite_"));
  } finally {
    db.close();
  }
}

const bytesOf = (n: number, f: (i: number) => number) =>
  Uint8Array.from({ length: n }, (_, i) => f(i) & 255);
const filled = (n: number, v: number) => new Uint8Array(n).fill(v);
const CH_A = "a1".repeat(16);
const CH_B = "b2".repeat(16);
const CH_C = "c3".repeat(16);

/** Everything the golden version-1 state holds, as version-2 records. */
function assertFixtureV1Records(r: ClientStore): void {
  const m = r.meta;
  assertEquals(
    [m.username, m.server, m.deviceId, m.sessionExpiresAt],
    ["alice", "localhost:4433", "dev-1", T0 + 3_600_000],
  );
  assertEquals(m.identitySeed, filled(32, 0x11));
  assertEquals(m.identityPublic, filled(32, 0x22));
  assertEquals(m.sessionToken, filled(16, 0x33));
  assertEquals(r.cursor(), 42);
  assertEquals(r.listGroups(), [
    {
      channelId: CH_A,
      state: bytesOf(300, (i) => i * 7 + 1),
      pendingCommit: bytesOf(120, (i) => i * 3),
      lastUpdateMs: T0 + 100_000,
      leaves: ["carol", "dave"],
    },
    { channelId: CH_B, state: bytesOf(200, (i) => i * 13 + 5), lastUpdateMs: 0, leaves: [] },
  ]);
  assertEquals(r.group(CH_C), undefined, "orphan rows of a left group are dropped");
  assertEquals(r.listKeyPackages(), [
    {
      ref: "01".repeat(32),
      suite: "",
      lastResort: false,
      privatePackage: bytesOf(150, (i) => i + 1),
    },
    {
      ref: "02".repeat(32),
      suite: "",
      lastResort: false,
      privatePackage: bytesOf(151, (i) => i + 2),
    },
    {
      ref: "03".repeat(32),
      suite: "",
      lastResort: true,
      privatePackage: bytesOf(152, (i) => i + 3),
    },
  ]);
  assertEquals(r.pinnedKey("bob"), filled(32, 0x44));
  assertEquals(r.pinnedKey("carol"), filled(32, 0x55));
  assertEquals(r.pinnedKey("erin"), undefined);
  assertEquals(r.listConversations(), [
    { id: "self", kind: "self", name: "@alice", createdAt: T0 },
    {
      id: CH_A,
      kind: "group",
      name: "friends",
      channelId: CH_A,
      groupId: filled(16, 0xa1),
      createdAt: T0 + 1,
    },
    { id: CH_B, kind: "dm", name: "@bob", peer: "bob", channelId: CH_B, createdAt: T0 + 2 },
    { id: CH_C, kind: "group", name: "old-group", channelId: CH_C, createdAt: T0 + 3 },
  ]);
  assertEquals(r.history(CH_A, 10), [
    {
      conversationId: CH_A,
      messageId: "m1",
      sender: "bob",
      body: "hello friends",
      sentAt: T0 + 10,
      receivedAt: T0 + 11,
      direction: "in",
    },
    {
      conversationId: CH_A,
      messageId: "m2",
      sender: "alice",
      body: "hi bob",
      sentAt: T0 + 12,
      receivedAt: T0 + 12,
      direction: "out",
      status: "delivered",
    },
  ]);
  assertEquals(r.history(CH_B, 10).map((x) => [x.messageId, x.body, x.status]), [
    ["m3", "psst", "pending"],
  ]);
  assertEquals(r.history("self", 10).map((x) => [x.messageId, x.body, x.status]), [
    ["m4", "note to self", "sent"],
  ]);
  assertEquals(r.listOutbox(), [{
    messageId: "m3",
    conversationId: CH_B,
    request: bytesOf(64, (i) => i * 5 + 3),
    createdAt: T0 + 13,
    attempts: 2,
  }]);
  // version 6: the queued row's conversation is a typed column, read without opening it
  assertEquals(r.outboxCount(), 1);
  assertEquals(r.listOutbox(CH_B).map((e) => e.messageId), ["m3"]);
  assertEquals(r.listOutbox(CH_A), []);
  assert(r.queuedBefore(undefined, CH_B), "m3 waits in @bob's conversation");
  assert(!r.queuedBefore(undefined, CH_A), "nothing of #friends is queued");
  assert(!r.queuedBefore("m3"), "nothing is queued before m3");
}

/**
 * The migrated outbox row of the golden version-1 state: its conversation is the lookup
 * hash its messages carry (@bob's: m3 is its one message), never a plaintext id.
 */
function assertOutboxConversationsV6(dbPath: string): void {
  const db = new DatabaseSync(dbPath);
  try {
    const rows = db.prepare("SELECT conv_h FROM outbox").all();
    assertEquals(rows.length, 1);
    const convH = rows[0]!.conv_h as Uint8Array;
    assertEquals(convH.length, 32, "an HMAC, as messages.conv_h");
    const same = db.prepare("SELECT count(*) AS n FROM messages WHERE conv_h = ?").get(convH);
    assertEquals(Number(same!.n), 1, "the hash of m3's conversation");
    assert(!toHex(convH).includes(CH_B), "not the channel id");
  } finally {
    db.close();
  }
}

Deno.test("ClientStore.open migrates the golden version-1 state to typed records and reopens it", async () => {
  await withDir(async (dir) => {
    const path = copyFixtureV1(dir);
    assertEquals(userVersion(`${path}.db`), 1);
    assert(tables(`${path}.db`).includes("kv"));
    const r = await ClientStore.open(path, FIXTURE_V1_PASSWORD);
    try {
      assertFixtureV1Records(r);
      r.setCursor(43); // and it is writable as version 2
    } finally {
      await r.close();
    }
    assertEquals(userVersion(`${path}.db`), 6);
    assertOutboxConversationsV6(`${path}.db`);
    assertEquals(tables(`${path}.db`), [
      "consent",
      "contacts",
      "conversations",
      "cursor",
      "group_secrets",
      "group_tags",
      "groups",
      "key_packages",
      "messages",
      "outbox",
      "state_meta",
    ]);
    const again = await ClientStore.open(path, FIXTURE_V1_PASSWORD);
    try {
      assertEquals(again.cursor(), 43);
      again.setCursor(42);
      assertFixtureV1Records(again);
    } finally {
      await again.close();
    }
    // A wrong password still changes nothing, on a version-1 file too.
    const fresh = await Deno.makeTempDir({ dir });
    const v1 = copyFixtureV1(fresh);
    const before = snapshot(fresh);
    await assertOpenFails(v1, "wrong");
    assertSnapshot(fresh, before);
    assertEquals(userVersion(`${v1}.db`), 1);
  });
});

const FIXTURE_V2 = new URL("./fixtures/client/v2.bin", import.meta.url).pathname;
const FIXTURE_V2_PASSWORD = "golden v2 fixture password";

Deno.test("ClientStore.open upgrades the golden version-2 state: users with a pinned key are contacts, no conversation is a request", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/v2.bin`;
    Deno.copyFileSync(FIXTURE_V2, path);
    Deno.copyFileSync(`${FIXTURE_V2}.db`, `${path}.db`);
    assertEquals(userVersion(`${path}.db`), 2);
    const check = (r: ClientStore) => {
      assertEquals(r.consent("bob"), "contact");
      assertEquals(r.consent("carol"), "contact");
      assertEquals(r.consent("mallory"), undefined);
      assertEquals(r.listBlocked(), []);
      assertEquals(r.listConversations().map((c) => [c.name, c.requestFrom]), [
        ["#friends", undefined],
        ["@bob", undefined],
      ]);
      assertEquals(r.cursor(), 7);
      assertEquals(r.pinnedKey("bob"), filled(32, 0x44));
      assertEquals(r.history(CH_B, 5).map((m) => m.body), ["hi alice"]);
      assertEquals(r.listGroups().map((g) => g.channelId), [CH_A, CH_B]);
    };
    const r = await ClientStore.open(path, FIXTURE_V2_PASSWORD);
    try {
      check(r);
      r.setConsent("mallory", "blocked"); // and version 3 is writable
    } finally {
      await r.close();
    }
    assertEquals(userVersion(`${path}.db`), 6);
    assert(tables(`${path}.db`).includes("consent"));
    const again = await ClientStore.open(path, FIXTURE_V2_PASSWORD);
    try {
      assertEquals(again.listBlocked(), ["mallory"]);
      again.setConsent("mallory", undefined);
      check(again);
    } finally {
      await again.close();
    }
  });
});

const FIXTURE_V4 = new URL("./fixtures/client/v4.bin", import.meta.url).pathname;
const FIXTURE_V4_PASSWORD = "golden v4 fixture password";
const MLS_FIXTURES = new URL("./fixtures/mls/", import.meta.url);

Deno.test("ClientStore.open upgrades the golden version-4 state: its whole MLS state is read, split at its first save, and the group keeps talking", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/v4.bin`;
    Deno.copyFileSync(FIXTURE_V4, path);
    Deno.copyFileSync(`${FIXTURE_V4}.db`, `${path}.db`);
    assertEquals(userVersion(`${path}.db`), 4);
    const mls = (n: string) => Deno.readFileSync(new URL(n, MLS_FIXTURES));
    let alice = decodeGroupState(mls("xwing_alice.state"));
    const receive = async (groups: GroupStates, payload: Uint8Array, text: string) => {
      const meta = groups.meta(CH_A)!;
      const r = await processMessage(groups.open(meta), payload);
      assert(r.kind === "application");
      assertEquals(fromUtf8(r.plaintext), text);
      groups.save(meta, r.state);
    };
    const r = await ClientStore.open(path, FIXTURE_V4_PASSWORD);
    try {
      assertEquals(userVersion(`${path}.db`), 6, "upgraded at open, in one step");
      assert(tables(`${path}.db`).includes("group_secrets"));
      assert(r.groupMeta(CH_A)!.stateTag.length > 0, "the state tag moved to group_tags");
      assertEquals(r.cursor(), 3);
      assertEquals(r.consent("alice"), "contact");
      assertEquals(r.group(CH_A)!.state, mls("xwing_bob.state"), "the state is kept as it was");
      assertEquals(r.groupMeta(CH_A)!.summary?.members, ["alice", "bob"]);
      // alice's golden message, sent before the fixture's state was stored
      await receive(
        new GroupStates(r),
        mls("xwing_message_alice.bin"),
        "stored by an older qpq build",
      );
      const split = r.group(CH_A)!;
      assertEquals(split.state[4], 2, "the first save writes the split form");
      assert((split.secrets?.length ?? 0) > 0);
    } finally {
      await r.close();
    }
    for (const text of ["after the upgrade", "and again"]) {
      const again = await ClientStore.open(path, FIXTURE_V4_PASSWORD);
      try {
        const before = again.group(CH_A)!;
        const sent = await encryptMessage(alice, utf8(text));
        alice = sent.state;
        const groups = new GroupStates(again);
        const written = again.bytesWritten;
        await receive(groups, sent.outbound, text);
        assertEquals(groups.decodes, 1, "decoded from the split form");
        assert(again.bytesWritten - written < 1024, "one ratchet written, not the state");
        const after = again.group(CH_A)!;
        assertEquals(after.state, before.state, "the state's bytes are unchanged");
        const changed = after.secrets!.filter((x, i) =>
          toHex(x.value) !== toHex(before.secrets![i]!.value)
        );
        assertEquals(changed.length, 1, "alice's ratchet alone moved");
      } finally {
        await again.close();
      }
    }
  });
});

Deno.test("ClientStore group secrets are sealed to their row: moved to another node, epoch or group, they do not open", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const sec = (epoch: number, node: number) => ({
      epoch,
      node,
      value: filled(64, epoch * 16 + node),
    });
    const s = await create(path);
    s.putGroup({
      channelId: "a",
      state: utf8("a"),
      lastUpdateMs: 0,
      leaves: [],
      secrets: [sec(1, 0), sec(1, 1), sec(2, 0)],
    });
    s.putGroup({ channelId: "b", state: utf8("b"), lastUpdateMs: 0, leaves: [], secrets: [] });
    await s.close();
    const raw = new DatabaseSync(`${path}.db`);
    const rows = raw.prepare("SELECT rowid, group_h, slot_h, epoch_h, data FROM group_secrets")
      .all();
    assertEquals(rows.length, 3);
    const plain = Deno.readFileSync(`${path}.db`);
    assert(!toHex(plain).includes(toHex(filled(64, 17))), "no secret in the clear");
    const before = Deno.readFileSync(`${path}.db`);
    const idB = raw.prepare("SELECT id_h FROM groups WHERE id_h != ?").get(rows[0]!.group_h!)!
      .id_h!;
    raw.close();
    const tampered = async (sql: string, args: SQLInputValue[], group: string) => {
      Deno.writeFileSync(`${path}.db`, before);
      const db = new DatabaseSync(`${path}.db`);
      db.prepare(sql).run(...args);
      db.close();
      const r = await ClientStore.open(path, PASSWORD);
      try {
        assertThrows(() => r.group(group), StorageError, "cannot be decrypted");
      } finally {
        await r.close();
      }
    };
    const [e1n0, e1n1, e2n0] = rows.sort((x, y) => Number(x.rowid) - Number(y.rowid));
    const swap = "UPDATE group_secrets SET data = ? WHERE rowid = ?";
    await tampered(swap, [e1n1!.data!, e1n0!.rowid!], "a"); // another node's
    await tampered(swap, [e2n0!.data!, e1n0!.rowid!], "a"); // another epoch's
    await tampered("UPDATE group_secrets SET group_h = ? WHERE rowid = ?", [
      idB,
      e1n0!.rowid!,
    ], "b"); // another group's
  });
});

Deno.test("ClientStore.open leaves a version-1 database unchanged when its migration fails", async () => {
  await withDir(async (dir) => {
    const path = copyFixtureV1(dir);
    // A foreign key on a kv row makes the last step (DROP TABLE kv) fail, after every
    // record has been written: the whole upgrade must roll back.
    const raw = new DatabaseSync(`${path}.db`);
    raw.exec("CREATE TABLE anchor (k BLOB REFERENCES kv (k_h)) STRICT");
    raw.exec("INSERT INTO anchor SELECT k_h FROM kv LIMIT 1");
    const kvRows = Number(raw.prepare("SELECT count(*) AS n FROM kv").get()!.n);
    raw.close();
    const before = Deno.readFileSync(`${path}.db`);
    const e = await assertRejects(() => ClientStore.open(path, FIXTURE_V1_PASSWORD), StorageError);
    assertEquals(e.message, "Cannot upgrade local state to schema version 2");
    assertEquals(Deno.readFileSync(`${path}.db`), before);
    assertEquals(userVersion(`${path}.db`), 1);
    assertEquals(tables(`${path}.db`), [
      "anchor",
      "conversations",
      "kv",
      "messages",
      "outbox",
      "state_meta",
    ]);
    assertEquals(names(dir), ["v1.bin", "v1.bin.db"], "lock released, no side files left");
    const check = new DatabaseSync(`${path}.db`);
    assertEquals(Number(check.prepare("SELECT count(*) AS n FROM kv").get()!.n), kvRows);
    check.exec("DROP TABLE anchor");
    check.close();
    const r = await ClientStore.open(path, FIXTURE_V1_PASSWORD);
    try {
      assertFixtureV1Records(r);
    } finally {
      await r.close();
    }
  });
});

Deno.test("ClientStore.open refuses a database newer than this build with one line and changes nothing", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    await (await create(path)).close();
    const raw = new DatabaseSync(`${path}.db`);
    raw.exec("PRAGMA user_version = 7");
    raw.close();
    const before = snapshot(dir);
    const e = await assertRejects(() => ClientStore.open(path, PASSWORD), StorageError);
    assertEquals(
      e.message,
      "Cannot open state: its database has schema version 7, newer than this qpq reads (6); " +
        "update qpq",
    );
    assertSnapshot(dir, before);
    assert(!(await exists(`${path}.lock`)));
    // Version 0 (not a qpq database) is damage, with the one damaged-state message.
    const raw0 = new DatabaseSync(`${path}.db`);
    raw0.exec("PRAGMA user_version = 0");
    raw0.close();
    await assertOpenFails(path);
  });
});

Deno.test("ClientStore.putGroupSecrets writes the secret rows alone: the state's tag moves in memory, its row is not rewritten", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.bin`;
    const sec = (node: number, v: number) => ({ epoch: 1, node, value: filled(40, v) });
    const s = await create(path);
    const rowTag = () => {
      const db = new DatabaseSync(`${path}.db`, { readOnly: true });
      try {
        return db.prepare("SELECT tag FROM group_tags").all().map((r) => r.tag);
      } finally {
        db.close();
      }
    };
    let tag: string;
    try {
      const t1 = s.putGroup({
        channelId: "a",
        state: utf8("a"),
        lastUpdateMs: 0,
        leaves: [],
        secrets: [sec(0, 1)],
      });
      assertEquals(rowTag(), [t1]);
      const before = s.bytesWritten;
      const t2 = s.putGroupSecrets("a", t1, { put: [sec(0, 2)] })!;
      const t3 = s.putGroupSecrets("a", t2, { put: [sec(1, 3)] })!;
      assert(t2 !== t1 && t3 !== t2 && t3 !== t1);
      assertEquals(s.groupMeta("a")!.stateTag, t3);
      assertEquals(s.listGroupMeta().map((m) => m.stateTag), [t3]);
      assertEquals(rowTag(), [t1], "the tag row stays as written by putGroup");
      // two sealed secret rows and their keys, nothing more
      assert(s.bytesWritten - before < 2 * 200, `${s.bytesWritten - before} bytes`);
      // the old tags are refused, as a written tag would be
      assertEquals(s.putGroupSecrets("a", t1, { put: [] }), undefined);
      assertEquals(s.putGroupSecrets("a", t2, { put: [] }), undefined);
      // a whole state written again: a new row tag, the memory one gone
      tag = s.putGroup({ channelId: "a", state: utf8("b"), lastUpdateMs: 0, leaves: [] });
      assertEquals(rowTag(), [tag]);
      assertEquals(s.groupMeta("a")!.stateTag, tag);
      assertEquals(s.putGroupSecrets("a", t3, { put: [] }), undefined);
      assert(s.putGroupSecrets("a", tag, { put: [sec(0, 4)] }) !== undefined);
    } finally {
      await s.close();
    }
    const r = await ClientStore.open(path, PASSWORD);
    try {
      assertEquals(r.group("a")?.secrets, [sec(0, 4)], "the secrets are on disk");
      assertEquals(r.groupMeta("a")!.stateTag, tag, "a new handle: the row's tag");
    } finally {
      await r.close();
    }
  });
});
