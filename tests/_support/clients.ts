/**
 * Test support: registered in-process clients (real QUIC to a test server, encrypted
 * local state with cheap Argon2id parameters) and what each reported.
 *
 * @module
 */
import { type AcceptFrom, type ClientEvent, QpqClient } from "../../src/client/client.ts";
import { openLocalStore } from "../../src/client/open_store.ts";
import { DEFAULT_ARGON2ID_PARAMS } from "../../src/crypto/mod.ts";

/** Argon2id parameters for test states (never for users). */
export const FAST_KDF = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 };

/** A registered client plus what it reported. */
export interface TestUser {
  name: string;
  client: QpqClient;
  events: ClientEvent[];
  /** Texts of warning events, in order. */
  warnings: () => string[];
  /** Bodies of received messages, in order. */
  received: () => string[];
}

/** Register `name` on the server `ts` with its state in `dir` (password `pw-<name>`). */
export async function testUser(
  ts: { addr: string; certPem: string },
  dir: string,
  name: string,
  options: { timeoutMs?: number; acceptFrom?: AcceptFrom; now?: () => number } = {},
): Promise<TestUser> {
  const store = await openLocalStore(`${dir}/${name}.bin`, `pw-${name}`, {
    create: true,
    username: name,
    server: ts.addr,
    kdf: FAST_KDF,
  });
  const events: ClientEvent[] = [];
  const client = QpqClient.create({
    store,
    password: `pw-${name}`,
    caCertPem: ts.certPem,
    onEvent: (e) => events.push(e),
    timeoutMs: options.timeoutMs ?? 5_000,
    // tests that are not about consent join every Welcome at once, as before requests
    acceptFrom: options.acceptFrom ?? "anyone",
    ...(options.now ? { now: options.now } : {}),
  });
  await client.register();
  return {
    name,
    client,
    events,
    warnings: () => events.flatMap((e) => e.kind === "warning" ? [e.text] : []),
    received: () =>
      events.flatMap((e) =>
        e.kind === "message" && e.message.direction === "in" ? [e.message.body] : []
      ),
  };
}
