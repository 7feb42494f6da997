/**
 * OPAQUE (RFC 9807) password authentication: the only importer of
 * `@serenity-kit/opaque` (ristretto255, 3DH, SHA-512, argon2id key stretching).
 *
 * The library speaks base64url strings; this adapter speaks bytes, wraps every secret
 * state in an object that redacts itself, and turns library failures into qpq errors.
 * Every function awaits the library's WebAssembly initialisation first.
 *
 * ```
 *  client                                            server (two requests)
 *  ──────                                            ─────────────────────
 *  registration:
 *  clientRegistrationStart(pw) ── request ─────────► registrationStart(setup, user, request)
 *                              ◄─ response ───────── (stateless)
 *  clientRegistrationFinish(..) ─ record ──────────► registrationFinish(record) → store it
 *
 *  login:
 *  clientLoginStart(pw) ───────── startRequest ────► loginStart(setup, user, startRequest,
 *                                                       record | undefined)
 *                              ◄─ response ───────── keep serverState (secret) until finish
 *  clientLoginFinish(..) ──────── finishRequest ───► loginFinish(serverState, finishRequest)
 *     → sessionKey, exportKey                          → sessionKey, or AuthError
 * ```
 *
 * No user enumeration: for an unknown user `loginStart` runs the library's dummy path
 * (a fake record derived from the server setup), so its response has the same size and
 * shape, and `loginFinish` then fails with exactly the same error as a wrong password.
 *
 * Both sides must use the same key stretching at registration and login; the default is
 * the library's "memory-constrained" argon2id (64 MiB, 3 passes, 4 lanes).
 *
 * @module
 */

import * as opaque from "@serenity-kit/opaque";
import { fromBase64, toBase64 } from "../bytes.ts";
import { AuthError, CryptoError, ValidationError } from "../errors.ts";

/** Serialized server setup length: OPRF seed (64) ‖ server private key (32) ‖ dummy public key (32). */
export const SERVER_SETUP_BYTES = 128;
/** Registration record length: client public key (32) ‖ masking key (64) ‖ envelope (96). */
export const REGISTRATION_RECORD_BYTES = 192;
/** Session key length produced by a successful login (bytes). */
export const OPAQUE_SESSION_KEY_BYTES = 64;
/** Export key length (bytes). */
export const OPAQUE_EXPORT_KEY_BYTES = 64;

/** The one message a failed login shows, whether the user exists or not. */
export const LOGIN_FAILED_MESSAGE = "Login failed: wrong username or password";

/** Password key-stretching choice; must be the same at registration and login. */
export type KeyStretching =
  | "memory-constrained"
  | "rfc-recommended"
  | { argon2id: { memoryKiB: number; iterations: number; parallelism: number } };

/** Options of the client finish steps. */
export interface ClientFinishOptions {
  /** Key stretching (default "memory-constrained"). */
  keyStretching?: KeyStretching;
}

