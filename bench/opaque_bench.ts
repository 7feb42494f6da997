/**
 * OPAQUE login cost through `src/auth`, with the raw `@serenity-kit/opaque` calls as the
 * baseline in each group (so the adapter's overhead reads as a ratio):
 * - server loginStart (known user and the dummy path for an unknown user),
 * - server loginFinish on a precomputed state and KE3,
 * - server work of one login (loginStart + loginFinish),
 * - client finish with the production key stretching (argon2id 64 MiB, t=3, p=4), reported
 *   separately because it runs on the client, not the server.
 *
 * Run with `deno bench --allow-read bench/opaque_bench.ts`.
 */

import * as opaque from "@serenity-kit/opaque";
import {
  clientLoginFinish,
  clientLoginStart,
  clientRegistrationFinish,
  clientRegistrationStart,
  createServerSetup,
  type KeyStretching,
  loginFinish,
  loginStart,
  registrationStart,
  ServerLoginState,
} from "../src/auth/mod.ts";

const PASSWORD = "correct horse battery staple";
/** Cheap stretching for the precomputation; the server's work does not depend on it. */
const FAST: KeyStretching = { argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 } };

const setup = await createServerSetup();
const reg = await clientRegistrationStart(PASSWORD);
const record = (await clientRegistrationFinish(
  reg.state,
  PASSWORD,
  await registrationStart(setup, "alice", reg.request),
  { keyStretching: FAST },
)).record;
const c1 = await clientLoginStart(PASSWORD);
const s1 = await loginStart(setup, "alice", c1.request, record);
const c2 = await clientLoginFinish(c1.state, PASSWORD, s1.response, { keyStretching: FAST });
if (c2.kind !== "ok") throw new Error("precomputed login failed");
const ke3 = c2.finishRequest;
const stateBytes = s1.serverState.toBytes();
const serverState = ServerLoginState.fromBytes(stateBytes);
if ((await loginFinish(serverState, ke3)).kind !== "ok") {
  throw new Error("precomputed finish failed");
}

// Raw library forms for the baselines.
const b64u = (b: Uint8Array) =>
  btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const rawSetup = b64u(setup.toBytes());
const rawRecord = b64u(record);
const rawKe1 = b64u(c1.request);
const rawKe3 = b64u(ke3);
const rawState = b64u(stateBytes);

Deno.bench({
  name: "raw library server.startLogin",
  group: "server loginStart",
  baseline: true,
  fn: () => {
    opaque.server.startLogin({
      serverSetup: rawSetup,
      userIdentifier: "alice",
      registrationRecord: rawRecord,
      startLoginRequest: rawKe1,
    });
  },
});
Deno.bench({
  name: "qpq loginStart (known user)",
  group: "server loginStart",
  fn: async () => {
    await loginStart(setup, "alice", c1.request, record);
  },
});
Deno.bench({
  name: "qpq loginStart (unknown user, dummy path)",
  group: "server loginStart",
  fn: async () => {
    await loginStart(setup, "nobody", c1.request, undefined);
  },
});

Deno.bench({
  name: "raw library server.finishLogin",
  group: "server loginFinish",
  baseline: true,
  fn: () => {
    opaque.server.finishLogin({ serverLoginState: rawState, finishLoginRequest: rawKe3 });
  },
});
Deno.bench({
  name: "qpq loginFinish",
  group: "server loginFinish",
  fn: async () => {
    await loginFinish(serverState, ke3);
  },
});

Deno.bench({
  name: "raw library startLogin + finishLogin",
  group: "server work per login",
  baseline: true,
  fn: () => {
    opaque.server.startLogin({
      serverSetup: rawSetup,
      userIdentifier: "alice",
      registrationRecord: rawRecord,
      startLoginRequest: rawKe1,
    });
    opaque.server.finishLogin({ serverLoginState: rawState, finishLoginRequest: rawKe3 });
  },
});
Deno.bench({
  name: "qpq loginStart + loginFinish",
  group: "server work per login",
  fn: async () => {
    await loginStart(setup, "alice", c1.request, record);
    await loginFinish(serverState, ke3);
  },
});

// Client side, production key stretching: one iteration is a whole client login.
const prodRecord = await (async () => {
  const r = await clientRegistrationStart(PASSWORD);
  return (await clientRegistrationFinish(
    r.state,
    PASSWORD,
    await registrationStart(setup, "bob", r.request),
  )).record;
})();
Deno.bench({
  name: "raw library client startLogin + finishLogin (argon2id 64 MiB)",
  group: "client login (not server cost)",
  baseline: true,
  n: 5,
  warmup: 1,
  fn: () => {
    const a = opaque.client.startLogin({ password: PASSWORD });
    const s = opaque.server.startLogin({
      serverSetup: rawSetup,
      userIdentifier: "bob",
      registrationRecord: b64u(prodRecord),
      startLoginRequest: a.startLoginRequest,
    });
    opaque.client.finishLogin({
      clientLoginState: a.clientLoginState,
      loginResponse: s.loginResponse,
      password: PASSWORD,
    });
  },
});
Deno.bench({
  name: "qpq clientLoginStart + clientLoginFinish (argon2id 64 MiB)",
  group: "client login (not server cost)",
  n: 5,
  warmup: 1,
  fn: async () => {
    const a = await clientLoginStart(PASSWORD);
    const s = await loginStart(setup, "bob", a.request, prodRecord);
    const r = await clientLoginFinish(a.state, PASSWORD, s.response);
    if (r.kind !== "ok") throw new Error("login failed");
  },
});
