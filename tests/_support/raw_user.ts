/**
 * Test support: a user registered and logged in over a raw connection (requests sent as
 * they are, no QpqClient), for tests of what the server accepts.
 *
 * @module
 */
import { connectServer } from "../../src/client/connection.ts";
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
  type KeyStretching,
} from "../../src/auth/mod.ts";
import { IdentityKeyPair } from "../../src/crypto/identity.ts";
import type { Push } from "../../src/wire/mod.ts";
import type { TestServer } from "./server.ts";

const FAST: KeyStretching = { argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 } };

/** A connection to the test server. */
export function rawConnect(ts: TestServer, onPush?: (p: Push, id: number) => void) {
  return connectServer({ server: ts.addr, caCertPem: ts.certPem, onPush });
}

/** Register `username` (password `pw of <name>`) and log in on a fresh connection. */
export async function rawUser(
  ts: TestServer,
  username: string,
  onPush?: (p: Push, id: number) => void,
) {
  const conn = await rawConnect(ts, onPush);
  const password = `pw of ${username}`;
  const start = await clientRegistrationStart(password);
  const started = await conn.call(
    { kind: "registerStart", username, request: start.request, authToken: "devtoken" },
    "registerStarted",
  );
  const fin = await clientRegistrationFinish(start.state, password, started.data, {
    keyStretching: FAST,
  });
  await conn.call({
    kind: "registerFinish",
    username,
    record: fin.record,
    authToken: "devtoken",
    identityKey: IdentityKeyPair.generate().publicKey,
  }, "ok");
  const ls = await clientLoginStart(password);
  const lstarted = await conn.call(
    { kind: "loginStart", username, request: ls.request },
    "loginStarted",
  );
  const lfin = await clientLoginFinish(ls.state, password, lstarted.response, {
    keyStretching: FAST,
  });
  if (lfin.kind !== "ok") throw new Error("client-side login failed");
  await conn.call({
    kind: "loginFinish",
    username,
    finish: lfin.finishRequest,
    loginId: lstarted.loginId,
  }, "session");
  return conn;
}
