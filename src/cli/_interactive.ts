/**
 * The interactive loop shared by `qpq repl` and `qpq chat`: slash commands, a plain line
 * sends to the active conversation, incoming messages appear above the prompt without
 * garbling the line being typed, history and tab completion (node:readline).
 *
 * @module
 */
import { exclusive } from "./_control.ts";
import { visible, visibleLines } from "./_terminal.ts";
import * as readline from "node:readline";
import process from "node:process";
import type { QpqClient } from "../client/client.ts";
import type { ClientEvent } from "../client/client.ts";
import type { Conversation } from "../client/local.ts";
import { parseUsername } from "../client/conversations.ts";
import { fingerprint } from "../crypto/mod.ts";
import { QpqError, toQpqError, UsageError } from "../errors.ts";
import { TYPING_SHOWN_MS } from "../limits.ts";
import {
  eventLine,
  historyLines,
  numberedMessage,
  otherMembers,
  requestLine,
  unreadText,
} from "./_client.ts";
import { leaveLine, membershipLines, rosterLine, unblockedLine } from "./_membership.ts";
import { receiptLines, renamedLine } from "./_lines.ts";

/** The text of `line` after its first `words` words (the command and its arguments). */
function restAfter(line: string, words: number): string {
  let rest = line.trimStart();
  for (let i = 0; i < words; i++) rest = rest.replace(/^\S+\s*/, "");
  if (rest.length === 0) throw new UsageError("Nothing to send: the text is empty");
  return rest;
}

/** A command's line as a REPL notice (`Left #g` → `* left #g`). */
function lower(line: string): string {
  return line.charAt(0).toLowerCase() + line.slice(1);
}

/** Each slash command: its usage, the most words it takes, and what it does. */
const COMMANDS: [cmd: string, usage: string, maxArgs: number, what: string][] = [
  ["/dm", "/dm <user>", 1, "start or open a DM"],
  ["/create-group", "/create-group <name>", 1, "create a group (one word)"],
  ["/invite", "/invite <user>...", Infinity, "add users to the current group"],
  ["/join", "/join", 0, "accept pending invitations (requests too)"],
  ["/requests", "/requests", 0, "DMs and invitations from people not in your contacts"],
  ["/accept", "/accept @user|#group", 1, "accept a request and show its messages"],
  ["/block", "/block [@user]", 1, "block a user (their messages are dropped); list blocked"],
  ["/unblock", "/unblock @user", 1, "unblock a user"],
  ["/switch", "/switch @user|#group", 1, "change the active conversation"],
  ["/list", "/list (/ls)", 0, "list conversations"],
  ["/ls", "", 0, ""],
  ["/members", "/members", 0, "members of the current conversation"],
  ["/history", "/history [conv] [n]", 2, "last n messages (20) here or of conv, numbered [N]"],
  ["/reply", "/reply <N> <text>", Infinity, "answer message [N] of /history"],
  ["/react", "/react <N> <emoji>", 2, "react to message [N] (again: withdraw)"],
  ["/edit", "/edit <N> <text>", Infinity, "change the text of your message [N]"],
  ["/delete", "/delete <N>", 1, "delete your message [N] for everyone"],
  ["/receipts", "/receipts <N>|on|off", 1, "who got and read your message [N]; read receipts"],
  ["/remove", "/remove <user>...", Infinity, "remove members from the current group"],
  ["/rename", "/rename <new-name>", 1, "rename the current group (admins)"],
  ["/leave", "/leave", 0, "leave the current group"],
  ["/sync", "/sync", 0, "receive what is waiting now"],
  ["/verify", "/verify <user>", 1, "safety number to compare with a contact"],
  ["/update", "/update", 0, "fresh keys for you in the current group"],
  ["/whoami", "/whoami", 0, "identity and status"],
  ["/help", "/help", 0, "this help"],
  ["/quit", "/quit", 0, "exit (also Ctrl-D on an empty line)"],
];
const USAGE_WIDTH = Math.max(...COMMANDS.map(([, u]) => u.length)) + 2;

