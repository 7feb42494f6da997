/**
 * Record the wire frames of a real session into tests/fixtures/frames/, the seed corpus of
 * the fuzz harness (tests/fuzz_test.ts, scripts/fuzz.ts): one `<name>.frame` file each,
 * the Cap'n Proto frame without its length prefix.
 *
 * A real server runs on loopback; alice and bob talk to it over real QUIC streams through
 * the real RpcClient, with a tap on each stream that keeps the first frame of every kind
 * in each direction. Contents are real: OPAQUE messages, MLS KeyPackages, a commit with its
 * Welcome, an application message (its plaintext a message `Content`), session tokens.
 *
 * ```
 * alice: ping health registerStart registerFinish loginStart loginFinish publishIdentityKey
 *        uploadKeyPackages (both suites) countKeyPackages countKeyPackagesForSuite
 *        fetchIdentityKey fetchKeyPackage (X-Wing) createGroup
 *        commit(add bob + Welcome) enqueue(MLS application) createDm listChannels
 *        listChannelsPage answerInvitation members
 *        block unblock changePasswordStart changePasswordFinish logoutEverywhere
 * bob:   register, login, upload, subscribe (push), fetch, ack, resume, logout
 * ```
 *
 * Variants of a kind are named `<kind>+<variant>`: `push+notice` is built from bob's push
 * (a server notice, `serverNotice` set).
 *
 * Usage: `deno run --unstable-net --allow-net=127.0.0.1,localhost --allow-read --allow-write
 * --allow-env --allow-sys=hostname scripts/record_frames.ts [outDir]`
 *
 * @module
 */
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
} from "../src/auth/mod.ts";
import { IdentityKeyPair } from "../src/crypto/mod.ts";
import {
  addMembers,
  createGroup,
  createKeyPackage,
  DEFAULT_SUITE,
  encryptMessage,
  mergePendingCommit,
  type MlsSuiteName,
  SUITE_IDS,
} from "../src/mls/mod.ts";
import { connectQuic, parseHostPort } from "../src/transport/quic.ts";
import {
  CONTENT_VERSION,
  encodeContent,
  encodeFrame,
  FrameReader,
  NOTICE_KEY_PACKAGES,
  openFrame,
  type Push,
  type Request,
  RpcClient,
} from "../src/wire/mod.ts";
import { randomBytes, utf8 } from "../src/bytes.ts";
import { startTestServer } from "../tests/_support/server.ts";

const X25519: MlsSuiteName = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

/** Frames kept per file name (`request_<kind>`, `response_<kind>`, `push`). */
type Recording = Map<string, Uint8Array>;

function keep(rec: Recording, bytes: Uint8Array): void {
  const f = openFrame(bytes).decode();
  const name = f.type === "request"
    ? `request_${f.request.kind}`
    : f.type === "response"
    ? `response_${f.response.kind}`
    : "push";
  if (!rec.has(name)) rec.set(name, bytes.slice());
}

/** Open a tapped RPC stream: every frame written or read is offered to `rec`. */
async function tappedClient(addr: string, certPem: string, rec: Recording) {
  const { port } = parseHostPort(addr);
  const conn = await connectQuic({
    hostname: "127.0.0.1",
    port,
    caCertPem: certPem,
    serverName: "localhost",
  });
  const stream = await conn.createBidirectionalStream();
  const [toRpc, toTap] = stream.readable.tee();
  const tapIn = (async () => {
    const r = new FrameReader(toTap);
    for (let f = await r.next(); f !== null; f = await r.next()) keep(rec, f);
  })().catch(() => {});
  const out = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, c) {
      keep(rec, chunk.subarray(4)); // FrameWriter writes one length-prefixed frame per chunk
      c.enqueue(chunk);
    },
  });
  const piped = out.readable.pipeTo(stream.writable).catch(() => {});
  const pushes: Push[] = [];
  const rpc = new RpcClient({ readable: toRpc, writable: out.writable }, {
    onPush: (p) => pushes.push(p),
  });
  return {
    rpc,
    pushes,
    async close() {
      await rpc.close();
      await piped;
      await tapIn;
      conn.close({ closeCode: 0, reason: "bye" });
    },
  };
}

type Tapped = Awaited<ReturnType<typeof tappedClient>>;

