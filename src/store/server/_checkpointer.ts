/**
 * WAL checkpoints of the server store off the event loop. A checkpoint copies the WAL's
 * pages into the database file and, with `synchronous = NORMAL`, fsyncs the WAL before and
 * the database after: run by SQLite itself inside a COMMIT (its automatic checkpoint, every
 * 1,000 pages), it stalled the event loop for 4-40 ms every few dozen deliveries. Here a
 * worker thread with its own connection to the same file runs them, in two steps:
 *
 * ```
 * every CHECKPOINT_EVERY_COMMITS batches committed:
 *   worker: PASSIVE checkpoint (copies what is in the WAL; commits go on meanwhile)
 *   store pauses its batches (calls queue up; requests and reads go on)
 *   worker: TRUNCATE checkpoint (the few pages committed since, no writer; the WAL file is
 *           cut to 0 bytes, so a burst that outran the worker does not leave it large: the next COMMIT
 *           writes the WAL from its start again, so the file stays bounded)
 *   store resumes its batches
 * ```
 *
 * Each step is SQLite's own checkpoint (the same crash rules as the automatic one). Should
 * the worker fail, the store hands checkpoints back to SQLite (`wal_autocheckpoint`);
 * meanwhile a backstop of WAL_BACKSTOP_PAGES keeps the WAL bounded whatever happens.
 *
 * This file is both the worker (when run as one) and its handle for the store.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";

/** What the worker is asked. */
type Ask = { kind: "open"; path: string; busyTimeoutMs: number } | {
  kind: "checkpoint";
  mode: "PASSIVE" | "TRUNCATE";
} | { kind: "close" };

/** What it answers: the checkpoint's result row, or why it failed (no secrets: SQLite's words). */
type Answer = {
  ok: true;
  log?: number | undefined;
  checkpointed?: number | undefined;
  busy?: number | undefined;
} | {
  ok: false;
  error: string;
};

/** The store's handle on its checkpoint worker: one question at a time. */
export class Checkpointer {
  readonly #worker: Worker;
  #pending: { resolve: (a: Answer) => void; reject: (e: Error) => void } | undefined;
  #failed: Error | undefined;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.onmessage = (e: MessageEvent<Answer>) => {
      const p = this.#pending;
      this.#pending = undefined;
      p?.resolve(e.data);
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#failed = new Error(`checkpoint worker failed: ${e.message}`);
      const p = this.#pending;
      this.#pending = undefined;
      p?.reject(this.#failed);
    };
  }

  /** A worker with its own connection to the database at `path`. */
  static async start(path: string, busyTimeoutMs: number): Promise<Checkpointer> {
    const c = new Checkpointer(
      new Worker(new URL("./_checkpointer.ts", import.meta.url).href, { type: "module" }),
    );
    await c.#ask({ kind: "open", path, busyTimeoutMs });
    return c;
  }

  /** One checkpoint; resolves with SQLite's result row (log and checkpointed pages, busy). */
  async checkpoint(mode: "PASSIVE" | "TRUNCATE"): Promise<{ busy: number }> {
    const a = await this.#ask({ kind: "checkpoint", mode });
    return { busy: a.ok ? a.busy ?? 0 : 0 };
  }

  /** Close the worker's connection, then the worker (never while it runs a checkpoint). */
  async close(): Promise<void> {
    try {
      if (this.#failed === undefined) await this.#ask({ kind: "close" });
    } finally {
      this.#worker.terminate();
    }
  }

  #ask(ask: Ask): Promise<Answer & { ok: true }> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed);
    if (this.#pending !== undefined) return Promise.reject(new Error("checkpointer is busy"));
    return new Promise<Answer>((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.#worker.postMessage(ask);
    }).then((a) => {
      if (!a.ok) throw new Error(a.error);
      return a;
    });
  }
}

// ------------------------------------------------------------------ the worker

function serve(scope: { onmessage: unknown; postMessage(a: Answer): void }): void {
  let db: DatabaseSync | undefined;
  scope.onmessage = (e: MessageEvent<Ask>) => {
    const ask = e.data;
    try {
      if (ask.kind === "open") {
        db = new DatabaseSync(ask.path, { timeout: ask.busyTimeoutMs });
        // as the store's connection: the WAL fsynced before a checkpoint, the file after
        db.exec("PRAGMA synchronous = NORMAL");
        scope.postMessage({ ok: true });
      } else if (ask.kind === "checkpoint") {
        // all(): the statement runs to its end, so this connection keeps no read snapshot
        // (one would stop the WAL from restarting)
        const row = db!.prepare(`PRAGMA wal_checkpoint(${ask.mode})`).all()[0] as
          | Record<string, number>
          | undefined;
        scope.postMessage({
          ok: true,
          log: row?.log,
          checkpointed: row?.checkpointed,
          busy: row?.busy,
        });
      } else {
        db?.close();
        db = undefined;
        scope.postMessage({ ok: true });
      }
    } catch (err) {
      scope.postMessage({ ok: false, error: String((err as Error)?.message ?? err) });
    }
  };
}

// run as a worker: `self` is a worker scope (it has no `document` and `close` is the worker's)
if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== "undefined") {
  serve(globalThis as unknown as { onmessage: unknown; postMessage(a: Answer): void });
}