/** Slash commands with their one-line help, aligned (an alias has an empty line). */
export const SLASH_COMMANDS: Record<string, string> = Object.fromEntries(
  COMMANDS.map(([cmd, usage, , what]) => [cmd, usage ? usage.padEnd(USAGE_WIDTH) + what : ""]),
);

/** Commands whose arguments are users, and those whose argument is a conversation (Tab). */
const USER_ARGS = new Set(["/dm", "/invite", "/remove", "/verify", "/block", "/unblock"]);
const CONVERSATION_ARGS = new Set(["/switch", "/accept"]);

/** The most words each command takes; more is a usage error, not silently dropped. */
const MAX_ARGS = new Map(COMMANDS.map(([cmd, usage, max]) => [cmd, [max, usage] as const]));

/** Options of {@link runInteractive}. */
export interface InteractiveOptions {
  /** Fix the loop to one conversation (`qpq chat`). */
  fixed?: Conversation;
  /** Start with this conversation active. */
  initial?: Conversation;
}

/**
 * Run the loop until /quit, Ctrl-D or end of input. Returns the exit code. Events from
 * the client should be routed to the returned printer (see `printer`).
 */
export class Interactive {
  #client: QpqClient;
  #rl: readline.Interface | undefined;
  #active: Conversation | undefined;
  #fixed: Conversation | undefined;
  #tty: boolean;
  /** Who is typing where (`conversation id`, newline, user): shown until the timer fires. */
  #typing = new Map<
    string,
    { conv: Conversation; from: string; timer: ReturnType<typeof setTimeout> }
  >();

  constructor(client: QpqClient, options: InteractiveOptions = {}) {
    this.#client = client;
    this.#fixed = options.fixed;
    this.#active = options.fixed ?? options.initial;
    this.#tty = Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
  }

  /** Print a line above the prompt, keeping what the user is typing intact. */
  print(raw: string): void {
    const line = visibleLines(raw);
    const out = process.stdout;
    if (this.#rl && this.#tty) {
      readline.clearLine(out, 0);
      readline.cursorTo(out, 0);
      out.write(line + "\n");
      this.#rl.prompt(true);
    } else {
      out.write(line + "\n");
    }
  }

