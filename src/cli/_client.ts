/**
 * Shared plumbing of the client subcommands: common flags, the password (flag, env or a
 * no-echo prompt), opening the encrypted state, connecting, and printing messages as text
 * (`[alice] hi`, `[#team] alice: hi`) or JSON lines.
 *
 * @module
 */
import { receiptMark, receiptState } from "../client/receipts.ts";
import { bodyLines, visible } from "./_terminal.ts";
import { reactionCounts } from "../client/changes.ts";
import type { GroupSettings } from "../client/events.ts";
import {
  CLIENT_FLAGS_USAGE,
  CLIENT_OPTIONS,
  env,
  eprintln,
  OUTPUT,
  parseCommand,
  println,
} from "./_args.ts";
import { type ClientEvent, QpqClient, UNREAD_CAP } from "../client/client.ts";
import { readCaCert } from "../client/connection.ts";
import {
  clientStatePaths,
  type Conversation,
  type LocalState,
  LocalStore,
  LockedError,
  STATE_OPEN_FAILED_MESSAGE,
  type StoredMessage,
} from "../client/local.ts";
import { openLocalStore } from "../client/open_store.ts";
import { QpqError, TransportError, UsageError } from "../errors.ts";
import { QUICK_CONNECT_MS } from "../limits.ts";
import { parseUsername } from "../client/conversations.ts";
import { canonicalUsername } from "../names.ts";
import type { ParseArgsOptionsConfig } from "node:util";
import {
  type ControlKey,
  ControlServer,
  controlSupported,
  exclusive,
  forward,
  ForwardedExit,
  runCommandLine,
  SERVED,
} from "./_control.ts";

/** Values of the common client flags. */
export interface ClientFlags {
  server?: string | undefined;
  "ca-cert"?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  state?: string | undefined;
  json?: boolean | undefined;
}

/** Read a password from the terminal without echo. */
export async function promptPassword(prompt: string): Promise<string> {
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError(
      "Password required: use --password or QPQ_PASSWORD (no terminal to prompt on)",
    );
  }
  Deno.stderr.writeSync(new TextEncoder().encode(prompt));
  Deno.stdin.setRaw(true);
  const chars: string[] = [];
  const buf = new Uint8Array(1);
  try {
    while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null) break;
      const c = buf[0]!;
      if (c === 13 || c === 10) break;
      if (c === 3) throw new UsageError("Cancelled");
      if (c === 127 || c === 8) chars.pop();
      else chars.push(String.fromCharCode(c));
    }
  } finally {
    Deno.stdin.setRaw(false);
    Deno.stderr.writeSync(new TextEncoder().encode("\n"));
  }
  return new TextDecoder().decode(new Uint8Array(chars.map((c) => c.charCodeAt(0))));
}

/** How often a person at a terminal may type a password (a wrong one, or two that differ). */
export const PASSWORD_TRIES = 3;

/**
 * A new password, typed twice at the terminal; two that differ are asked again, up to
 * {@link PASSWORD_TRIES} times.
 */
export async function promptNewPassword(prompt: string): Promise<string> {
  for (let attempt = 1;; attempt++) {
    const first = await promptPassword(prompt);
    if (first.length === 0) throw new UsageError("Password must not be empty");
    const again = await promptPassword("Repeat the password: ");
    if (again === first) return first;
    if (attempt >= PASSWORD_TRIES) throw new UsageError("The passwords typed did not match");
    eprintln("The passwords do not match: try again");
  }
}

/**
 * Ask a yes/no question on the terminal (the answer echoed, Enter ends it); only "y" or
 * "yes" is yes. Without a terminal, undefined: the caller keeps its non-interactive way.
 */
