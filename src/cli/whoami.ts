/**
 * `qpq whoami`: identity, server and conversations of the local state.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { fingerprint } from "../crypto/mod.ts";

/** Usage text. */
export const USAGE = `Usage: qpq whoami --username NAME [--password PW]

Show your username, server, identity fingerprint (compare it with your contacts), session
state, conversations and messages waiting to be sent. Works offline.`;

/** Run `qpq whoami`. */
export const run = clientCommand({
  name: "whoami",
  usage: USAGE,
  session: false,
  run(client, { values }) {
    const m = client.store.meta;
    const loggedIn = !!m.sessionToken && (m.sessionExpiresAt ?? 0) > Date.now();
    const info = {
      username: client.username,
      server: client.server,
      fingerprint: fingerprint(client.identityPublicKey),
      session: loggedIn ? `valid until ${new Date(m.sessionExpiresAt!).toISOString()}` : "none",
      conversations: client.listConversations().map((c) => c.name),
      queued: client.pendingCount(),
    };
    if (values.json) println(JSON.stringify({ type: "whoami", ...info }));
    else {
      println(`${info.username} on ${info.server}`);
      println(`identity fingerprint: ${info.fingerprint}`);
      println(`session: ${info.session}`);
      println(`conversations: ${info.conversations.join(", ") || "none"}`);
      if (info.queued) println(`queued messages: ${info.queued}`);
    }
    return Promise.resolve(0);
  },
});
