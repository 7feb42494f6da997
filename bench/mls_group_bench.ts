/**
 * MLS group costs at scale (X-Wing suite): add one member to a group of N and join from
 * the resulting Welcome, for N = 10, 100, 1,000 and 10,000, plus loading
 * and saving the group state. Each group pairs the raw ts-mls call (baseline) with qpq's
 * wrapper, which adds KeyPackage verification, policy checks and encodings.
 *
 * Big groups are built once (commits of 1,000 adds; ts-mls cannot encode a commit with
 * ~10,000 proposals) and cached as encoded group states under the system temp directory
 * (`<tmp>/qpq-mls-bench-cache/`), keyed by size and state version; delete that folder to
 * rebuild. The 10,000-member group takes about 15 minutes to build on 2 cores, so it is
 * benched only when already cached or when QPQ_BENCH_MLS_10K=1 (QPQ_BENCH_MLS_10K=0
 * skips it even when cached).
 *
 * Targets: add at 1,000 members <= 100 ms; join at 10,000 members <= 1 s.
 *
 *   deno bench --allow-read --allow-write --allow-env bench/mls_group_bench.ts
 */

import { ed25519 } from "@noble/curves/ed25519.js";
import * as mls from "ts-mls";
import { decodeRatchetTree } from "ts-mls/ratchetTree.js";
import {
  addMembers,
  createGroup,
  createKeyPackage,
  decodeGroupState,
  encodeGroupState,
  GROUP_STATE_VERSION,
  joinFromWelcome,
  mergePendingCommit,
  type MlsGroupState,
  type SignatureKeyPair,
} from "../src/mls/mod.ts";
import { CLIENT_CONFIG, unwrapState } from "../src/mls/_state.ts";
import { decodePrivatePackage } from "../src/mls/key_package.ts";
import { DEFAULT_SUITE, getCiphersuite } from "../src/mls/provider.ts";

const SUITE = DEFAULT_SUITE;
const BUILD_BATCH = 1000;

function identity(): SignatureKeyPair {
  const privateKey = ed25519.utils.randomSecretKey();
  return { privateKey, publicKey: ed25519.getPublicKey(privateKey) };
}

