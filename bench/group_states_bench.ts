/**
 * Receiving one application message on the client, without the network: what the inbox
 * does for each one (`GroupStates.open` from memory, `processMessage`, then one
 * transaction storing the new state and the cursor in a real client store: SQLite file,
 * WAL, synchronous = FULL), in a group of 2 (baseline), 100 and 1,000 (X-Wing suite). The
 * sender encrypts outside the timed part. After the run it prints the bytes the store wrote
 * per message (`ClientStore.bytesWritten`: every value handed to a writing statement).
 *
 *   deno bench --allow-read --allow-write --allow-env bench/group_states_bench.ts
 *
 * QPQ_BENCH_SIZES=2,100 picks the sizes (building the 1,000-member group takes about a
 * minute: 999 X-Wing KeyPackages, one commit, one join).
 *
 * Goals (issue 19): receiving in a group of 1,000 costs at most 2× receiving in a group of
 * 2; at most 4 KiB written per received message whatever the group size.
 *
 * Before / after, one run each back to back on the shared 2-core machine (a97eab3: each
 * state saved whole; f74360a: the ratchet it moved), this file in both trees:
 *
 * | group of | a97eab3: time, written    | f74360a: time, written |
 * | -------- | ------------------------- | ---------------------- |
 * | 2        | 11.4 ms, 4.37 KiB         | 8.1 ms, 0.40 KiB       |
 * | 100      | 25.3 ms (2.2×), 172.9 KiB | 4.3 ms (0.5×), 0.40 KiB |
 * | 1,000    | 140.0 ms (12.2×), 1,645.6 KiB | 10.3 ms (1.27×), 0.40 KiB |
 *
 * What remains per message is mostly the fsync of the one transaction (min 0.8–1.5 ms,
 * the averages are the shared disk's noise) and `processMessage`.
 *
 * @module
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { GroupStates } from "../src/client/group_states.ts";
import {
  addMembers,
  createGroup,
  createKeyPackage,
  encryptMessage,
  joinFromWelcome,
  mergePendingCommit,
  type MlsGroupState,
  processMessage,
  type SignatureKeyPair,
} from "../src/mls/mod.ts";
import { DEFAULT_SUITE } from "../src/mls/provider.ts";
import { ClientStore } from "../src/store/client/mod.ts";
import { DEFAULT_ARGON2ID_PARAMS } from "../src/crypto/mod.ts";
import { toHex } from "../src/bytes.ts";

const SIZES = (Deno.env.get("QPQ_BENCH_SIZES") ?? "2,100,1000").split(",").map(Number);
const FAST_KDF = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 };
const dir = await Deno.makeTempDir({ prefix: "qpq-group-states-bench-" });

function identity(): SignatureKeyPair {
  const privateKey = ed25519.utils.randomSecretKey();
  return { privateKey, publicKey: ed25519.getPublicKey(privateKey) };
}

/** A group of `n`: the creator's state (the sender) and member 1's (the recipient). */
async function build(n: number): Promise<{ sender: MlsGroupState; recipient: MlsGroupState }> {
  const t0 = performance.now();
  const creator = await createGroup({
    groupId: crypto.getRandomValues(new Uint8Array(16)),
    username: "member-0",
    identity: identity(),
    suite: DEFAULT_SUITE,
  });
  const kps = [];
  const joiner = identity();
  for (let i = 1; i < n; i++) {
    kps.push(
      await createKeyPackage({
        username: `member-${i}`,
        identity: i === 1 ? joiner : identity(),
        suite: DEFAULT_SUITE,
        lifetimeSeconds: 30 * 24 * 3600,
      }),
    );
  }
  const staged = await addMembers(creator, kps.map((k) => k.publicPackage));
  const sender = mergePendingCommit(staged.state).state;
  const joined = await joinFromWelcome(
    staged.outbound.welcome!,
    [kps[0]!.privatePackage],
    joiner,
    staged.outbound.ratchetTree === undefined ? {} : { ratchetTree: staged.outbound.ratchetTree },
  );
  console.error(`built the ${n}-member group in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { sender, recipient: joined.state };
}

const written = new Map<number, { n: number; bytes: number }>();

for (const n of SIZES) {
  let { sender, recipient } = await build(n);
  const store = await ClientStore.open(`${dir}/member-${n}.bin`, "pw", {
    create: true,
    kdf: FAST_KDF,
    initialMeta: {
      username: "member-1",
      server: "localhost:4433",
      identitySeed: identity().privateKey,
      identityPublic: identity().publicKey,
    },
  });
  const groups = new GroupStates(store);
  const channelId = toHex(crypto.getRandomValues(new Uint8Array(16)));
  groups.save({ channelId, lastUpdateMs: 0, leaves: [] }, recipient);
  recipient = undefined as unknown as MlsGroupState; // from now on, GroupStates holds it
  let seq = 0;
  const tally = { n: 0, bytes: 0 };
  written.set(n, tally);

  Deno.bench({
    name: `${n}-member group: receive one application message${
      n === SIZES[0] ? " (baseline)" : ""
    }`,
    group: "receive one (client, no network)",
    baseline: n === SIZES[0],
    async fn(b) {
      const enc = await encryptMessage(sender, new TextEncoder().encode(`message ${seq}`));
      sender = enc.state;
      const before = store.bytesWritten;
      b.start();
      const meta = groups.meta(channelId)!;
      const r = await processMessage(groups.open(meta), enc.outbound);
      if (r.kind !== "application") throw new Error("not an application message");
      store.transaction(() => {
        groups.save(meta, r.state);
        store.setCursor(++seq);
      });
      b.end();
      tally.n++;
      tally.bytes += store.bytesWritten - before;
    },
  });
}

globalThis.addEventListener("unload", () => {
  for (const [n, t] of written) {
    if (t.n === 0) continue;
    console.error(
      `bytes written per received message, ${n}-member group: ` +
        `${(t.bytes / t.n / 1024).toFixed(2)} KiB (${t.n} messages)`,
    );
  }
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* best effort */ }
});