export async function askYesNo(question: string): Promise<boolean | undefined> {
  if (!Deno.stdin.isTerminal()) return undefined;
  Deno.stderr.writeSync(new TextEncoder().encode(`${question} [y/N] `));
  const bytes: number[] = [];
  const buf = new Uint8Array(1);
  while (true) {
    const n = await Deno.stdin.read(buf);
    if (n === null || buf[0] === 10 || buf[0] === 13) break;
    bytes.push(buf[0]!);
  }
  const answer = new TextDecoder().decode(new Uint8Array(bytes)).trim().toLowerCase();
  return answer === "y" || answer === "yes";
}

/** Options of {@link openClient}. */
export interface OpenClientOptions {
  /** Create a new state (new identity) when none exists. */
  create?: boolean;
  /** Print client events (incoming messages, joins) as they happen. */
  onEvent?: (e: ClientEvent) => void;
  /** How long a connect waits for the server's handshake (ms; see `QUICK_CONNECT_MS`). */
  connectTimeoutMs?: number;
  /**
   * The command line to run in the qpq process that has the state open, when one has it
   * (default: this process's arguments).
   */
  forwardArgs?: () => Promise<string[]>;
}

/** Resolve the common flags, open the state and build a client (not yet connected). */
export async function openClient(
  flags: ClientFlags,
  options: OpenClientOptions = {},
): Promise<QpqClient> {
  const typed = flags.username ?? env("QPQ_USERNAME");
  if (!typed) throw new UsageError("--username is required (or set QPQ_USERNAME)");
  // validated before anything touches the file system: the name becomes a file name
  const username = parseUsername(typed);
  const statePath = flags.state ?? await defaultStatePath(username);
  const given = flags.password ?? env("QPQ_PASSWORD");
  // typed at a terminal: a new state's password twice, a wrong one asked again
  const prompted = given === undefined;
  const creating = (options.create ?? false) && !(await exists(statePath));
  let password = given ??
    (creating
      ? await promptNewPassword(`Password for ${username} (new): `)
      : await promptPassword(`Password for ${username}: `));
  if (password.length === 0) throw new UsageError("Password must not be empty");
  const server = flags.server ?? env("QPQ_SERVER");
  const caPath = flags["ca-cert"] ?? env("QPQ_CA_CERT");
  const caCertPem = caPath ? await readCaCert(caPath) : undefined;
  let store;
  for (let attempt = 1;; attempt++) {
    try {
      store = await openLocalStore(statePath, password, {
        create: options.create ?? false,
        username,
        server: server ?? "127.0.0.1:7000",
        // "Deriving key from password…" helps a person waiting at a terminal; in scripts and
        // pipes it would be one more stderr line on every command (errors are one line).
        onProgress: (text) => {
          if (!flags.json && Deno.stderr.isTerminal()) eprintln(text);
        },
      });
      break;
    } catch (e) {
      if (e instanceof LockedError) {
        // another qpq process has it open: run this command line there
        const code = await forward(
          statePath,
          options.forwardArgs ? await options.forwardArgs() : Deno.args,
          () =>
            LocalStore.unlockKeys(statePath, password, (text) => {
              if (!flags.json && Deno.stderr.isTerminal()) eprintln(text);
            }),
        );
        if (code !== undefined) throw new ForwardedExit(code);
        throw new LockedError(
          controlSupported()
            ? `${e.message}, which does not serve other commands (quit it, or run this there)`
            : `${e.message}: quit it, or run this there (no control socket on this system)`,
        );
      }
      const wrong = e instanceof QpqError && e.message === STATE_OPEN_FAILED_MESSAGE;
      if (!wrong || !prompted || attempt >= PASSWORD_TRIES) throw e;
      eprintln("Wrong password (or a damaged state file): try again");
      password = await promptPassword(`Password for ${username}: `);
    }
  }
  const owner = canonicalOwner(store.meta.username);
  if (owner !== username) {
    if (renamedFrom(username) === owner) {
      // the server renamed this account (bob -> bob~2, docs/operations.md): follow it
      store.updateMeta({ username });
    } else {
      const recorded = store.meta.username; // read before close: a closed store has no meta
      await store.close();
      throw new UsageError(`State ${statePath} belongs to ${visible(recorded)}, not ${username}`);
    }
  }
  const client = QpqClient.create({
    store,
    password,
    caCertPem,
    server,
    connectTimeoutMs: options.connectTimeoutMs,
    // shown by this process, even while it runs a command for another (the control socket)
    onEvent: (e) =>
      OUTPUT.exit(() => {
        if (options.onEvent) options.onEvent(e);
        else printEvent(e, flags.json ?? false, client.store);
        // a message shown is a message read (a command that hides it leaves it unread)
        if (e.kind === "message" && shown.has(e)) void client.markRead(e.conversation);
        shown.delete(e);
      }),
  });
  if (store.created) CREATED.set(client, statePath);
  CONTROL.set(client, { statePath, key: store });
  return client;
}

