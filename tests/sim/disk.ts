/**
 * The in-process server's disk (`--mode memory`): what survives a power cut, and a disk
 * that fills and frees. Real SQLite files, two seams of the store (`syncData`, `onOpen`):
 *
 * ```
 * store COMMIT ─► WAL file (page cache) ─► syncData seam ─► durable image := db + WAL bytes
 * power cut ─► the disk dies (syncs fail) ─► store closed ─► files := durable image ─► reopen
 * fill ─► PRAGMA max_page_count = page_count (SQLite's own SQLITE_FULL) ─► free: unlimited
 * ```
 *
 * The image is taken when the store fsyncs (the seam is the only way the store makes the
 * WAL durable), so a power cut drops exactly the writes no fsync covered — an answer the
 * store released before its fsync (a bug) shows as a message lost after its ack.
 * Client stores need no such seam: they run `synchronous = FULL` (each COMMIT is fsynced
 * before it returns), so a client power cut loses nothing a crash at a write boundary
 * would not; the client crash faults cover it.
 *
 * @module
 */
import type { DatabaseSync } from "node:sqlite";

const FILES = ["qpq.db", "qpq.db-wal"] as const;

/** The server's simulated disk in `dir` (the data dir of the in-process server). */
export class SimDisk {
  readonly dir: string;
  #image = new Map<string, Uint8Array | undefined>();
  #dead = false;
  #db: DatabaseSync | undefined;
  #full = false;
  /** Durable images taken (fsyncs seen). */
  syncs = 0;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The store's fsync seam: take the durable image (fails while the power is off). */
  readonly syncData = (_file: Deno.FsFile): Promise<void> => {
    if (this.#dead) return Promise.reject(new Error("I/O error (simulated power cut)"));
    this.#snapshot();
    return Promise.resolve();
  };

  /** The store's open seam: keeps the handle (to fill the disk) and images the open state. */
  readonly onOpen = (db: DatabaseSync): void => {
    this.#db = db;
    if (this.#full) this.fill();
    // opening runs synchronous = FULL (migrations, sealing): what it wrote is durable
    this.#snapshot();
  };

  #snapshot(): void {
    this.syncs++;
    for (const f of FILES) {
      try {
        this.#image.set(f, Deno.readFileSync(`${this.dir}/${f}`));
      } catch {
        this.#image.set(f, undefined);
      }
    }
  }

  /** The power goes: nothing reaches the disk any more (call before closing the store). */
  cut(): void {
    this.#dead = true;
  }

  /** After the store closed: the files are what was durable at the last fsync. */
  restore(): void {
    for (const f of FILES) {
      const bytes = this.#image.get(f);
      if (bytes === undefined) {
        try {
          Deno.removeSync(`${this.dir}/${f}`);
        } catch { /* none */ }
      } else Deno.writeFileSync(`${this.dir}/${f}`, bytes, { mode: 0o600 });
    }
    // the shared-memory index is rebuilt from the WAL on open
    try {
      Deno.removeSync(`${this.dir}/qpq.db-shm`);
    } catch { /* none */ }
    this.#dead = false;
  }

  /** True while the disk is full. */
  get full(): boolean {
    return this.#full;
  }

  /** The disk fills: no new page can be allocated (SQLITE_FULL), freed pages still serve. */
  fill(): void {
    this.#full = true;
    const db = this.#db;
    if (!db) return;
    const row = db.prepare("PRAGMA page_count").get() as { page_count: number };
    db.exec(`PRAGMA max_page_count = ${row.page_count}`);
  }

  /** Space is freed again. */
  free(): void {
    this.#full = false;
    try {
      this.#db?.exec("PRAGMA max_page_count = 1073741823");
    } catch { /* closed: the next open starts unlimited */ }
  }
}
