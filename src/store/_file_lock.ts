/**
 * One process at a time per file: `<path>.lock`. The client takes it on its state
 * (`<statePath>.lock`), the server on its database (`<db_path>.lock`), and
 * `qpq server restore` takes the server's to know that no server is using the database.
 *
 * The exclusion itself is an exclusive advisory lock on the lock file (`flock`-style,
 * Deno's `FsFile.tryLockSync`), which the kernel drops when the holder exits or crashes, so
 * a lock left by a dead process (a "stale" lock) is simply taken over, and a reused pid can
 * never keep a state locked. The file also holds the holder's pid, for the error message.
 *
 * ```
 * open/create <path>.lock ─► tryLock ─no─► LockedError "<What> … is in use by another qpq process (pid N)"
 *                                │yes
 *                                ▼
 *        path still names this file? ─no (holder removed it while we opened)─► retry
 *                                │yes
 *                                ▼
 *                  write our pid ─► held until release(): unlink, then unlock
 * ```
 *
 * @module
 */

import { StorageError, UsageError } from "../errors.ts";

const RETRIES = 5;

/**
 * The file is locked by another process: not a usage mistake (exit 1, code "conflict");
 * a client command then tries the holder's control socket (src/cli/_control.ts).
 */
export class LockedError extends UsageError {
  constructor(message: string) {
    super(message, { code: "conflict" });
  }
}

/** A held lock on one file (a client state, a server database). */
export class FileLock {
  #file: Deno.FsFile | undefined;
  readonly #path: string;

  private constructor(file: Deno.FsFile, path: string) {
    this.#file = file;
    this.#path = path;
  }

  /**
   * Take the lock of the file at `filePath` (shown as `displayPath` in errors, after
   * `what`: "State", "Database").
   *
   * @throws {UsageError} when another process holds it
   * @throws {StorageError} when the lock file cannot be created
   */
  static acquire(filePath: string, displayPath: string, what = "State"): FileLock {
    const path = `${filePath}.lock`;
    for (let attempt = 0; attempt < RETRIES; attempt++) {
      let f: Deno.FsFile;
      try {
        f = Deno.openSync(path, { read: true, write: true, create: true, mode: 0o600 });
      } catch (e) {
        throw new StorageError(
          `Cannot lock ${what.toLowerCase()} ${displayPath}: the lock file cannot be created`,
          {
            cause: e,
          },
        );
      }
      let keep = false;
      try {
        if (!f.tryLockSync(true)) {
          throw new LockedError(
            `${what} ${displayPath} is in use by another qpq process (${holder(path)})`,
          );
        }
        if (!sameFile(f, path)) continue;
        f.truncateSync(0);
        const pid = new TextEncoder().encode(`${Deno.pid}\n`);
        let off = 0;
        while (off < pid.length) off += f.writeSync(pid.subarray(off));
        keep = true;
        return new FileLock(f, path);
      } finally {
        if (!keep) f.close();
      }
    }
    throw new StorageError(
      `Cannot lock ${what.toLowerCase()} ${displayPath}: the lock file keeps changing`,
    );
  }

  /** True until {@link release}. */
  get held(): boolean {
    return this.#file !== undefined;
  }

  /** Remove the lock file and drop the lock. Safe to call more than once. */
  release(): void {
    const f = this.#file;
    if (f === undefined) return;
    this.#file = undefined;
    try {
      Deno.removeSync(this.#path);
    } catch { /* already removed by hand */ }
    try {
      f.unlockSync();
    } catch { /* closing unlocks anyway */ }
    f.close();
  }
}

function holder(path: string): string {
  try {
    const pid = Deno.readTextFileSync(path).trim();
    return /^[0-9]{1,10}$/.test(pid) ? `pid ${pid}` : "pid unknown";
  } catch {
    return "pid unknown";
  }
}

/** Whether `path` still names the open file `f` (the holder may have unlinked it). */
function sameFile(f: Deno.FsFile, path: string): boolean {
  try {
    const a = f.statSync();
    const b = Deno.statSync(path);
    if (a.ino === null || b.ino === null) return true; // no inode numbers (Windows)
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}