/** What {@link serveOthers} needs of a client {@link openClient} opened. */
const CONTROL = new WeakMap<QpqClient, { statePath: string; key: ControlKey }>();

/**
 * Serve other qpq commands of this state through `client` (a REPL, a chat): they run on it
 * one at a time, between this process's own commands ({@link exclusive}); see _control.ts.
 * Undefined when it cannot (the reason is a warning line).
 */
export function serveOthers(client: QpqClient): ControlServer | undefined {
  const c = CONTROL.get(client);
  if (c === undefined) return undefined;
  return ControlServer.start(
    c.statePath,
    c.key,
    (args) => exclusive(client, () => SERVED.run(client, () => runCommandLine(args))),
    (text) => eprintln(`qpq: warning: ${text}`),
  );
}

/** The state path of clients whose state {@link openClient} created (not yet registered). */
const CREATED = new WeakMap<QpqClient, string>();

/** True when {@link openClient} created this client's state (there was none). */
export function createdState(client: QpqClient): boolean {
  return CREATED.has(client);
}

/**
 * After a failed first registration: when the server refused it (name taken or look-alike,
 * wrong invite token, invalid name) and `openClient` created the state for it, the state's
 * files, to remove once the client is closed ({@link removeState}), so that nothing is
 * left to block a later `login` or `register-user`. A state that may belong to a
 * registered account (the failure came later, or the server's answer was lost) is kept.
 */
export function refusedState(client: QpqClient, error: unknown): string | undefined {
  const path = CREATED.get(client);
  if (path === undefined || client.store.meta.sessionToken !== undefined) return undefined;
  if (!(error instanceof QpqError) || !REFUSALS.has(error.code)) return undefined;
  return path;
}

/** Remove the files of the (closed) state at `path`. */
export async function removeState(path: string | undefined): Promise<void> {
  if (path === undefined) return;
  for (const f of Object.values(clientStatePaths(path))) {
    await Deno.remove(f).catch(() => {});
  }
}

/** Error codes with which the server refuses a registration before creating anything. */
const REFUSALS = new Set(["conflict", "forbidden", "validation", "usage"]);

/**
 * The default state file of a user: `qpq-<canonical name>.bin`, or, when that does not
 * exist, the one file an older qpq made from the name as typed then (`qpq-Bob.bin`), found
 * in the working directory whatever the case typed now.
 */
