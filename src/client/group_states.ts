/**
 * The one owner of the client's MLS group states. A conversation's state is decoded from
 * the store at most once while the client runs and kept in memory; every part (groups,
 * inbox, outbox refresh, maintenance) reads it here and stores a new one here, writing
 * only what changed.
 *
 * ```
 * open(meta) ─► memory copy under meta.stateTag? ─ yes ─► that state
 *                                               └ no ──► store.group (bytes + secrets)
 *                                                        ─► decode ─► kept
 * save(meta, state, patch) ─► diff against the kept copy (encodeGroupStateChange)
 *     only ratchets moved ─► store.putGroupSecrets: the changed secret rows + new tag
 *     else ───────────────► store.putGroup: bytes (encoded once) + summary + changed rows
 * update(meta, patch)      ─► store.putGroupMeta: the state, its tag and the copy stay
 * ```
 *
 * A stored state is its bytes (everything but the secret trees) and one secret per
 * secret-tree node of the current and retained epochs: an application message, sent or
 * received, moves one ratchet and writes one secret row (docs/architecture.md, "The write
 * path"). A state stored whole by an earlier build is read as it is and split at its next
 * save.
 *
 * The memory copy is trusted only while its tag is the stored record's: the store gives
 * every stored state a new random tag, so a write the enclosing transaction rolled back, a
 * state written by someone else (a test damaging it, a restore) or a failed save makes the
 * next `open` decode the stored bytes again. Ordering promises are the callers' and do not
 * change: the new state is stored (in one transaction with what must go with it) before
 * anything it produced is sent or acknowledged.
 *
 * Beside each state the record holds its {@link GroupSummary} (epoch, suite, roster,
 * pending commit, pending proposals), so listing and maintenance read small rows and never
 * decode; records stored by earlier builds get theirs once ({@link fillSummaries}).
 *
 * @module
 */
import {
  decodeGroupState,
  encodeGroupStateChange,
  isMlsSuiteName,
  listMembers,
  type MlsGroupState,
  type MlsSuiteName,
  peekGroupStateSuite,
} from "../mls/mod.ts";
import { InternalError } from "../errors.ts";
import type { GroupMeta, GroupRecord, GroupSummary, LocalState } from "../store/client/mod.ts";

/** The version byte of a split group state (`encodeGroupStateChange`). */
const SPLIT_VERSION = 2;

/** A group record as read without its state (with or without its tag). */
export type GroupFields = Omit<GroupRecord, "state"> & { stateTag?: string };

/** What a group state says about itself, as stored beside it. */
export function summarize(state: MlsGroupState): GroupSummary {
  return {
    epoch: Number(state.epoch),
    suite: state.suite,
    members: listMembers(state).map((m) => m.username),
    pendingCommit: state.hasPendingCommit,
    pendingProposals: state.pendingProposals,
  };
}

/** The one owner of decoded MLS group states (see the module doc). */
export class GroupStates {
  readonly #store: LocalState;
  /** Memory copies by channel; `split`: stored as bytes and secrets (a change is a diff). */
  readonly #decoded = new Map<string, { tag: string; state: MlsGroupState; split: boolean }>();
  /** How many times a stored state was decoded (for tests and benchmarks). */
  decodes = 0;

  constructor(store: LocalState) {
    this.#store = store;
  }

  /** The record of a channel without its state, or undefined when we are not in it. */
  meta(channelId: string): GroupMeta | undefined {
    return this.#store.groupMeta(channelId);
  }

  /** Every group record without its state, by channel id. */
  list(): GroupMeta[] {
    return this.#store.listGroupMeta();
  }

  /**
   * The decoded state of a record just read with {@link meta} or {@link list}: from memory
   * when it is the stored one, else decoded (and kept).
   *
   * @throws ValidationError when the stored state cannot be read
   */
  open(meta: GroupMeta): MlsGroupState {
    const kept = this.#decoded.get(meta.channelId);
    if (kept !== undefined && kept.tag === meta.stateTag && meta.stateTag !== "") {
      return kept.state;
    }
    this.#decoded.delete(meta.channelId);
    const record = this.#store.group(meta.channelId);
    if (record === undefined) throw new InternalError("A group record vanished while read");
    this.decodes++;
    const state = decodeGroupState(record.state, record.secrets ?? []);
    const split = record.state[4] === SPLIT_VERSION;
    if (meta.stateTag !== "") {
      this.#decoded.set(meta.channelId, { tag: meta.stateTag, state, split });
    }
    return state;
  }

