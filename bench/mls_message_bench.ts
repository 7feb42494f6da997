/**
 * MLS application message speed: one encrypt (createApplicationMessage) plus one decrypt
 * (processPrivateMessage) of a 100-byte message between two members, on ts-mls 1.6.4 with
 * its default crypto provider (baseline: an awaited WebCrypto call per primitive) and with
 * the qpq provider (synchronous node:crypto / hash-wasm), for the X-Wing suite (qpq's
 * default) and the X25519 suite.
 *
 * Run with `deno bench --allow-read bench/mls_message_bench.ts`.
 */

import {
  type CiphersuiteImpl,
  type ClientState,
  createApplicationMessage,
  createCommit,
  createGroup,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  generateKeyPackage,
  joinGroup,
  processPrivateMessage,
} from "ts-mls";
import { getCiphersuiteFor, MLS_SUITES, type MlsSuiteName } from "../src/mls/provider.ts";

const te = new TextEncoder();

/** Two members, alice and bob, in one group; both use `cs`. */
async function pair(cs: CiphersuiteImpl): Promise<{ a: ClientState; b: ClientState }> {
  const kp = (name: string) =>
    generateKeyPackage(
      { credentialType: "basic", identity: te.encode(name) },
      defaultCapabilities(),
      defaultLifetime,
      [],
      cs,
    );
  const alice = await kp("alice");
  const bob = await kp("bob");
  const g = await createGroup(
    te.encode("bench"),
    alice.publicPackage,
    alice.privatePackage,
    [],
    cs,
  );
  const c = await createCommit({ state: g, cipherSuite: cs }, {
    extraProposals: [{ proposalType: "add", add: { keyPackage: bob.publicPackage } }],
  });
  if (c.welcome === undefined) throw new Error("No welcome");
  const b = await joinGroup(
    c.welcome,
    bob.publicPackage,
    bob.privatePackage,
    emptyPskIndex,
    cs,
    c.newState.ratchetTree,
  );
  return { a: c.newState, b };
}

const payload = new Uint8Array(100).fill(7);

for (const suite of MLS_SUITES) {
  for (const provider of ["default", "qpq"] as const) {
    const cs = await getCiphersuiteFor(suite as MlsSuiteName, provider);
    let { a, b } = await pair(cs);
    Deno.bench({
      name: `${provider} provider: app message encrypt+decrypt 100 B`,
      group: `mls app message ${suite}`,
      baseline: provider === "default",
      async fn() {
        const m = await createApplicationMessage(a, payload, cs);
        a = m.newState;
        const r = await processPrivateMessage(b, m.privateMessage, emptyPskIndex, cs);
        if (r.kind !== "applicationMessage") throw new Error("Expected an application message");
        b = r.newState;
      },
    });
  }
}