  /** Handle a client event (incoming message, join, …). */
  onEvent(e: ClientEvent): void {
    if (e.kind === "typing") return this.#onTyping(e);
    if (e.kind === "message" && this.#fixed && e.conversation.id !== this.#fixed.id) return;
    // their message is what they were typing: the indicator goes
    if (e.kind === "message") this.#stopTyping(e.conversation.id, e.message.sender);
    // removed from (or our leave committed in) the active group: the prompt stops naming it
    if (
      (e.kind === "removed" || e.kind === "left") && !this.#fixed &&
      this.#active?.id === e.conversation.id
    ) {
      this.#active = undefined;
      this.#rl?.setPrompt(this.#prompt());
    }
    const line = eventLine(e, false, this.#client.store);
    // the prompt counts what arrived elsewhere: fresh before print shows it again
    if (e.kind === "message") this.#rl?.setPrompt(this.#prompt());
    if (line) this.print(line);
  }

  /**
   * A member is typing: a transient line for TYPING_SHOWN_MS (or until their message). At a
   * terminal it is part of the prompt (`[#team] (alice is typing…) > `), so it goes without
   * a trace; elsewhere one `* alice is typing…` line per burst of indicators.
   */
  #onTyping(e: Extract<ClientEvent, { kind: "typing" }>): void {
    if (!this.#rl || (this.#fixed && e.conversation.id !== this.#fixed.id)) return;
    const key = `${e.conversation.id}\n${e.from}`;
    const had = this.#typing.get(key);
    if (had) clearTimeout(had.timer);
    if (!e.active) return this.#stopTyping(e.conversation.id, e.from);
    const timer = setTimeout(() => this.#stopTyping(e.conversation.id, e.from), TYPING_SHOWN_MS);
    this.#typing.set(key, { conv: e.conversation, from: e.from, timer });
    if (this.#tty) this.#rePrompt();
    else if (!had) this.print(`* ${this.#typingText(e.conversation, e.from)}`);
  }

  /** `alice is typing…`, naming the conversation when it is not the active one. */
  #typingText(conv: Conversation, from: string): string {
    const where = conv.id === this.#active?.id ? "" : ` in ${visible(conv.name)}`;
    return `${visible(from)} is typing…${where}`;
  }

  #stopTyping(convId: string, from: string): void {
    const key = `${convId}\n${from}`;
    const had = this.#typing.get(key);
    if (!had) return;
    clearTimeout(had.timer);
    this.#typing.delete(key);
    if (this.#rl && this.#tty) this.#rePrompt();
  }

  /** Show the prompt again (what is typing changed), keeping the line being typed. */
  #rePrompt(): void {
    const rl = this.#rl;
    if (!rl) return;
    rl.setPrompt(this.#prompt());
    readline.clearLine(process.stdout, 0);
    readline.cursorTo(process.stdout, 0);
    rl.prompt(true);
  }

  /**
   * `[#team] > `, with `(3 unread) ` for messages of the other conversations not yet
   * read. The active conversation is on screen: showing the prompt marks it read.
   */
  #prompt(): string {
    const c = this.#client;
    const active = this.#active ? this.#refresh(this.#active) : undefined;
    if (active) void c.markRead(active);
    let unread = 0;
    if (!this.#fixed) {
      for (const x of c.listConversations()) if (x.id !== active?.id) unread += x.unread;
    }
    const count = unread > 0 ? `(${unreadText(unread)}) ` : "";
    const typing = this.#tty
      ? [...this.#typing.values()].map((t) => `(${this.#typingText(t.conv, t.from)}) `).join("")
      : "";
    return active ? `[${visible(active.name)}] ${typing}${count}> ` : `${typing}${count}> `;
  }

  /**
   * Tab: the first word completes a command; a command's argument a user (`/dm`, `/invite`,
   * `/verify` …: DM partners and members of our groups) or a conversation (`/switch`,
   * `/accept`: `@user` and `#group`); in a message, a word starting with `@` or `#`.
   */
  #completer = (line: string): [string[], string] => {
    const words = line.split(" ");
    const last = words[words.length - 1] ?? "";
    let pool: string[] = [];
    if (words.length === 1 && (last === "" || last.startsWith("/"))) {
      pool = COMMANDS.map(([cmd]) => cmd);
    } else {
      const cmd = words[0]!;
      const users = () => this.#knownUsers();
      const groups = () =>
        this.#client.listConversations().filter((c) => c.kind === "group").map((c) => c.name);
      const at = (names: string[]) => names.map((u) => `@${u}`);
      if (USER_ARGS.has(cmd)) {
        pool = cmd === "/unblock" ? at(this.#client.listBlocked()) : at(users());
        if (!last.startsWith("@")) pool = pool.map((u) => u.slice(1));
      } else if (CONVERSATION_ARGS.has(cmd)) pool = [...at(users()), ...groups()];
      else if (!cmd.startsWith("/") && /^[@#]/.test(last)) pool = [...at(users()), ...groups()];
    }
    return [pool.filter((p) => p.startsWith(last)).sort(), last];
  };

  /** Users we know: DM partners and members of our groups (not ourselves). */
  #knownUsers(): string[] {
    const c = this.#client;
    const users = new Set<string>();
    for (const conv of c.listConversations()) {
      if (conv.kind === "dm" && conv.peer !== undefined) users.add(conv.peer);
      if (conv.kind !== "group") continue;
      try {
        for (const m of c.members(conv.name)) users.add(m);
      } catch { /* a group without a state yet: none to offer */ }
    }
    users.delete(c.username);
    return [...users];
  }

  /** Run until the user quits. */
  async run(): Promise<number> {
    const rl = readline.createInterface({
      input: process.stdin,
      output: process.stdout,
      completer: this.#completer,
      terminal: this.#tty,
      historySize: 500,
    });
    this.#rl = rl;
    rl.setPrompt(this.#prompt());
    // as shells do: Ctrl-C drops the line being typed; Ctrl-D on an empty line quits
    rl.on("SIGINT", () => {
      if (rl.line.length === 0) this.print("* Ctrl-D or /quit exits");
      rl.write(null, { ctrl: true, name: "e" });
      rl.write(null, { ctrl: true, name: "u" });
    });
    // typing a line (not a command) tells the active conversation, at most every few
    // seconds (QpqClient.typing): keystrokes reach us at a terminal only
    const onKey = () => {
      const text = rl.line;
      const conv = this.#active;
      if (!conv || text.length === 0 || (text.startsWith("/") && !text.startsWith("//"))) return;
      this.#client.typing(conv).catch(() => {});
    };
    if (this.#tty) process.stdin.on("keypress", onKey);
    let quitted = false;
    if (this.#tty) rl.prompt();
    try {
      for await (const raw of rl) {
        const line = raw.trim();
        if (line.length > 0) {
          let quit = false;
          try {
            // one at a time with commands other processes run here (the control socket)
            quit = await exclusive(this.#client, () => this.#handle(line));
          } catch (e) {
            const err = toQpqError(e);
            this.print(
              `error: ${
                err instanceof QpqError && err.code !== "internal" ? err.message : "internal error"
              }`,
            );
          }
          if (quit) {
            quitted = true;
            break;
          }
        }
        rl.setPrompt(this.#prompt());
        if (this.#tty) rl.prompt();
      }
    } finally {
      if (this.#tty) process.stdin.off("keypress", onKey);
      for (const t of this.#typing.values()) clearTimeout(t.timer);
      this.#typing.clear();
      rl.close();
      this.#rl = undefined;
    }
    // Ctrl-D leaves the cursor after the prompt: end its line, so the shell's starts clean
    if (this.#tty && !quitted) process.stdout.write("\n");
    return 0;
  }

  #current(): Conversation {
    if (!this.#active) {
      throw new UsageError("No active conversation: /dm <user>, /create-group <name> or /switch");
    }
    return this.#refresh(this.#active);
  }

  /**
   * A conversation this device has, by `#group`, `@user` or a bare name (the group of that
   * name, else the DM): never opens one.
   */
  #known(ref: string): Conversation {
    const c = this.#client;
    if (ref.startsWith("#") || ref.startsWith("@")) return c.conversation(ref);
    try {
      return c.conversation(`#${ref}`);
    } catch (e) {
      if (!(e instanceof QpqError && e.code === "not_found")) throw e;
      return c.conversation(`@${ref}`);
    }
  }

  /**
   * The conversation as stored now: a look-alike group that arrived since gives this one
   * its id suffix (`#team~3f2a`), and the old name no longer picks it.
   */
  #refresh(conv: Conversation): Conversation {
    const now = this.#client.store.getConversation(conv.id) ?? conv;
    if (this.#active?.id === conv.id) this.#active = now;
    if (this.#fixed?.id === conv.id) this.#fixed = now;
    return now;
  }

  /** Say so when what was just sent is queued. */
  #queuedNote(): void {
    const c = this.#client;
    // refused for now (disk full, quota): the warning already said why
    if (c.pendingCount() > 0 && c.queueRefusal() === undefined) {
      this.print("(queued: server unreachable, will send when it is back)");
    }
  }

  async #handle(line: string): Promise<boolean> {
    const c = this.#client;
    // "//text" sends "/text": a message may start with a slash
    if (!line.startsWith("/") || line.startsWith("//")) {
      const conv = this.#current();
      await c.send(conv.name, line.startsWith("//") ? line.slice(1) : line);
      this.#queuedNote();
      return false;
    }
    const [cmd, ...args] = line.trim().split(/\s+/) as [string, ...string[]];
    const need = (n: number, usage: string) => {
      if (args.length < n) throw new UsageError(`Usage: ${usage}`);
    };
    if (args[0] === "--help" && SLASH_COMMANDS[cmd]) {
      this.print(SLASH_COMMANDS[cmd]!);
      return false;
    }
    const arity = MAX_ARGS.get(cmd === "/ls" ? "/list" : cmd);
    if (arity !== undefined && args.length > arity[0]) {
      throw new UsageError(
        `Usage: ${arity[1]}${arity[0] === 0 ? " (no arguments)" : ""}: too many words`,
      );
    }
    if (this.#fixed && ["/dm", "/switch", "/create-group"].includes(cmd)) {
      throw new UsageError("This chat is fixed to one conversation: use qpq repl to switch");
    }
    switch (cmd) {
      case "/quit":
      case "/exit":
        return true;
      case "/help":
        for (const h of Object.values(SLASH_COMMANDS)) if (h) this.print(h);
        this.print("anything else is sent to the active conversation; //text sends /text");
        return false;
      case "/dm": {
        need(1, "/dm <user>");
        this.#active = await c.dm(args[0]!);
        this.print(`* now talking in ${this.#active.name}`);
        return false;
      }
      case "/create-group": {
        need(1, "/create-group <name>");
        this.#active = await c.createGroup(args[0]!);
        this.print(`* created ${this.#active.name}`);
        return false;
      }
      case "/invite": {
        need(1, "/invite <user>...");
        const conv = this.#current();
        const change = await c.invite(conv.name, args, (done, total) => {
          if (total >= 5) this.print(`* fetching KeyPackages ${done}/${total}`);
        });
        for (const line of membershipLines("invite", conv.name, change)) {
          this.print(`* ${lower(line)}`);
        }
        return false;
      }
      case "/join": {
        const before = new Set(c.listConversations().map((x) => x.id));
        await c.join();
        const joined = c.listConversations().filter((x) => !before.has(x.id) && x.kind !== "self");
        if (joined.length === 0) this.print("* no pending invitations");
        else if (!this.#active) this.#active = joined[0];
        return false;
      }
      case "/sync":
        await c.sync();
        return false;
      case "/requests": {
        const rs = c.requests();
        if (rs.length === 0) this.print("* no requests");
        for (const r of rs) this.print(requestLine(r.conversation, r.from, r.messages));
        return false;
      }
      case "/accept": {
        need(1, "/accept @user|#group");
        const accepted = c.accept(args[0]!); // "* joined …" and the held messages print as events
        if (!this.#active && !this.#fixed) this.#active = accepted[0];
        return false;
      }
      case "/block": {
        if (args.length === 0) {
          const blocked = c.listBlocked();
          if (blocked.length === 0) this.print("* no blocked users");
          for (const u of blocked) this.print(`blocked @${visible(u)}`);
          return false;
        }
        const user = args[0]!.replace(/^@/, "");
        const dropped = await c.block(user);
        this.print(
          `* blocked @${visible(user)}` +
            (dropped > 0 ? ` (dropped ${dropped} request${dropped === 1 ? "" : "s"})` : ""),
        );
        if (this.#active?.kind === "dm" && this.#active.peer === user && !this.#fixed) {
          this.#active = undefined;
        }
        return false;
      }
      case "/unblock": {
        need(1, "/unblock @user");
        const user = args[0]!.replace(/^@/, "");
        this.print(`* unblocked @${visible(user)}${unblockedLine(await c.unblock(user))}`);
        return false;
      }
      case "/verify": {
        need(1, "/verify <user>");
        const v = await c.verify(args[0]!);
        this.print(`safety number with ${parseUsername(args[0]!)}: ${v.safetyNumber}`);
        return false;
      }
      case "/update": {
        const conv = this.#current();
        await c.update(conv.name);
        this.print(`* new keys for you in ${conv.name}`);
        return false;
      }
      case "/switch": {
        need(1, "/switch @user|#group");
        this.#active = await c.resolve(args[0]!);
        this.print(`* now talking in ${this.#active.name}`);
        return false;
      }
      case "/list":
      case "/ls": {
        const list = c.listConversations();
        if (list.length === 0) this.print("* no conversations yet");
        for (const x of list) {
          const mark = x.id === this.#active?.id ? "*" : " ";
          const why = x.broken === undefined
            ? ""
            : `  (broken: ${x.broken}; waiting to be re-added)`;
          const unread = x.unread > 0 && x.id !== this.#active?.id
            ? `  (${unreadText(x.unread)})`
            : "";
          this.print(`${mark} ${x.name}${unread}${why}`);
        }
        return false;
      }
      case "/members": {
        const conv = this.#current();
        const members = c.members(conv.name);
        const admins = c.settings(conv.name)?.admins.filter((a) => members.includes(a));
        this.print(rosterLine(conv.name, members, admins));
        return false;
      }
      case "/history": {
        // `/history [count]` here, or `/history team|#team|@bob [count]` of another one
        const named = args[0] !== undefined && !/^[0-9]+$/.test(args[0]);
        const conv = named ? this.#known(args[0]!) : this.#current();
        const count = named ? args[1] : args[0];
        const n = count === undefined ? 20 : Number(count);
        if (!Number.isInteger(n) || n < 1) {
          throw new UsageError("Usage: /history [#group|@user] [count]");
        }
        const lines = historyLines(conv, c.history(conv.name, n), c.store, otherMembers(c, conv));
        for (const line of lines) {
          this.print(line);
        }
        return false;
      }
      case "/reply": {
        need(2, "/reply <N> <text>");
        const conv = this.#current();
        await c.send(conv.name, restAfter(line, 2), { replyTo: args[0]! });
        this.#queuedNote();
        return false;
      }
      case "/edit": {
        need(2, "/edit <N> <text>");
        const conv = this.#current();
        const m = await c.edit(conv.name, args[0]!, restAfter(line, 2));
        this.print(`* edited: ${numberedMessage(conv, m, c.store)}`);
        this.#queuedNote();
        return false;
      }
      case "/react": {
        need(2, "/react <N> <emoji>");
        const conv = this.#current();
        const m = await c.react(conv.name, args[0]!, args[1]!);
        this.print(`* reacted: ${numberedMessage(conv, m, c.store)}`);
        this.#queuedNote();
        return false;
      }
      case "/delete": {
        need(1, "/delete <N>");
        const conv = this.#current();
        const m = await c.deleteMessage(conv.name, args[0]!);
        this.print(`* deleted: ${numberedMessage(conv, m, c.store)}`);
        this.#queuedNote();
        return false;
      }
      case "/receipts": {
        need(1, "/receipts <N>|on|off");
        const arg = args[0]!;
        if (arg === "on" || arg === "off") {
          c.setReadReceipts(arg === "on");
          this.print(`* read receipts ${arg}`);
          return false;
        }
        const conv = this.#current();
        for (const l of receiptLines(c, conv.name, c.findMessage(conv.name, arg))) this.print(l);
        return false;
      }
      case "/remove": {
        need(1, "/remove <user>");
        const conv = this.#current();
        const change = await c.remove(conv.name, args);
        for (const line of membershipLines("remove", conv.name, change)) {
          this.print(`* ${lower(line)}`);
        }
        return false;
      }
      case "/rename": {
        need(1, "/rename <new-name>");
        const r = await c.rename(this.#current().name, args[0]!);
        this.#refresh(r.conversation);
        this.print(renamedLine(c.username, r.previousName, r.conversation.name, r.changed));
        return false;
      }
      case "/leave": {
        const conv = this.#current();
        this.print(`* ${lower(leaveLine(conv.name, await c.leave(conv.name)))}`);
        if (!this.#fixed) this.#active = undefined;
        return !!this.#fixed;
      }
      case "/whoami": {
        this.print(`${c.username} on ${c.server} (${c.connected ? "online" : "offline"})`);
        this.print(`identity fingerprint: ${fingerprint(c.identityPublicKey)}`);
        this.print(
          `active: ${this.#active?.name ?? "none"}; conversations: ${c.listConversations().length}`,
        );
        return false;
      }
      default:
        throw new UsageError(
          `Unknown command ${cmd}: /help lists them; //… sends a line starting with /`,
        );
    }
  }
}
