/**
 * The state tags a {@link ClientStore} handle moved without writing them: a change of a
 * group's secrets only (one application message sent or received) gives the state a new
 * tag held here, in memory, instead of rewriting the group's row in `group_tags`.
 *
 * ```
 * putGroup ─► new tag written to group_tags ─► the entry here dropped
 * putGroupSecrets(base) ─► tag of the group = base? ─ no ──► refused, nothing written
 *                          (the entry's, else the row's) └ yes ─► secret rows written,
 *                                                                 new tag kept here only
 * a transaction rolled back (or a savepoint) ─► every entry it set or dropped restored
 * ```
 *
 * What the tag promises is unchanged: it names one write of a state through this handle,
 * so a memory copy decoded or saved under it is the stored state (group_states.ts), and a
 * change made against another tag is refused. A tag kept here is valid only beside the row
 * tag it was made over: a row tag changed behind this handle's back (a test writing the
 * database) wins. No second writer can otherwise exist: a state file is locked by its one
 * process and opened once in it, and `reopen` of a state in memory closes the handle
 * before it (whose entries die with it). Tags made here are never row tags: they carry a
 * per-handle random prefix and a counter.
 *
 * @module
 */
import { toHex } from "../../bytes.ts";

/** The in-memory tag of a group and the row tag it was made over. */
interface Moved {
  row: string;
  tag: string;
}

/** In-memory state tags of one open handle, undone with the transactions that set them. */
export class StateTags {
  readonly #moved = new Map<string, Moved>();
  /** (channel, entry before) of each change since the outermost transaction began. */
  readonly #undo: [string, Moved | undefined][] = [];
  readonly #prefix = `m${toHex(crypto.getRandomValues(new Uint8Array(6)))}.`;
  #count = 0;

  /** The tag of a group whose row tag is `row` ("" when it has none). */
  tagOf(channelId: string, row: string): string {
    const m = this.#moved.get(channelId);
    return m !== undefined && m.row === row ? m.tag : row;
  }

  /** A new tag for a group whose row tag is `row` (a change of its secrets only). */
  move(channelId: string, row: string): string {
    const tag = `${this.#prefix}${++this.#count}`;
    this.#set(channelId, { row, tag });
    return tag;
  }

  /** Forget the group's in-memory tag (its row tag was written, or the group deleted). */
  drop(channelId: string): void {
    if (this.#moved.has(channelId)) this.#set(channelId, undefined);
  }

  /** Where a transaction begins: {@link rollBack} to it undoes what came after. */
  mark(): number {
    return this.#undo.length;
  }

  /** Undo every change after `mark` (its transaction or savepoint was rolled back). */
  rollBack(mark: number): void {
    while (this.#undo.length > mark) {
      const [channelId, before] = this.#undo.pop()!;
      if (before === undefined) this.#moved.delete(channelId);
      else this.#moved.set(channelId, before);
    }
  }

  /** The outermost transaction committed: its changes stay. */
  committed(): void {
    this.#undo.length = 0;
  }

  #set(channelId: string, m: Moved | undefined): void {
    this.#undo.push([channelId, this.#moved.get(channelId)]);
    if (m === undefined) this.#moved.delete(channelId);
    else this.#moved.set(channelId, m);
  }
}
