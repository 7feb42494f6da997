/**
 * The command table and top-level dispatch: `--help`, `--version`, unknown commands, and
 * turning any error into one line on stderr with an exit code (2 for usage mistakes).
 *
 * @module
 */
import { visible } from "./_terminal.ts";
import type { CommandModule } from "./_args.ts";
import { eprintln, println } from "./_args.ts";
import { exitCodeFor, QpqError, toQpqError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { ForwardedExit, setCommandRunner } from "./_control.ts";

/** One entry of the command table. */
export interface CommandEntry {
  /** One-line summary for `qpq --help`. */
  summary: string;
  /** Lazy import of the command module. */
  load: () => Promise<CommandModule>;
}

/** Every subcommand. Literal import paths keep `deno compile` able to embed them. */
export const COMMANDS: Record<string, CommandEntry> = {
  server: { summary: "run the server", load: () => import("./server.ts") },
  demo: {
    summary: "start a local server, ping it, run the two-party group demo",
    load: () => import("./demo.ts"),
  },
  "register-user": {
    summary: "create your identity and register on the server",
    load: () => import("./register_user.ts"),
  },
  login: { summary: "log in (OPAQUE) and keep the session", load: () => import("./login.ts") },
  logout: {
    summary: "revoke the session (--everywhere: every session of the account)",
    load: () => import("./logout.ts"),
  },
  passwd: {
    summary: "change your password (ends your other sessions)",
    load: () => import("./passwd.ts"),
  },
  whoami: { summary: "show identity, server and conversations", load: () => import("./whoami.ts") },
  ping: { summary: "measure round trips to a server", load: () => import("./ping.ts") },
  health: { summary: "show a server's status", load: () => import("./health.ts") },
  dm: { summary: "open a direct message with a user", load: () => import("./dm.ts") },
  "create-group": { summary: "create a group", load: () => import("./create_group.ts") },
  invite: { summary: "add users to a group", load: () => import("./invite.ts") },
  join: { summary: "accept pending invitations", load: () => import("./join.ts") },
  requests: {
    summary: "list DMs and invitations from people who are not contacts",
    load: () => import("./requests.ts"),
  },
  accept: { summary: "accept a request (show it)", load: () => import("./accept.ts") },
  block: { summary: "block a user (or list blocked users)", load: () => import("./block.ts") },
  unblock: { summary: "unblock a user", load: () => import("./unblock.ts") },
  remove: { summary: "remove a member from a group", load: () => import("./remove.ts") },
  leave: { summary: "leave a group", load: () => import("./leave.ts") },
  members: { summary: "list a conversation's members", load: () => import("./members.ts") },
  admin: { summary: "grant or revoke admin of a group", load: () => import("./admin.ts") },
  describe: { summary: "set a group's topic (admins)", load: () => import("./describe.ts") },
  rename: { summary: "rename a group (admins)", load: () => import("./rename.ts") },
  disappear: {
    summary: "set a group's disappearing-message timer",
    load: () => import("./disappear.ts"),
  },
  list: { summary: "list conversations", load: () => import("./list.ts") },
  verify: {
    summary: "show the safety number shared with a contact",
    load: () => import("./verify.ts"),
  },
  update: { summary: "self-update your keys in groups", load: () => import("./update.ts") },
  send: { summary: "send a message (DM, group or all)", load: () => import("./send.ts") },
  react: { summary: "react to a message (again: withdraw)", load: () => import("./react.ts") },
  receipts: {
    summary: "who got and read a message; read receipts on|off",
    load: () => import("./receipts.ts"),
  },
  edit: { summary: "edit one of your messages", load: () => import("./edit.ts") },
  delete: {
    summary: "delete one of your messages for everyone",
    load: () => import("./delete.ts"),
  },
  recv: { summary: "receive and print messages", load: () => import("./recv.ts") },
  history: {
    summary: "print a conversation's stored messages",
    load: () => import("./history.ts"),
  },
  chat: { summary: "chat interactively in one conversation", load: () => import("./chat.ts") },
  repl: { summary: "the interactive messenger", load: () => import("./repl.ts") },
  "bench-load": {
    summary: "load test: many real clients, throughput, latency, loss",
    load: () => import("./bench_load.ts"),
  },
  "demo-group": {
    summary: "two identities form a group and talk (against --server)",
    load: () => import("./demo_group.ts"),
  },
};

// commands served to other processes beside an open REPL run through this same table
setCommandRunner((args) => runMain(args, COMMANDS));

/** Top-level help text. */
export function mainUsage(commands: Record<string, CommandEntry>): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length)) + 2;
  const lines = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}${c.summary}`);
  return `qpq ${VERSION} — end-to-end encrypted messaging over QUIC and MLS

Usage: qpq <command> [options]
       qpq <command> --help

Commands:
${lines.join("\n")}

Options:
  -h, --help     show this help
  -V, --version  show the version`;
}

function debugEnabled(): boolean {
  try {
    return Deno.env.get("QPQ_LOG") === "debug";
  } catch {
    return false;
  }
}

/** Run qpq with `args`; resolves to the process exit code. */
export async function runMain(
  args: string[],
  commands: Record<string, CommandEntry>,
): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    println(mainUsage(commands));
    return name === undefined ? 2 : 0;
  }
  if (name === "-V" || name === "--version" || name === "version") {
    println(`qpq ${VERSION}`);
    return 0;
  }
  const entry = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!entry) {
    const hint = name.startsWith("-") ? `Unknown option ${name}` : `Unknown command "${name}"`;
    eprintln(`qpq: ${hint} (see qpq --help)`);
    return 2;
  }
  try {
    const mod = await entry.load();
    return await mod.run(rest);
  } catch (e) {
    if (e instanceof ForwardedExit) return e.exitCode;
    const err = toQpqError(e);
    if (err instanceof QpqError && err.code === "internal") {
      const cause = err.cause instanceof Error ? err.cause : undefined;
      eprintln(`qpq: internal error: ${visible(cause?.message.split("\n")[0] ?? err.message)}`);
      if (debugEnabled() && cause?.stack) eprintln(cause.stack);
    } else {
      eprintln(`qpq: ${visible(err.message)}`);
    }
    return exitCodeFor(err);
  }
}