  /**
   * Store a group's new state with the record's fields (`meta` and then `patch`), with its
   * summary, writing what changed since the stored state (see the module doc): when only
   * ratchets moved (an application message sent or received) the changed secrets alone and
   * a new tag; else the state's bytes (encoded once) and the changed secrets. In a
   * transaction, the memory copy is current only if the transaction commits (the tag tells).
   */
  save(meta: GroupFields, state: MlsGroupState, patch: Partial<GroupRecord> = {}): void {
    const { stateTag: _, secrets: __, ...fields } = { ...meta, ...patch } as GroupFields & {
      secrets?: unknown;
    };
    const id = meta.channelId;
    const kept = this.#decoded.get(id);
    this.#decoded.delete(id);
    // the diff's base: the memory copy, if it is what is stored (same tag, split form)
    const base = kept !== undefined && kept.split && meta.stateTag !== undefined &&
        meta.stateTag !== "" && kept.tag === meta.stateTag
      ? kept
      : undefined;
    const change = encodeGroupStateChange(state, base?.state);
    const same = Object.keys(patch).length === 0;
    let tag: string | undefined;
    if (base !== undefined && change.state === undefined) {
      const put = () => {
        tag = this.#store.putGroupSecrets(id, base.tag, change);
        if (tag !== undefined && !same) this.#store.putGroupMeta(fields);
      };
      // one message (no field changed): one write, no savepoint around it
      if (same) put();
      else this.#store.transaction(put);
    }
    if (tag === undefined) {
      // the bytes changed, or the stored record is not the base after all: write it whole
      const whole = base !== undefined && this.#store.groupMeta(id)?.stateTag === base.tag
        ? change
        : encodeGroupStateChange(state);
      tag = this.#store.putGroup({
        ...fields,
        state: whole.state ?? encodeGroupStateChange(state).state!,
        summary: summarize(state),
      }, whole);
    }
    this.#decoded.set(id, { tag, state, split: true });
  }

  /** Change a record's fields but not its state (nor its memory copy). */
  update(meta: GroupFields, patch: Partial<GroupRecord> = {}): void {
    const { stateTag: _, state: __, ...fields } = { ...meta, ...patch } as GroupFields & {
      state?: Uint8Array;
    };
    this.#store.putGroupMeta(fields);
  }

  /** Forget a group (we left or were removed); true when it existed. */
  delete(channelId: string): boolean {
    this.#decoded.delete(channelId);
    return this.#store.deleteGroup(channelId);
  }

  /** Drop the memory copy of a channel's state (the next open decodes the stored one). */
  forget(channelId: string): void {
    this.#decoded.delete(channelId);
  }

  /**
   * The summary of a record: the stored one, or (a record of an earlier build) read from
   * its state once and stored. Undefined when the state cannot be read.
   */
  summary(meta: GroupMeta): GroupSummary | undefined {
    if (meta.summary !== undefined) return meta.summary;
    let state: MlsGroupState;
    try {
      state = this.open(meta);
    } catch {
      return undefined;
    }
    const summary = summarize(state);
    this.#store.putGroupMeta({ ...withoutTag(meta), summary });
    return summary;
  }

  /** The cipher suite of a record, without decoding its state when it has a summary. */
  suite(meta: GroupMeta): MlsSuiteName | undefined {
    const s = meta.summary?.suite;
    if (s !== undefined) return isMlsSuiteName(s) ? s : undefined;
    const record = this.#store.group(meta.channelId);
    return record === undefined ? undefined : peekGroupStateSuite(record.state);
  }

  /**
   * Give every record stored by an earlier build (no summary) its summary, in one
   * transaction: after this, listing and maintenance never decode a state. Unreadable
   * states are left as they are (the conversation is marked broken when used).
   */
  fillSummaries(): void {
    const missing = this.#store.listGroupMeta().filter((m) =>
      m.summary === undefined && m.broken === undefined
    );
    if (missing.length === 0) return;
    this.#store.transaction(() => {
      for (const m of missing) this.summary(m);
    });
  }
}

/** The record's fields without its tag. */
export function withoutTag(meta: GroupFields): Omit<GroupRecord, "state"> {
  const { stateTag: _, ...rest } = meta;
  return rest;
}