async function registerAndLogin(c: Tapped, username: string, password: string) {
  const identity = IdentityKeyPair.generate();
  const reg = await clientRegistrationStart(password);
  const started = await c.rpc.call(
    { kind: "registerStart", username, request: reg.request, authToken: "devtoken" },
    "registerStarted",
  );
  const fin = await clientRegistrationFinish(reg.state, password, started.data);
  await c.rpc.call({
    kind: "registerFinish",
    username,
    record: fin.record,
    authToken: "devtoken",
    identityKey: identity.publicKey,
  }, "ok");
  const login = await clientLoginStart(password);
  const ls = await c.rpc.call(
    { kind: "loginStart", username, request: login.request },
    "loginStarted",
  );
  const lf = await clientLoginFinish(login.state, password, ls.response);
  if (lf.kind !== "ok") throw lf.error;
  const session = await c.rpc.call(
    { kind: "loginFinish", username, finish: lf.finishRequest, loginId: ls.loginId },
    "session",
  );
  const signer = { publicKey: identity.publicKey, privateKey: identity.exportPrivateKey() };
  const kps = [];
  const lifetimeSeconds = 89 * 86400;
  for (let i = 0; i < 2; i++) {
    kps.push(await createKeyPackage({ username, identity: signer, lifetimeSeconds }));
  }
  // one package of the second suite, and a last resort per suite (the v1.0 field and the list)
  kps.push(await createKeyPackage({ username, identity: signer, lifetimeSeconds, suite: X25519 }));
  const lastResort = await createKeyPackage({
    username,
    identity: signer,
    lifetimeSeconds,
    lastResort: true,
  });
  const lastResortX25519 = await createKeyPackage({
    username,
    identity: signer,
    lifetimeSeconds,
    lastResort: true,
    suite: X25519,
  });
  await c.rpc.call({
    kind: "uploadKeyPackages",
    packages: kps.map((k) => ({ data: k.publicPackage })),
    lastResort: lastResort.publicPackage,
    lastResorts: [{ data: lastResortX25519.publicPackage }],
  }, "keyPackageCount");
  return { identity, signer, token: session.token, kps };
}

/** A password change (a fresh login proof, then a new OPAQUE registration). */
async function changePassword(c: Tapped, username: string, current: string, next: string) {
  const login = await clientLoginStart(current);
  const ls = await c.rpc.call(
    { kind: "loginStart", username, request: login.request },
    "loginStarted",
  );
  const lf = await clientLoginFinish(login.state, current, ls.response);
  if (lf.kind !== "ok") throw lf.error;
  const reg = await clientRegistrationStart(next);
  const started = await c.rpc.call({
    kind: "changePasswordStart",
    loginId: ls.loginId,
    finish: lf.finishRequest,
    request: reg.request,
  }, "passwordChangeStarted");
  const fin = await clientRegistrationFinish(reg.state, next, started.response);
  await c.rpc.call(
    { kind: "changePasswordFinish", changeId: started.changeId, record: fin.record },
    "passwordChanged",
  );
}

