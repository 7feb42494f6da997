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
 * state saved whole; 2ee9be8: the ratchet it moved, the tag in its own table), this file in
 * both trees, `deno bench --allow-read --allow-write --allow-env bench/group_states_bench.ts`:
 *
 * | group of | a97eab3: avg (min), written          | 2ee9be8: avg (min), written |
 * | -------- | ------------------------------------ | --------------------------- |
 * | 2        | 8.2 ms (1.3 ms), 4.37 KiB            | 5.3 ms (1.3 ms), 0.40 KiB   |
 * | 100      | 20.5 ms (9.3 ms), 2.5×, 172.9 KiB    | 7.1 ms (1.0 ms), 1.33×, 0.40 KiB |
 * | 1,000    | 154.5 ms (75.4 ms), 18.8×, 1,645.6 KiB | 9.5 ms (1.5 ms), 1.78×, 0.40 KiB |
 *
 * (An earlier run of f74360a, the tag still in the groups row: 8.1 / 4.3 / 10.3 ms.)
 * Split by hand (100 messages, 2 vs 1,000 members): processMessage 0.4–0.6 ms in both,
 * GroupStates.save 0.3–0.6 ms in both (1.3 ms at 1,000 while the tag was in the state's
 * row), reading the small record 0.2 vs 0.5–0.7 ms (its summary lists every member: the
 * one part still growing with the group), and the transaction's COMMIT, an fsync of 1 to
 * 10 ms on this shared disk, which is most of every figure above.
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