async function defaultStatePath(username: string): Promise<string> {
  const path = `qpq-${username}.bin`;
  if (await exists(path)) return path;
  // an account the server renamed (Bob -> bob~2) finds its old qpq-Bob.bin, not qpq-bob.bin
  const base = renamedFrom(username);
  const legacy: string[] = [];
  try {
    for await (const e of Deno.readDir(".")) {
      const m = /^qpq-([A-Za-z0-9][A-Za-z0-9._-]*)\.bin$/.exec(e.name);
      if (!e.isFile || !m) continue;
      const name = m[1]!;
      if (name.toLowerCase() === username || (name.toLowerCase() === base && name !== base)) {
        legacy.push(e.name);
      }
    }
  } catch { /* unreadable directory: the default path then */ }
  return legacy.length === 1 ? legacy[0]! : path;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** The canonical form of the username a state records (kept as is when not valid). */
function canonicalOwner(name: string): string {
  try {
    return canonicalUsername(name);
  } catch {
    return name;
  }
}

/** `bob` for the reserved renamed form `bob~2`, else undefined. */
function renamedFrom(username: string): string | undefined {
  return /^(.+)~[0-9]+$/.exec(username)?.[1];
}

/** `3 unread`, `999+ unread` above the count's cap. */
export function unreadText(n: number): string {
  return n > UNREAD_CAP ? `${UNREAD_CAP}+ unread` : `${n} unread`;
}

/** `14:05`: the local time of day of a message. */
export function timeOfDay(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/** `── Sun 6 Dec 2026 ──`: the line history prints where a new local day begins. */
export function dayLine(ms: number): string {
  const d = new Date(ms);
  const weekday = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][d.getDay()];
  const month =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][
      d.getMonth()
    ];
  return `── ${weekday} ${d.getDate()} ${month} ${d.getFullYear()} ──`;
}