function b64u(b: Uint8Array): string {
  return toBase64(b).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function unb64u(s: string): Uint8Array {
  const t = s.replace(/-/g, "+").replace(/_/g, "/");
  return fromBase64(t + "=".repeat((4 - (t.length % 4)) % 4));
}

function ksf(k: KeyStretching | undefined) {
  if (k === undefined || typeof k === "string") return k ?? "memory-constrained";
  return {
    "argon2id-custom": {
      memory: k.argon2id.memoryKiB,
      iterations: k.argon2id.iterations,
      parallelism: k.argon2id.parallelism,
    },
  } as const;
}

function checkBytes(what: string, b: Uint8Array): void {
  if (!(b instanceof Uint8Array) || b.length === 0) {
    throw new ValidationError(`Invalid ${what}: empty`);
  }
}

let readyPromise: Promise<void> | undefined;

/** Resolve once the OPAQUE WebAssembly module is ready; called by every function here. */
export function opaqueReady(): Promise<void> {
  readyPromise ??= opaque.ready;
  return readyPromise;
}

/** A secret held as a library string; never printed. */
abstract class Redacted {
  readonly #kind: string;
  protected constructor(kind: string) {
    this.#kind = kind;
  }
  /** Redacted inspection. */
  [Symbol.for("Deno.customInspect")](): string {
    return `${this.#kind} { [redacted] }`;
  }
  /** Redacted JSON. */
  toJSON(): string {
    return "[redacted]";
  }
}

/** The server's long-term OPAQUE secret (OPRF seed and key pair). Persist it once. */
export class OpaqueServerSetup extends Redacted {
  readonly #s: string;
  private constructor(s: string) {
    super("OpaqueServerSetup");
    this.#s = s;
  }

  /** @internal library form */
  static wrap(s: string): OpaqueServerSetup {
    return new OpaqueServerSetup(s);
  }

  /**
   * Rebuild from {@link OpaqueServerSetup.toBytes} output.
   *
   * @throws {CryptoError} when the bytes are not a server setup
   */
  static async fromBytes(b: Uint8Array): Promise<OpaqueServerSetup> {
    await opaqueReady();
    if (!(b instanceof Uint8Array) || b.length !== SERVER_SETUP_BYTES) {
      throw new CryptoError("Invalid OPAQUE server setup: wrong length");
    }
    const s = b64u(b);
    try {
      opaque.server.getPublicKey(s);
    } catch (e) {
      throw new CryptoError("Invalid OPAQUE server setup", { cause: e });
    }
    return new OpaqueServerSetup(s);
  }

  /** The serialized secret (128 bytes); store it sealed. */
  toBytes(): Uint8Array {
    return unb64u(this.#s);
  }

  /** The server's static public key (32 bytes), which clients may pin. */
  publicKey(): Uint8Array {
    return unb64u(opaque.server.getPublicKey(this.#s));
  }

  /** @internal library form */
  get raw(): string {
    return this.#s;
  }
}

/** Server state between {@link loginStart} and {@link loginFinish}. Secret. */
export class ServerLoginState extends Redacted {
  readonly #s: string;
  private constructor(s: string) {
    super("ServerLoginState");
    this.#s = s;
  }
  /** @internal */
  static wrap(s: string): ServerLoginState {
    return new ServerLoginState(s);
  }
  /** Rebuild from bytes kept between the two login requests (e.g. a pending-login row). */
  static fromBytes(b: Uint8Array): ServerLoginState {
    checkBytes("login state", b);
    return new ServerLoginState(b64u(b));
  }
  /** Serialize to keep between the two login requests. Secret: store sealed, briefly. */
  toBytes(): Uint8Array {
    return unb64u(this.#s);
  }
  /** @internal */
  get raw(): string {
    return this.#s;
  }
}

/** Client state between {@link clientRegistrationStart} and its finish. Secret. */
export class ClientRegistrationState extends Redacted {
  readonly #s: string;
  private constructor(s: string) {
    super("ClientRegistrationState");
    this.#s = s;
  }
  /** @internal */
  static wrap(s: string): ClientRegistrationState {
    return new ClientRegistrationState(s);
  }
  /** @internal */
  get raw(): string {
    return this.#s;
  }
}

/** Client state between {@link clientLoginStart} and its finish. Secret. */
export class ClientLoginState extends Redacted {
  readonly #s: string;
  private constructor(s: string) {
    super("ClientLoginState");
    this.#s = s;
  }
  /** @internal */
  static wrap(s: string): ClientLoginState {
    return new ClientLoginState(s);
  }
  /** @internal */
  get raw(): string {
    return this.#s;
  }
}

// ---------------------------------------------------------------------------------------
// Server steps
// ---------------------------------------------------------------------------------------

/** Generate a fresh server setup. Do this once per server and persist it (sealed). */
export async function createServerSetup(): Promise<OpaqueServerSetup> {
  await opaqueReady();
  return OpaqueServerSetup.wrap(opaque.server.createSetup());
}

/**
 * Server registration step: evaluate the client's blinded password under the user's OPRF
 * key (derived from the setup and `username`).
 *
 * @returns the registration response for the client
 * @throws {ValidationError} when `request` is malformed
 */
export async function registrationStart(
  setup: OpaqueServerSetup,
  username: string,
  request: Uint8Array,
): Promise<Uint8Array> {
  await opaqueReady();
  checkBytes("registration request", request);
  try {
    const { registrationResponse } = opaque.server.createRegistrationResponse({
      serverSetup: setup.raw,
      userIdentifier: username,
      registrationRequest: b64u(request),
    });
    return unb64u(registrationResponse);
  } catch (e) {
    throw new ValidationError("Invalid registration request", { cause: e });
  }
}

let checkSetup: Promise<{ setup: string; ke1: string }> | undefined;

/**
 * Server check of an uploaded registration record before storing it: exact length and a
 * full decode by the library (the client public key must be a valid group element).
 *
 * @returns a copy of the record, ready to store
 * @throws {ValidationError} when the record is malformed
 */
export async function registrationFinish(record: Uint8Array): Promise<Uint8Array> {
  await opaqueReady();
  if (!(record instanceof Uint8Array) || record.length !== REGISTRATION_RECORD_BYTES) {
    throw new ValidationError(
      `Invalid registration record: must be ${REGISTRATION_RECORD_BYTES} bytes`,
    );
  }
  // The library decodes (and so validates) a record only inside startLogin: run it once
  // against a throwaway setup and login request that never leave this function.
  checkSetup ??= Promise.resolve().then(() => ({
    setup: opaque.server.createSetup(),
    ke1: opaque.client.startLogin({ password: "registration record check" }).startLoginRequest,
  }));
  const { setup, ke1 } = await checkSetup;
  try {
    opaque.server.startLogin({
      serverSetup: setup,
      userIdentifier: "check",
      registrationRecord: b64u(record),
      startLoginRequest: ke1,
    });
  } catch (e) {
    throw new ValidationError("Invalid registration record", { cause: e });
  }
  return record.slice();
}

/** Result of {@link loginStart}. */
export interface LoginStartResult {
  /** KE2, sent to the client. */
  response: Uint8Array;
  /** Kept by the server until {@link loginFinish}. */
  serverState: ServerLoginState;
}

/**
 * Server login step 1. Pass `record: undefined` for an unknown user: the library then
 * answers from a fake record, indistinguishable to the client.
 *
 * @throws {ValidationError} when `startRequest` is malformed (checked the same way for
 *   known and unknown users)
 */
export async function loginStart(
  setup: OpaqueServerSetup,
  username: string,
  startRequest: Uint8Array,
  record: Uint8Array | undefined,
): Promise<LoginStartResult> {
  await opaqueReady();
  checkBytes("login request", startRequest);
  let out: { loginResponse: string; serverLoginState: string };
  try {
    out = opaque.server.startLogin({
      serverSetup: setup.raw,
      userIdentifier: username,
      registrationRecord: record === undefined ? null : b64u(record),
      startLoginRequest: b64u(startRequest),
    });
  } catch (e) {
    throw new ValidationError("Invalid login request", { cause: e });
  }
  return {
    response: unb64u(out.loginResponse),
    serverState: ServerLoginState.wrap(out.serverLoginState),
  };
}

/** Result of {@link loginFinish} and {@link clientLoginFinish} failures. */
export interface LoginFailed {
  /** Discriminant. */
  kind: "failed";
  /** Always `AuthError` code "auth" with {@link LOGIN_FAILED_MESSAGE}. */
  error: AuthError;
}

/** Result of {@link loginFinish}. */
export type LoginFinishResult = { kind: "ok"; sessionKey: Uint8Array } | LoginFailed;

function loginFailed(cause?: unknown): LoginFailed {
  return {
    kind: "failed",
    error: new AuthError(LOGIN_FAILED_MESSAGE, cause === undefined ? {} : { cause }),
  };
}

/**
 * Server login step 2: verify the client's KE3.
 *
 * @returns the 64-byte session key, or a failure (wrong password, unknown user, garbage)
 *   that is the same in every case
 */
export async function loginFinish(
  serverState: ServerLoginState,
  finishRequest: Uint8Array,
): Promise<LoginFinishResult> {
  await opaqueReady();
  if (!(finishRequest instanceof Uint8Array) || finishRequest.length === 0) return loginFailed();
  try {
    const { sessionKey } = opaque.server.finishLogin({
      serverLoginState: serverState.raw,
      finishLoginRequest: b64u(finishRequest),
    });
    return { kind: "ok", sessionKey: unb64u(sessionKey) };
  } catch (e) {
    return loginFailed(e);
  }
}

// ---------------------------------------------------------------------------------------
// Client steps
// ---------------------------------------------------------------------------------------

/** Result of a client start step. */
export interface ClientStart<S> {
  /** Secret state for the finish step. */
  state: S;
  /** Message for the server. */
  request: Uint8Array;
}

/** Client registration step 1: blind the password. */
export async function clientRegistrationStart(
  password: string,
): Promise<ClientStart<ClientRegistrationState>> {
  await opaqueReady();
  const r = opaque.client.startRegistration({ password });
  return {
    state: ClientRegistrationState.wrap(r.clientRegistrationState),
    request: unb64u(r.registrationRequest),
  };
}

/** Result of {@link clientRegistrationFinish}. */
export interface ClientRegistrationResult {
  /** Upload to the server (registration record). */
  record: Uint8Array;
  /** 64-byte key only this password can re-derive (e.g. to seal client backups). Secret. */
  exportKey: Uint8Array;
  /** The server's static public key, to pin. */
  serverPublicKey: Uint8Array;
}

/**
 * Client registration step 2: stretch the password and build the record.
 *
 * @throws {ValidationError} when the server's response is malformed
 */
export async function clientRegistrationFinish(
  state: ClientRegistrationState,
  password: string,
  response: Uint8Array,
  options: ClientFinishOptions = {},
): Promise<ClientRegistrationResult> {
  await opaqueReady();
  checkBytes("registration response", response);
  try {
    const r = opaque.client.finishRegistration({
      clientRegistrationState: state.raw,
      registrationResponse: b64u(response),
      password,
      keyStretching: ksf(options.keyStretching),
    });
    return {
      record: unb64u(r.registrationRecord),
      exportKey: unb64u(r.exportKey),
      serverPublicKey: unb64u(r.serverStaticPublicKey),
    };
  } catch (e) {
    throw new ValidationError("Invalid registration response", { cause: e });
  }
}

/** Client login step 1: blind the password (KE1). */
export async function clientLoginStart(password: string): Promise<ClientStart<ClientLoginState>> {
  await opaqueReady();
  const r = opaque.client.startLogin({ password });
  return { state: ClientLoginState.wrap(r.clientLoginState), request: unb64u(r.startLoginRequest) };
}

/** Successful {@link clientLoginFinish}. */
export interface ClientLoginOk {
  /** Discriminant. */
  kind: "ok";
  /** KE3, sent to the server. */
  finishRequest: Uint8Array;
  /** 64-byte key shared with the server. Secret. */
  sessionKey: Uint8Array;
  /** The same export key as at registration. Secret. */
  exportKey: Uint8Array;
  /** The server's static public key (compare with the pinned one). */
  serverPublicKey: Uint8Array;
}

/** Result of {@link clientLoginFinish}. */
export type ClientLoginResult = ClientLoginOk | LoginFailed;

/**
 * Client login step 2: recover the envelope and authenticate the server. A wrong password,
 * an unknown user and a tampered response all give the same failure.
 */
export async function clientLoginFinish(
  state: ClientLoginState,
  password: string,
  response: Uint8Array,
  options: ClientFinishOptions = {},
): Promise<ClientLoginResult> {
  await opaqueReady();
  if (!(response instanceof Uint8Array) || response.length === 0) return loginFailed();
  try {
    const r = opaque.client.finishLogin({
      clientLoginState: state.raw,
      loginResponse: b64u(response),
      password,
      keyStretching: ksf(options.keyStretching),
    });
    if (r === undefined) return loginFailed();
    return {
      kind: "ok",
      finishRequest: unb64u(r.finishLoginRequest),
      sessionKey: unb64u(r.sessionKey),
      exportKey: unb64u(r.exportKey),
      serverPublicKey: unb64u(r.serverStaticPublicKey),
    };
  } catch (e) {
    return loginFailed(e);
  }
}
