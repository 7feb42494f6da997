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
 *
 * Taking it costs what changed, not the size of the files (re-reading both at every fsync
 * was a quarter of a run's time): within one WAL generation (the same 32-byte WAL header)
 * SQLite only appends frames, and the image is taken between transactions, so only the
 * bytes past the last image are read. A new generation (the header changed: a checkpoint
 * reset the WAL) or a shorter WAL (truncated) re-reads both files. The database file is
 * otherwise kept as imaged: a checkpoint writes into it only pages whose frames are still
 * in the imaged WAL, so the old file with that WAL opens to the same database (as if the
 * checkpoint's writes had not reached the disk yet).
 * A client's store (on files) has no fsync seam: SQLite fsyncs at each COMMIT of
 * `synchronous = FULL` itself, but not at the commits run `{ durable: false }` ("sent" and
 * read marks). Its image is taken after each durable commit (`onDurableCommit` → {@link
 * SimDisk.image}), so a client power cut loses exactly those marks.
 *
 * @module
 */
import type { DatabaseSync } from "node:sqlite";

/** Bytes of the WAL header (magic, version, page size, checkpoint sequence, salts, checksums). */
const WAL_HEADER = 32;
/** Bytes of a WAL frame's header (page, database size after a commit or 0, salts, checksums). */
const FRAME_HEADER = 24;
/** WAL frames read at once while imaging. */
const FRAMES_PER_READ = 16;

function be32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

function readInto(f: Deno.FsFile, at: number, into: Uint8Array): void {
  f.seekSync(at, Deno.SeekMode.Start);
  let off = 0;
  while (off < into.length) {
    const n = f.readSync(into.subarray(off));
    if (n === null || n === 0) throw new Error("SimDisk: the WAL ended while being imaged");
    off += n;
  }
}

function readAt(f: Deno.FsFile, at: number, n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  readInto(f, at, b);
  return b;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The simulated disk of one SQLite database `base` in `dir`: the in-process server's
 * (`qpq.db` in its data dir, fsynced through the store's seams) or a client's encrypted
 * state database (`<name>.bin.db`, imaged at each durable commit: {@link image}).
 */
export class SimDisk {
  readonly dir: string;
  readonly #files: readonly [string, string];
  /** The durable database file (undefined: none). */
  #dbImage: Uint8Array | undefined;
  /** The durable WAL: its first `#walLen` bytes of `#walBuf` (a growing buffer). */
  #walBuf = new Uint8Array(0);
  #walLen = -1; // -1: no WAL file
  #dead = false;
  #db: DatabaseSync | undefined;
  #full = false;
  /** Durable images taken (fsyncs seen). */
  syncs = 0;

  constructor(dir: string, base = "qpq.db") {
    this.dir = dir;
    this.#files = [base, `${base}-wal`];
  }

  /**
   * A client store's `onDurableCommit` seam: a COMMIT that waited for the disk just returned
   * (nothing is imaged while the power is off). `full` after an open.
   */
  image(full = false): void {
    if (!this.#dead) this.#snapshot(full);
  }

  /** The store's fsync seam: take the durable image (fails while the power is off). */
  readonly syncData = (_file: Deno.FsFile): Promise<void> => {
    if (this.#dead) return Promise.reject(new Error("I/O error (simulated power cut)"));
    this.#snapshot(false);
    return Promise.resolve();
  };

  /** The store's open seam: keeps the handle (to fill the disk) and images the open state. */
  readonly onOpen = (db: DatabaseSync): void => {
    this.#db = db;
    if (this.#full) this.fill();
    // opening runs synchronous = FULL (migrations, sealing): what it wrote is durable
    this.#snapshot(true);
  };

  /**
   * Image the files. Unless `full` or the WAL began a new generation, only the WAL's new
   * frames are read: from the end of the last imaged commit frame on, while their salts
   * are the header's, up to the last commit frame among them.
   */
  #snapshot(full: boolean): void {
    this.syncs++;
    let wal: Deno.FsFile | undefined;
    try {
      wal = Deno.openSync(`${this.dir}/${this.#files[1]}`, { read: true });
    } catch { /* no WAL */ }
    try {
      const size = wal ? wal.statSync().size : -1;
      const header = wal && size >= WAL_HEADER ? readAt(wal, 0, WAL_HEADER) : undefined;
      const len = this.#walLen;
      const frame = header ? FRAME_HEADER + be32(header, 8) : 0;
      // the same generation: the same header, and the last imaged frame is still there
      const same = !full && header !== undefined && len >= WAL_HEADER && size >= len &&
        equal(header, this.#walBuf.subarray(0, WAL_HEADER)) &&
        (len === WAL_HEADER ||
          equal(
            readAt(wal!, len - frame, FRAME_HEADER),
            this.#walBuf.subarray(len - frame, len - frame + FRAME_HEADER),
          ));
      if (!same) {
        try {
          this.#dbImage = Deno.readFileSync(`${this.dir}/${this.#files[0]}`);
        } catch {
          this.#dbImage = undefined;
        }
        if (!wal) {
          this.#walLen = -1;
          return;
        }
        if (!header) {
          // an empty WAL (or a torn header): imaged as it is
          this.#walBuf = readAt(wal, 0, size);
          this.#walLen = size;
          return;
        }
        this.#ensure(WAL_HEADER);
        this.#walBuf.set(header);
        this.#walLen = WAL_HEADER;
      }
      // the frames after the imaged ones: committed up to the last commit frame whose
      // salts (and every frame's before it) are the header's; the rest is a transaction
      // rolled back, or stale frames of an earlier generation, and no part of the database
      const salts = header!.subarray(16, 24);
      let scan = this.#walLen;
      let committed = scan;
      while (scan + frame <= size) {
        const n = Math.min(FRAMES_PER_READ, Math.floor((size - scan) / frame));
        this.#ensure(scan + n * frame);
        readInto(wal!, scan, this.#walBuf.subarray(scan, scan + n * frame));
        let i = 0;
        for (; i < n; i++) {
          const h = this.#walBuf.subarray(scan + i * frame, scan + i * frame + FRAME_HEADER);
          if (!equal(h.subarray(8, 16), salts)) break;
          if (be32(h, 4) !== 0) committed = scan + (i + 1) * frame;
        }
        if (i < n) break;
        scan += n * frame;
      }
      this.#walLen = committed;
    } finally {
      wal?.close();
    }
  }

  /** Room for `n` bytes in the WAL image (what it holds is kept). */
  #ensure(n: number): void {
    if (n <= this.#walBuf.length) return;
    const grown = new Uint8Array(Math.max(n, this.#walBuf.length * 2));
    grown.set(this.#walBuf);
    this.#walBuf = grown;
  }

  /** The power goes: nothing reaches the disk any more (call before closing the store). */
  cut(): void {
    this.#dead = true;
  }

  /** After the store closed: the files are what was durable at the last fsync. */
  restore(): void {
    const images = [
      this.#dbImage,
      this.#walLen < 0 ? undefined : this.#walBuf.subarray(0, this.#walLen),
    ];
    this.#files.forEach((f, i) => {
      const bytes = images[i];
      if (bytes === undefined) {
        try {
          Deno.removeSync(`${this.dir}/${f}`);
        } catch { /* none */ }
      } else Deno.writeFileSync(`${this.dir}/${f}`, bytes, { mode: 0o600 });
    });
    // the shared-memory index is rebuilt from the WAL on open
    try {
      Deno.removeSync(`${this.dir}/${this.#files[0]}-shm`);
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