/** The local calendar day of a time, to tell when a day line is due. */
export function localDay(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

/**
 * What message output needs besides the message: the other messages of its conversation
 * (a reply's quote) and positions (`[3]`, how a user names a message: `/reply 3`). A
 * client's `store` is one.
 */
export type MessageLookup = Pick<LocalState, "getMessage" | "messageIndex">;

/**
 * Messages as history shows them: a day line where a new local day begins, each message
 * with its local time and its position (`14:05 [3] [alice] hi`). The time is when the
 * sender sent it, as their clock says; `--json` carries both `sentAt` and `receivedAt`.
 */
export function historyLines(
  conv: Conversation,
  messages: StoredMessage[],
  look?: MessageLookup,
  others?: string[],
): string[] {
  const out: string[] = [];
  let day: string | undefined;
  for (const m of messages) {
    const at = m.sentAt > 0 ? m.sentAt : m.receivedAt;
    if (localDay(at) !== day) {
      day = localDay(at);
      out.push(dayLine(at));
    }
    const failed = m.status === "failed" ? ` (not sent: ${visible(m.failure ?? "refused")})` : "";
    const mark = others && m.direction === "out" && !m.deleted
      ? receiptMark(receiptState(m, others))
      : "";
    out.push(
      `${timeOfDay(at)} ${numberedMessage(conv, m, look)}${failed}${mark ? " " + mark : ""}`,
    );
  }
  return out;
}

/** Longest quote of a replied-to message (graphemes). */
const QUOTE_GRAPHEMES = 24;
const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/** `text` on one line, cut to `max` graphemes (`…` when cut). Not yet made visible. */
function shortText(text: string, max: number): string {
  const one = text.replace(/\s+/g, " ").trim();
  const parts = [...graphemes.segment(one)].map((g) => g.segment);
  return parts.length > max ? parts.slice(0, max).join("") + "…" : one;
}

/** `[3] ` for a message with a known position, else "". */
function indexTag(m: StoredMessage, look?: MessageLookup): string {
  const i = look?.messageIndex(m.messageId);
  return i === undefined ? "" : `[${i}] `;
}

/** A compact quote of a message (a reply's target): `[3] alice: hi there…`. */
export function quoteOf(id: string, look?: MessageLookup): string {
  const t = look?.getMessage(id);
  if (!t) return "a message not on this device";
  const what = t.deleted
    ? "message deleted"
    : t.unreadable
    ? "unreadable"
    : shortText(t.body, QUOTE_GRAPHEMES);
  return `${indexTag(t, look)}${visible(t.sender)}: ${visible(what)}`;
}

/** `  👍 2 ❤ 1`: a message's reactions, aggregated; "" when none. */
export function reactionsText(m: StoredMessage): string {
  const all = reactionCounts(m);
  if (all.length === 0) return "";
  return "  " + all.map((r) => `${visible(r.emoji)} ${r.count}`).join(" ");
}

/** {@link formatMessage} after the message's position (`[3] [alice] hi`), as history shows it. */
export function numberedMessage(
  conv: Conversation,
  m: StoredMessage,
  look?: MessageLookup,
): string {
  return indexTag(m, look) + formatMessage(conv, m, look);
}

/**
 * Format a message for text output (with `look`: a reply's quote), as recv and the REPL
 * show one arriving; its position is in history ({@link numberedMessage}).
 */
export function formatMessage(conv: Conversation, m: StoredMessage, look?: MessageLookup): string {
  if (m.unreadable) {
    const who = conv.kind === "group"
      ? `[${visible(conv.name)}] ${visible(m.sender)}`
      : `[${visible(m.sender)}]`;
    return `${who}: (a message this device cannot read)`;
  }
  const prefix = conv.kind === "group"
    ? `[${visible(conv.name)}] ${visible(m.sender)}: `
    : `[${visible(m.sender)}] `;
  if (m.deleted) return `${prefix}(message deleted)`;
  const reply = m.replyTo ? `(↪ ${quoteOf(m.replyTo, look)}) ` : "";
  // every line of a multi-line body stays visibly part of this one message
  return bodyLines(prefix + reply, m.body) + (m.editedAt !== undefined ? " (edited)" : "") +
    reactionsText(m);
}

/** JSON form of a message (with `look`: its position as `index`). */
export function messageJson(
  conv: Conversation,
  m: StoredMessage,
  look?: MessageLookup,
  others?: string[],
): Record<string, unknown> {
  const index = look?.messageIndex(m.messageId);
  return {
    type: "message",
    conversation: conv.name,
    sender: m.sender,
    body: m.body,
    ...(m.unreadable ? { unreadable: true } : {}),
    sentAt: m.sentAt,
    receivedAt: m.receivedAt,
    messageId: m.messageId,
    ...(index !== undefined ? { index } : {}),
    direction: m.direction,
    ...(m.status === "failed" ? { status: "failed", failure: m.failure ?? "refused" } : {}),
    ...(m.replyTo ? { replyTo: m.replyTo } : {}),
    ...(m.editedAt !== undefined ? { edited: true, editedAt: m.editedAt } : {}),
    ...(m.deleted ? { deleted: true } : {}),
    reactions: (m.reactions ?? []).filter((r) => r.emoji !== "").map((r) => ({
      user: r.user,
      emoji: r.emoji,
      at: r.at,
    })),
    ...(m.direction === "out"
      ? {
        ...(others ? { receiptState: receiptState(m, others) } : {}),
        receipts: (m.receipts ?? []).map((r) => ({
          user: r.user,
          ...(r.deliveredAt !== undefined ? { deliveredAt: r.deliveredAt } : {}),
          ...(r.readAt !== undefined ? { readAt: r.readAt } : {}),
        })),
      }
      : {}),
  };
}

/** The line for a change of a message (an edit, a deletion, a reaction). */
function changeLine(e: Extract<ClientEvent, { kind: "changed" }>, look?: MessageLookup): string {
  const by = visible(e.by);
  const target = look?.messageIndex(e.message.messageId);
  const which = target === undefined ? "a message" : `[${target}]`;
  const where = `in ${visible(e.conversation.name)}`;
  switch (e.change) {
    case "edit":
      return bodyLines(`* ${by} edited ${which} ${where}: `, e.message.body);
    case "deletion":
      return `* ${by} deleted ${which} ${where}`;
    case "reaction":
      return e.emoji
        ? `* ${by} reacted ${visible(e.emoji)} to ${quoteOf(e.message.messageId, look)} ${where}`
        : `* ${by} withdrew a reaction to ${which} ${where}`;
  }
}

/** One line for a request (a DM or an invitation from someone who is not a contact). */
export function requestLine(conv: Conversation, from: string, messages: number): string {
  const count = `${messages} message${messages === 1 ? "" : "s"}`;
  if (conv.kind === "dm") return `request from @${visible(from)}: ${count}`;
  return `${visible(from)} invites you to ${visible(conv.name)}${messages > 0 ? `: ${count}` : ""}`;
}

/** JSON form of a request. */
export function requestJson(
  conv: Conversation,
  from: string,
  messages: number,
): Record<string, unknown> {
  return { type: "request", conversation: conv.name, kind: conv.kind, from, messages };
}

/** Events {@link printEvent} printed, until {@link openClient}'s handler marks them read. */
const shown = new WeakSet<ClientEvent>();

/** Print a client event as text or JSON. */
export function printEvent(e: ClientEvent, json: boolean, look?: MessageLookup): void {
  const line = eventLine(e, json, look);
  if (line === undefined) return;
  shown.add(e);
  if (e.kind === "warning" || e.kind === "progress" || e.kind === "broken") eprintln(line);
  else println(line);
}

/** The line for an event (undefined = nothing to show). */
export function eventLine(
  e: ClientEvent,
  json: boolean,
  look?: MessageLookup,
): string | undefined {
  switch (e.kind) {
    case "message":
      return json
        ? JSON.stringify(messageJson(e.conversation, e.message, look))
        : formatMessage(e.conversation, e.message, look);
    case "changed":
      return json
        ? JSON.stringify({
          ...messageJson(e.conversation, e.message, look),
          type: "changed",
          change: e.change,
          by: e.by,
          ...(e.change === "reaction" ? { emoji: e.emoji ?? "" } : {}),
        })
        : changeLine(e, look);
    case "joined":
      return json
        ? JSON.stringify({ type: "joined", conversation: e.conversation.name, inviter: e.inviter })
        : `* joined ${visible(e.conversation.name)} (invited by ${visible(e.inviter)})`;
    case "request":
      return json
        ? JSON.stringify(requestJson(e.conversation, e.from, e.messages))
        : requestLine(e.conversation, e.from, e.messages);
    case "members":
      if (json) {
        return JSON.stringify({
          type: "members",
          conversation: e.conversation.name,
          added: e.added,
          removed: e.removed,
          left: e.left,
          by: e.by,
        });
      }
      return [
        ...e.added.map((u) =>
          `* ${visible(e.by)} added ${visible(u)} to ${visible(e.conversation.name)}`
        ),
        ...e.removed.map((u) =>
          `* ${visible(e.by)} removed ${visible(u)} from ${visible(e.conversation.name)}`
        ),
        ...e.left.map((u) => `* ${visible(u)} left ${visible(e.conversation.name)}`),
      ].join("\n");
    case "settings":
      return json
        ? JSON.stringify({
          type: "settings",
          conversation: e.conversation.name,
          by: e.by,
          admins: e.after.admins,
          name: e.after.name,
          description: e.after.description,
          disappearingSeconds: e.after.disappearingSeconds,
          ...(e.renamedFrom !== undefined ? { renamedFrom: e.renamedFrom } : {}),
        })
        : settingsLines(e.conversation.name, e.by, e.before, e.after, e.renamedFrom).join("\n");
    case "unreadable":
      return json
        ? JSON.stringify({ ...messageJson(e.conversation, e.message, look), reason: e.reason })
        : formatMessage(e.conversation, e.message, look);
    case "broken":
      return json
        ? JSON.stringify({ type: "broken", conversation: e.conversation.name, reason: e.reason })
        : `qpq: warning: ${visible(e.conversation.name)} is broken (${
          visible(e.reason)
        }): asking its members to re-add you`;
    case "rejoined":
      return json
        ? JSON.stringify({ type: "rejoined", conversation: e.conversation.name, by: e.by })
        : `* ${visible(e.by)} re-added you to ${visible(e.conversation.name)}`;
    case "removed":
      return json
        ? JSON.stringify({ type: "removed", conversation: e.conversation.name, by: e.by })
        : `* ${visible(e.by)} removed you from ${visible(e.conversation.name)}`;
    case "left":
      return json
        ? JSON.stringify({ type: "left", conversation: e.conversation.name, by: e.by })
        : `* you left ${visible(e.conversation.name)} (${visible(e.by)} committed your leave)`;
    case "typing":
      // the REPL and chat show it as a transient line (_interactive.ts); --json an event
      return json
        ? JSON.stringify({
          type: "typing",
          conversation: e.conversation.name,
          from: e.from,
          active: e.active,
        })
        : undefined;
    case "progress":
      return json ? undefined : visible(e.text);
    case "warning":
      return json
        ? JSON.stringify({ type: "warning", text: e.text })
        : `qpq: warning: ${visible(e.text)}`;
  }
}

/** Definition of a simple client subcommand. */
export interface ClientCommand<O extends ParseArgsOptionsConfig> {
  name: string;
  usage: string;
  options?: O;
  positionals?: { min?: number; max?: number };
  /** Create the state if missing. */
  create?: boolean;
  /**
   * With `create`: a state this run created is removed whenever the command fails before
   * a session was kept (`login` in a folder without the account's state: never a second
   * identity left behind).
   */
  discardCreated?: boolean;
  /** Connect and log in before `run` (default true). */
  session?: boolean;
  /**
   * Answer from the local state when the server cannot be reached: connecting waits at
   * most `QUICK_CONNECT_MS`, a warning line says the answer is this device's, and `run`
   * gets `online: false` (it must not ask the server then).
   */
  offline?: boolean;
  /** Which client events to print (default: all). */
  shows?: (e: ClientEvent) => boolean;
  /**
   * Its one positional, when not given, is standard input's text ({@link stdinText}): read
   * here and passed on as the positional when another qpq process runs the command.
   */
  stdinPositional?: boolean;
  run(
    client: QpqClient,
    args: {
      values: ClientFlags & Record<string, unknown>;
      positionals: string[];
      /** False when an `offline` command could not reach the server. */
      online: boolean;
    },
  ): Promise<number>;
}

/** The warning of an answer from local data: why the server was not asked. */
export function offlineNote(e: TransportError): string {
  return `Offline, showing what this device has: ${e.message}`;
}

/** Build the `run(args)` of a client subcommand from its definition. */
export function clientCommand<O extends ParseArgsOptionsConfig>(def: ClientCommand<O>) {
  return async (args: string[]): Promise<number> => {
    const p = parseCommand(
      def.name,
      args,
      { ...CLIENT_OPTIONS, ...def.options },
      def.positionals ?? { max: 0 },
    );
    if (!p) {
      println(`${def.usage}\n\n${CLIENT_FLAGS_USAGE}`);
      return 0;
    }
    const values = p.values as ClientFlags & Record<string, unknown>;
    const json = values.json ?? false;
    const served = SERVED.getStore();
    if (served instanceof QpqClient) return await runServed(def, served, values, p.positionals);
    const client = await openClient(values, {
      create: def.create ?? false,
      onEvent: (e) => {
        if (def.shows?.(e) ?? true) printEvent(e, json, client.store);
      },
      ...(def.offline ? { connectTimeoutMs: QUICK_CONNECT_MS } : {}),
      ...(def.stdinPositional && p.positionals.length === 0
        ? { forwardArgs: async () => [...Deno.args, "--", await readStdinText()] }
        : {}),
    });
    let discard: string | undefined;
    try {
      const online = await startSession(def, client, json, true);
      return await def.run(client, { values, positionals: p.positionals, online });
    } catch (e) {
      discard = def.discardCreated && client.store.meta.sessionToken === undefined
        ? CREATED.get(client)
        : refusedState(client, e);
      throw e;
    } finally {
      await client.close();
      await removeState(discard);
    }
  };
}

/**
 * A command's session before it runs: log in and send what is queued. Offline-capable
 * commands go on without a server (a warning line; `disconnect` drops the dead connection);
 * resolves whether the command is online.
 */
async function startSession<O extends ParseArgsOptionsConfig>(
  def: ClientCommand<O>,
  client: QpqClient,
  json: boolean,
  disconnect: boolean,
): Promise<boolean> {
  if (!(def.session ?? true)) return true;
  try {
    await client.ensureSession();
    await client.flushOutbox();
    return true;
  } catch (e) {
    if (!(def.offline && e instanceof TransportError)) throw e;
    if (disconnect) await client.disconnect();
    printEvent({ kind: "warning", text: offlineNote(e) }, json);
    return false;
  }
}

/**
 * A client command run for another process on this process's open client (the control
 * socket): the same steps as {@link clientCommand}, but the client stays open, and what
 * arrives is shown by this process as usual.
 */
async function runServed<O extends ParseArgsOptionsConfig>(
  def: ClientCommand<O>,
  client: QpqClient,
  values: ClientFlags & Record<string, unknown>,
  positionals: string[],
): Promise<number> {
  const typed = values.username ?? env("QPQ_USERNAME");
  if (typed !== undefined && parseUsername(typed) !== client.username) {
    throw new UsageError(`This qpq process has ${client.username}'s state, not ${typed}'s`);
  }
  if (def.create) throw new UsageError(`qpq ${def.name} cannot run beside an open state`);
  // the REPL's own connection keeps trying in the background: not disconnected here
  const online = await startSession(def, client, values.json ?? false, false);
  return await def.run(client, { values, positionals, online });
}

/** A timer compactly: "off", "30s", "5m", "1h", "2w" (the largest unit that divides it). */
export function timerText(seconds: number): string {
  if (seconds === 0) return "off";
  for (const [n, unit] of [[604800, "w"], [86400, "d"], [3600, "h"], [60, "m"]] as const) {
    if (seconds % n === 0) return `${seconds / n}${unit}`;
  }
  return `${seconds}s`;
}

/** One line per change an admin made to a group's settings. */
function settingsLines(
  conv: string,
  by: string,
  before: GroupSettings | undefined,
  after: GroupSettings,
  renamedFrom?: string,
): string[] {
  const c = visible(conv);
  const who = visible(by);
  const was = before?.admins ?? [];
  const lines = [
    ...(renamedFrom !== undefined ? [`* ${who} renamed ${visible(renamedFrom)} to ${c}`] : []),
    ...after.admins.filter((a) => !was.includes(a)).map((a) =>
      `* ${who} made ${visible(a)} an admin of ${c}`
    ),
    ...was.filter((a) => !after.admins.includes(a)).map((a) =>
      `* ${who} made ${visible(a)} no longer an admin of ${c}`
    ),
  ];
  if ((before?.description ?? "") !== after.description) {
    lines.push(`* ${who} set the topic of ${c}: ${visible(after.description)}`);
  }
  if ((before?.disappearingSeconds ?? 0) !== after.disappearingSeconds) {
    lines.push(
      `* ${who} set disappearing messages in ${c} to ${timerText(after.disappearingSeconds)}`,
    );
  }
  return lines.length > 0 ? lines : [`* ${who} changed the settings of ${c}`];
}

/** Standard input as text ({@link stdinText}), without its final newline. */
export async function readStdinText(): Promise<string> {
  return stdinText(await new Response(Deno.stdin.readable).bytes()).replace(/\n$/, "");
}

/**
 * Standard input as the text of a message; binary input (a NUL byte or bytes that are not
 * UTF-8) is refused rather than sent mangled.
 */
export function stdinText(bytes: Uint8Array): string {
  const hint = "qpq sends text: encode it first (e.g. base64 FILE | qpq send …)";
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    throw new UsageError(`Standard input is binary (a NUL byte at offset ${nul}): ${hint}`);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError(`Standard input is not UTF-8 text: ${hint}`);
  }
}

/** The members of `conv` but us: whose receipts make a message of ours ✓✓ or ✓✓✓. */
export function otherMembers(client: QpqClient, conv: Conversation): string[] {
  return conv.kind === "self" ? [] : client.members(conv.name).filter((u) => u !== client.username);
}