/** `<system temp dir>/qpq-mls-bench-cache`, found through Deno.makeTempDir. */
async function cacheDir(): Promise<string> {
  const probe = await Deno.makeTempDir({ prefix: "qpq-mls-probe-" });
  await Deno.remove(probe);
  const root = probe.slice(0, Math.max(probe.lastIndexOf("/"), probe.lastIndexOf("\\")));
  const dir = `${root}/qpq-mls-bench-cache`;
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** A group of `n` members as seen by its creator, built once and cached. */
async function group(n: number): Promise<MlsGroupState> {
  const path = `${await cacheDir()}/xwing-${n}-v${GROUP_STATE_VERSION}.state`;
  try {
    return decodeGroupState(await Deno.readFile(path));
  } catch {
    // not cached yet (or stale): build below
  }
  const started = performance.now();
  const creator = identity();
  const g = await createGroup({
    groupId: crypto.getRandomValues(new Uint8Array(16)),
    username: "member-0",
    identity: creator,
    suite: SUITE,
  });
  const kps: Uint8Array[] = [];
  for (let i = 1; i < n; i++) {
    const kp = await createKeyPackage({
      username: `member-${i}`,
      identity: identity(),
      suite: SUITE,
      lifetimeSeconds: 30 * 24 * 3600,
    });
    kps.push(kp.publicPackage);
  }
  // One commit per batch: ts-mls cannot encode a commit with ~10,000 proposals.
  let state = g;
  for (let i = 0; i < kps.length; i += BUILD_BATCH) {
    const staged = await addMembers(state, kps.slice(i, i + BUILD_BATCH), {
      ratchetTreeInWelcome: false,
    });
    state = mergePendingCommit(staged.state).state;
    console.error(`building ${n}: ${Math.min(i + BUILD_BATCH, kps.length) + 1} members`);
  }
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeFile(tmp, encodeGroupState(state));
  await Deno.rename(tmp, path);
  console.error(
    `built ${n}-member group in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  return state;
}

const tenK = `${await cacheDir()}/xwing-10000-v${GROUP_STATE_VERSION}.state`;
const WITH_10K = Deno.env.get("QPQ_BENCH_MLS_10K") === "1" ||
  (Deno.env.get("QPQ_BENCH_MLS_10K") !== "0" &&
    await Deno.stat(tenK).then(() => true, () => false));
const sizes = [10, 100, 1000, ...(WITH_10K ? [10_000] : [])];
const cs = await getCiphersuite(SUITE);

for (const n of sizes) {
  const state = await group(n);
  const inner = unwrapState(state).current;
  const joiner = identity();
  const kp = await createKeyPackage({
    username: "joiner",
    identity: joiner,
    suite: SUITE,
    lifetimeSeconds: 24 * 3600,
  });
  const rawKp = mls.decodeMlsMessage(kp.publicPackage, 0)![0];
  if (rawKp.wireformat !== "mls_key_package") throw new Error("bad KeyPackage");
  const staged = await addMembers(state, [kp.publicPackage], { ratchetTreeInWelcome: false });
  const welcomeBytes = staged.outbound.welcome!;
  const treeBytes = staged.outbound.ratchetTree!;
  const rawWelcome = mls.decodeMlsMessage(welcomeBytes, 0)![0];
  if (rawWelcome.wireformat !== "mls_welcome") throw new Error("bad Welcome");
  const priv = decodePrivatePackage(kp.privatePackage);
  const few = n >= 1000 ? { n: n >= 10_000 ? 3 : 10, warmup: 1 } : {};

  {
    Deno.bench({
      name: `ts-mls createCommit adding 1 to ${n}`,
      group: `add 1 member to ${n}`,
      baseline: true,
      ...few,
      async fn() {
        await mls.createCommit({ state: inner, cipherSuite: cs }, {
          extraProposals: [{ proposalType: "add", add: { keyPackage: rawKp.keyPackage } }],
        });
      },
    });
    Deno.bench({
      name: `qpq addMembers adding 1 to ${n}`,
      group: `add 1 member to ${n}`,
      ...few,
      async fn() {
        await addMembers(state, [kp.publicPackage], { ratchetTreeInWelcome: false });
      },
    });
  }

  Deno.bench({
    name: `ts-mls joinGroup into ${n + 1}`,
    group: `join a group of ${n + 1}`,
    baseline: true,
    ...few,
    async fn() {
      await mls.joinGroup(
        rawWelcome.welcome,
        priv.keyPackage,
        {
          initPrivateKey: priv.initPrivateKey,
          hpkePrivateKey: priv.hpkePrivateKey,
          signaturePrivateKey: joiner.privateKey,
        },
        mls.emptyPskIndex,
        cs,
        decodeRatchetTree(treeBytes, 0)![0],
        undefined,
        CLIENT_CONFIG,
      );
    },
  });
  Deno.bench({
    name: `qpq joinFromWelcome into ${n + 1}`,
    group: `join a group of ${n + 1}`,
    ...few,
    async fn() {
      await joinFromWelcome(welcomeBytes, [kp.privatePackage], joiner, {
        ratchetTree: treeBytes,
      });
    },
  });

  const stored = encodeGroupState(state);
  let rawStored: Uint8Array | undefined;
  try {
    rawStored = mls.encodeGroupState(inner);
  } catch {
    // ts-mls's own state encoder overflows the stack for trees this large.
    console.error(`ts-mls encodeGroupState fails at ${n} members: no load/save baseline`);
  }
  if (rawStored === undefined) continue;
  const raw = rawStored;
  Deno.bench({
    name: `ts-mls decodeGroupState (${n}, ${(raw.length / 1024).toFixed(0)} KiB)`,
    group: `load state of ${n}`,
    baseline: true,
    ...few,
    fn() {
      mls.decodeGroupState(raw, 0);
    },
  });
  Deno.bench({
    name: `qpq decodeGroupState (${n}, ${(stored.length / 1024).toFixed(0)} KiB)`,
    group: `load state of ${n}`,
    ...few,
    fn() {
      decodeGroupState(stored);
    },
  });
  Deno.bench({
    name: `ts-mls encodeGroupState (${n})`,
    group: `save state of ${n}`,
    baseline: true,
    ...few,
    fn() {
      mls.encodeGroupState(inner);
    },
  });
  Deno.bench({
    name: `qpq encodeGroupState (${n})`,
    group: `save state of ${n}`,
    ...few,
    fn() {
      encodeGroupState(state);
    },
  });
}
