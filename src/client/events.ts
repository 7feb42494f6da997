/**
 * What the client reports while it works: incoming messages, membership changes, a
 * conversation that broke or healed, progress and warnings. The CLI prints them; the
 * simulation checks them.
 *
 * @module
 */
import type { Conversation, StoredMessage } from "../store/client/mod.ts";
import type { GroupSettings } from "../mls/mod.ts";

export type { GroupSettings };

/** Something the client reports while it works. */
export type ClientEvent =
  | { kind: "message"; conversation: Conversation; message: StoredMessage }
  /**
   * A member changed a message: `message` is it as it is now. `emoji` is the reaction
   * (empty: withdrawn).
   */
  | {
    kind: "changed";
    conversation: Conversation;
    message: StoredMessage;
    change: "reaction" | "edit" | "deletion";
    by: string;
    emoji?: string;
  }
  /** A message arrived that this device cannot read (stored as a placeholder). */
  | { kind: "unreadable"; conversation: Conversation; message: StoredMessage; reason: string }
  | { kind: "joined"; conversation: Conversation; inviter: string }
  /**
   * Someone who is not a contact invited us (a group: at the Welcome, `messages` 0) or
   * wrote to us (a DM: at its first message, `messages` 1). Reported once per request;
   * nothing else of it is reported until the user accepts.
   */
  | { kind: "request"; conversation: Conversation; from: string; messages: number }
  /** A broken conversation works again: another member re-added us. */
  | { kind: "rejoined"; conversation: Conversation; by: string }
  | {
    kind: "members";
    conversation: Conversation;
    added: string[];
    /** Removed by `by` (not counting those who left). */
    removed: string[];
    /** Left on their own (their leave was committed by `by`). */
    left: string[];
    by: string;
  }
  | { kind: "removed"; conversation: Conversation; by: string }
  /**
   * An admin changed the group's roles or settings (`before` undefined: a legacy group).
   * `renamedFrom`: the admin renamed it, and this was its label (`conversation` has the
   * new one).
   */
  | {
    kind: "settings";
    conversation: Conversation;
    by: string;
    before: GroupSettings | undefined;
    after: GroupSettings;
    renamedFrom?: string;
  }
  /** Our leave was committed (by `by`): we are out of the group now. */
  | { kind: "left"; conversation: Conversation; by: string }
  /** This conversation's group state cannot advance; the rest of the account works. */
  | { kind: "broken"; conversation: Conversation; reason: string }
  /**
   * A member is typing in a conversation (`active` false: stopped). Ephemeral: nothing of
   * it is stored; show it for about TYPING_SHOWN_MS, or until their next message.
   */
  | { kind: "typing"; conversation: Conversation; from: string; active: boolean }
  | { kind: "progress"; text: string }
  | { kind: "warning"; text: string };

/** Where events go. */
export type EventSink = (e: ClientEvent) => void;
