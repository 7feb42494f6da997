/**
 * Test support: registered in-process clients (real QUIC to a test server, encrypted
 * local state with cheap Argon2id parameters) and what each reported.
 *
 * @module
 */
import { type AcceptFrom, type ClientEvent, QpqClient } from "../../src/client/client.ts";
import { openLocalStore } from "../../src/client/open_store.ts";
import { connectServer, type ServerLink } from "../../src/client/connection.ts";
import { TransportError } from "../../src/errors.ts";
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

/**
 * A client `name` (password "pw", not yet registered) on `ts` whose every request goes
 * through `call`, given the real call (to lose an answer or fail a request), and whose
 * connects fail while `down()` says so.
 */
export async function linkedClient(
  ts: { addr: string; certPem: string },
  dir: string,
  name: string,
  call: (req: Parameters<ServerLink["call"]>[0], real: () => Promise<unknown>) => Promise<unknown>,
  down: () => boolean = () => false,
): Promise<{ client: QpqClient; events: ClientEvent[] }> {
  const store = await openLocalStore(`${dir}/${name}.bin`, "pw", {
    create: true,
    username: name,
    server: ts.addr,
    kdf: FAST_KDF,
  });
  const events: ClientEvent[] = [];
  const client = QpqClient.create({
    acceptFrom: "anyone",
    store,
    password: "pw",
    caCertPem: ts.certPem,
    onEvent: (e) => events.push(e),
    connect: async (o) => {
      if (down()) throw new TransportError("network down (test)");
      const link = await connectServer(o);
      return {
        server: link.server,
        close: () => link.close(),
        call: (req, expect, opts) => call(req, () => link.call(req, expect, opts)) as never,
      };
    },
  });
  return { client, events };
}
