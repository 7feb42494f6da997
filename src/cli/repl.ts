/**
 * `qpq repl`: the interactive messenger.
 *
 * @module
 */
import { exclusive } from "./_control.ts";
import { CLIENT_FLAGS_USAGE, CLIENT_OPTIONS, env, parseCommand, println } from "./_args.ts";
import {
  askYesNo,
  type ClientFlags,
  openClient,
  refusedState,
  removeState,
  serveOthers,
} from "./_client.ts";
import { Interactive, SLASH_COMMANDS } from "./_interactive.ts";
import type { QpqClient } from "../client/client.ts";
import { AuthError, TransportError, UsageError } from "../errors.ts";
import { CONNECT_TIMEOUT_MS, QUICK_CONNECT_MS } from "../limits.ts";

/** Usage text. */
export const USAGE = `Usage: qpq repl --username NAME [--password PW] [--auth-token TOKEN]

The interactive messenger. On first use it creates your identity (a password typed at the
terminal is asked twice), registers you and logs in; at a terminal it first asks
"No account NAME on SERVER. Register it? [y/N]" (without one, in scripts, it registers).
Later it logs in by itself; a wrong password typed at the terminal is asked again (3 tries). Incoming messages appear as they arrive. When the server
does not answer it starts offline (your conversations and history are on this device,
what you send is queued) and connects in the background, saying when it is online.

Slash commands:
${Object.values(SLASH_COMMANDS).filter((h) => h).map((h) => "  " + h).join("\n")}
Any other line is sent to the active conversation (//text sends /text). Tab completes
commands, @users and #groups; Ctrl-C clears the line; Ctrl-D on an empty line quits.

Options:
  --auth-token TOKEN   invite token for the first registration (env QPQ_AUTH_TOKEN)`;

/**
 * Connect, registering on first use. A state that has been online before does not wait
 * for an absent server (`QUICK_CONNECT_MS`): it resolves false at once and goes online in
 * the background ({@link QpqClient.keepOnline}); a new one needs the server to register.
 */
export async function startSession(
  client: QpqClient,
  authToken: string | undefined,
): Promise<boolean> {
  const fresh = client.store.meta.sessionToken === undefined &&
    client.listConversations().length === 0;
  try {
    await client.connect(
      fresh ? { timeoutMs: CONNECT_TIMEOUT_MS } : { timeoutMs: QUICK_CONNECT_MS },
    );
  } catch (e) {
    if (fresh || !(e instanceof TransportError)) throw e;
    client.keepOnline();
    return false;
  }
  try {
    await client.ensureSession();
  } catch (e) {
    if (!(e instanceof AuthError && e.code === "auth" && fresh)) throw e;
    // a typo must not make an account: a person at a terminal is asked (scripts register)
    const yes = await askYesNo(`No account ${client.username} on ${client.server}. Register it?`);
    if (yes === false) {
      throw new UsageError(
        `Not registered: no account ${client.username} on ${client.server} (check the name; qpq register-user creates one)`,
      );
    }
    await client.register({ authToken: authToken ?? env("QPQ_AUTH_TOKEN") ?? "devtoken" });
    println(`* registered ${client.username} on ${client.server}`);
  }
  await client.flushOutbox();
  await client.subscribe();
  await client.sync();
  return true;
}

/** The REPL's (and chat's) line when it starts without the server. */
export function offlineLine(client: QpqClient): string {
  return `Offline: no answer from ${client.server}; what you send is queued (connecting in the background)`;
}

/** Run `qpq repl`. */
export async function run(args: string[]): Promise<number> {
  const p = parseCommand("repl", args, { ...CLIENT_OPTIONS, "auth-token": { type: "string" } });
  if (!p) {
    println(`${USAGE}\n\n${CLIENT_FLAGS_USAGE}`);
    return 0;
  }
  let ui: Interactive | undefined;
  const client = await openClient(p.values as ClientFlags, {
    create: true,
    onEvent: (e) => ui?.onEvent(e),
    // offline, a typed line waits this long for the server, then is queued
    connectTimeoutMs: QUICK_CONNECT_MS,
  });
  // other qpq commands of this state run through this process meanwhile
  const control = serveOthers(client);
  let discard: string | undefined;
  try {
    ui = new Interactive(client);
    let online: boolean;
    try {
      online = await exclusive(client, () => startSession(client, p.values["auth-token"]));
    } catch (e) {
      discard = refusedState(client, e);
      throw e;
    }
    println(`qpq repl: ${client.username} on ${client.server} — /help for commands`);
    if (!online) println(offlineLine(client));
    // Periodic self-update: groups whose last own change is over a day old get fresh keys.
    const selfUpdate = () =>
      client.selfUpdateDue().then(
        (done) => done.forEach((name) => ui?.print(`* refreshed your keys in ${name}`)),
        () => {}, // offline: next time
      );
    const timer = setInterval(selfUpdate, 3600_000);
    void selfUpdate();
    let code: number;
    try {
      code = await ui.run();
    } finally {
      clearInterval(timer);
    }
    await client.sync().catch(() => {});
    return code;
  } finally {
    await control?.close();
    await client.close();
    await removeState(discard);
  }
}