/** Run the session and return the recorded frames by name. */
export async function recordSession(): Promise<Recording> {
  const rec: Recording = new Map();
  const srv = await startTestServer();
  try {
    const a = await tappedClient(srv.addr, srv.certPem, rec);
    const b = await tappedClient(srv.addr, srv.certPem, rec);
    await a.rpc.call({ kind: "ping", clientTimeMs: Date.now(), payload: utf8("hi") }, "pong");
    await a.rpc.call({ kind: "health" }, "health");
    const alice = await registerAndLogin(a, "alice", "correct horse alice");
    const bob = await registerAndLogin(b, "bob", "correct horse bob");
    await a.rpc.call({ kind: "publishIdentityKey", key: alice.identity.publicKey }, "ok");
    await a.rpc.call({ kind: "countKeyPackages" }, "keyPackageCount");
    await a.rpc.call(
      { kind: "countKeyPackagesForSuite", cipherSuite: SUITE_IDS[X25519] },
      "keyPackageCount",
    );
    await a.rpc.call({ kind: "fetchIdentityKey", username: "bob" }, "identityKey");
    const bobKp = await a.rpc.call(
      { kind: "fetchKeyPackage", username: "bob", cipherSuite: SUITE_IDS[DEFAULT_SUITE] },
      "keyPackage",
    );
    const channel = await a.rpc.call({ kind: "createGroup", name: "team" }, "channel");
    const group = await createGroup({
      groupId: channel.channelId,
      username: "alice",
      identity: alice.signer,
    });
    const staged = await addMembers(group, [bobKp.data]);
    await a.rpc.call(
      {
        kind: "commit",
        channelId: channel.channelId,
        epoch: 0,
        messageId: randomBytes(16),
        payload: staged.outbound.commit,
        add: ["bob"],
        remove: [],
        // both Welcome forms: the per-user list and one Welcome for a list of users
        welcomes: [{ username: "bob", payload: staged.outbound.welcome! }],
        welcome: staged.outbound.welcome!,
        welcomeFor: ["bob"],
      } as Request,
      "committed",
    );
    const merged = mergePendingCommit(staged.state);
    const content = encodeContent({
      version: CONTENT_VERSION,
      messageId: randomBytes(16),
      sentAtMs: Date.now(),
      body: { kind: "text", text: "hello bob" },
    });
    const msg = await encryptMessage(merged.state, content);
    // bob subscribes before alice sends, so the application message also arrives as a push
    await b.rpc.call({ kind: "subscribe", afterSeq: 0 }, "ok");
    await a.rpc.call({
      kind: "enqueue",
      channelId: channel.channelId,
      messageId: randomBytes(16),
      payload: msg.outbound,
      messageKind: "application",
      epoch: 1,
      recipients: [],
    }, "enqueued");
    await a.rpc.call({ kind: "createDm", username: "bob" }, "channel");
    await a.rpc.call({ kind: "listChannels" }, "channels");
    await a.rpc.call(
      { kind: "listChannelsPage", after: new Uint8Array(0), held: false },
      "channels",
    );
    // no invitation of alice's is held: the request is recorded, its answer is `not_found`
    await a.rpc.call(
      { kind: "answerInvitation", channelId: channel.channelId, accept: false },
      "ok",
    ).catch(() => {});
    await a.rpc.call({ kind: "members", channelId: channel.channelId }, "memberList");
    await a.rpc.call({ kind: "block", username: "bob" }, "ok");
    await a.rpc.call({ kind: "unblock", username: "bob" }, "unblocked");
    for (let i = 0; i < 50 && b.pushes.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const page = await b.rpc.call({ kind: "fetch", afterSeq: 0, limit: 100 }, "messages");
    const last = page.messages[page.messages.length - 1];
    await b.rpc.call({ kind: "ack", uptoSeq: last?.seq ?? 0 }, "ok");
    await b.rpc.call({ kind: "resume", token: bob.token }, "session");
    // an error response: members of a channel id that does not exist
    await b.rpc.call({ kind: "members", channelId: randomBytes(16) }, "memberList").catch(() => {});
    await b.rpc.call({ kind: "logout" }, "ok");
    await changePassword(a, "alice", "correct horse alice", "alice's new password");
    await a.rpc.call({ kind: "logoutEverywhere" }, "loggedOut");
    await a.close();
    await b.close();
    // a server notice as a push (built, not recorded: draining KeyPackages takes minutes)
    const push = b.pushes[0]!;
    const notice = {
      ...push.messages[0]!,
      channelId: new Uint8Array(0),
      sender: "bob",
      payload: new Uint8Array(0),
      messageKind: "application" as const,
      serverNotice: NOTICE_KEY_PACKAGES,
    };
    rec.set(
      "push+notice",
      encodeFrame({ version: 1, requestId: 3, type: "push", push: { messages: [notice] } }),
    );
    return rec;
  } finally {
    await srv.close();
  }
}

if (import.meta.main) {
  const out = Deno.args[0] ?? new URL("../tests/fixtures/frames/", import.meta.url).pathname;
  await Deno.mkdir(out, { recursive: true });
  const rec = await recordSession();
  let total = 0;
  for (const [name, bytes] of [...rec].sort(([x], [y]) => x.localeCompare(y))) {
    await Deno.writeFile(`${out}/${name}.frame`, bytes);
    total += bytes.length;
  }
  console.log(`${rec.size} frames, ${total} bytes -> ${out}`);
}
