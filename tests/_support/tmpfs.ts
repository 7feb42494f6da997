/**
 * A small tmpfs for tests that need a disk that fills up or turns read-only. The tests run
 * as root on the build machines; where mounting is refused the test fails loudly, unless
 * `QPQ_SKIP_TMPFS=1` is set on purpose (then it is skipped with a message).
 *
 * @module
 */

/** A mounted tmpfs. */
export interface Tmpfs {
  /** The mount point (a fresh temp dir). */
  dir: string;
  /** Remount read-only (`ro`) or read-write again. */
  remount(mode: "ro" | "rw"): Promise<void>;
}

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; err: string }> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  return { ok: out.success, err: new TextDecoder().decode(out.stderr).trim() };
}

/**
 * Mount a tmpfs of `sizeBytes` on a fresh temp dir, run `fn`, unmount (always). Returns
 * false when skipped on purpose (`QPQ_SKIP_TMPFS=1` and mounting refused).
 */
export async function withTmpfs(
  sizeBytes: number,
  fn: (fs: Tmpfs) => Promise<void>,
): Promise<boolean> {
  const dir = await Deno.makeTempDir({ prefix: "qpq-tmpfs-" });
  let mounted: { ok: boolean; err: string };
  try {
    mounted = await run("mount", [
      "-t",
      "tmpfs",
      "-o",
      `size=${sizeBytes},mode=0700`,
      "tmpfs",
      dir,
    ]);
  } catch (e) {
    mounted = { ok: false, err: String(e) };
  }
  if (!mounted.ok) {
    await Deno.remove(dir).catch(() => {});
    const why = `cannot mount a tmpfs (${mounted.err || "mount failed"}): ` +
      "these tests need root (or CAP_SYS_ADMIN) to fill a disk or make it read-only";
    if (Deno.env.get("QPQ_SKIP_TMPFS") === "1") {
      console.error(`SKIPPED (QPQ_SKIP_TMPFS=1): ${why}`);
      return false;
    }
    throw new Error(`${why}; set QPQ_SKIP_TMPFS=1 to skip them on purpose`);
  }
  try {
    await fn({
      dir,
      async remount(mode) {
        const r = await run("mount", ["-o", `remount,${mode}`, dir]);
        if (!r.ok) throw new Error(`cannot remount ${dir} ${mode}: ${r.err}`);
      },
    });
  } finally {
    const r = await run("umount", [dir]);
    if (!r.ok) await run("umount", ["-l", dir]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return true;
}

/** Write zeros into `path` until the file system is full; returns the bytes written. */
export async function fillDisk(path: string): Promise<number> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  let written = 0;
  try {
    for (let chunk = 1 << 20; chunk >= 1; chunk >>= 2) {
      const buf = new Uint8Array(chunk);
      while (true) {
        try {
          written += await f.write(buf);
        } catch {
          break; // ENOSPC: try a smaller chunk
        }
      }
    }
  } finally {
    f.close();
  }
  return written;
}
