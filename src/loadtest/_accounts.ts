/**
 * Accounts for load clients, made with cheap OPAQUE key stretching. `QpqClient.register`
 * stretches the password with the OPAQUE library's default Argon2id (64 MiB, 3 passes):
 * about 0.9 s of CPU, twice per account (registration and login), which would make setting
 * up 1,000 clients take half an hour on two cores. So the load tool registers and logs in
 * here, with the same requests the client sends but 256 KiB / 1 pass, and hands the session
 * token to the real client through its local state; from then on the client works as
 * always (it resumes that session, uploads its KeyPackages, sends and receives).
 *
 * ```
 * registerStart ─► registerFinish (record, identity key) ─► loginStart ─► loginFinish
 *   ─► session token ─► MemoryLocalState meta ─► QpqClient resumes it
 * ```
 *
 * @module
 */
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
  type KeyStretching,
} from "../auth/mod.ts";
import { connectServer } from "../client/connection.ts";
import { zeroize } from "../bytes.ts";

/** Cheap OPAQUE key stretching for load accounts (never for real accounts). */
export const LOAD_KSF: KeyStretching = {
  argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 },
};

/** Options of {@link createAccount}. */
export interface CreateAccountOptions {
  server: string;
  caCertPem: string | undefined;
  authToken: string;
  /** The account's Ed25519 identity public key (published at registration). */
  identityPublic: Uint8Array;
  /** Handshake and request timeout (ms; default: the connection's own). */
  timeoutMs?: number | undefined;
}

/** A logged-in session of a new account. */
export interface AccountSession {
  token: Uint8Array;
  expiresAtMs: number;
}

/** Register `username` with `password` and log in once; returns the session. */
export async function createAccount(
  username: string,
  password: string,
  o: CreateAccountOptions,
): Promise<AccountSession> {
  const conn = await connectServer({
    server: o.server,
    caCertPem: o.caCertPem,
    timeoutMs: o.timeoutMs,
  });
  try {
    const reg = await clientRegistrationStart(password);
    const started = await conn.call({
      kind: "registerStart",
      username,
      request: reg.request,
      authToken: o.authToken,
    }, "registerStarted");
    const fin = await clientRegistrationFinish(reg.state, password, started.data, {
      keyStretching: LOAD_KSF,
    });
    zeroize(fin.exportKey);
    await conn.call({
      kind: "registerFinish",
      username,
      record: fin.record,
      authToken: o.authToken,
      identityKey: o.identityPublic,
    }, "ok");
    const login = await clientLoginStart(password);
    const ls = await conn.call(
      { kind: "loginStart", username, request: login.request },
      "loginStarted",
    );
    const lf = await clientLoginFinish(login.state, password, ls.response, {
      keyStretching: LOAD_KSF,
    });
    if (lf.kind !== "ok") throw lf.error;
    zeroize(lf.sessionKey, lf.exportKey);
    const session = await conn.call({
      kind: "loginFinish",
      username,
      finish: lf.finishRequest,
      loginId: ls.loginId,
    }, "session");
    return { token: session.token, expiresAtMs: session.expiresAtMs };
  } finally {
    await conn.close();
  }
}
