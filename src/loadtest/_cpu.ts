/**
 * CPU time for the load tool's report. A thread's own time comes from Node's
 * `process.threadCpuUsage()` (getrusage of the calling thread), the whole process's from
 * `process.cpuUsage()`; another process's from Linux's /proc/PID/stat, which Deno lets a
 * program read only with --allow-all.
 *
 * @module
 */
import process from "node:process";

/** Clock ticks per second of /proc/…/stat times (USER_HZ, 100 on every Linux build). */
const USER_HZ = 100;

/** CPU time (user + system, ms) of the calling thread. */
export function threadCpuMs(): number {
  const u = process.threadCpuUsage();
  return (u.user + u.system) / 1000;
}

/** CPU time (user + system, ms) of this process, every thread. */
export function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * CPU time (user + system, ms) of process `pid` from /proc/PID/stat; `undefined` where it
 * cannot be read (no /proc, no such process, or no --allow-all).
 */
export function procCpuMs(pid: number): number | undefined {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the command name, which is in parentheses and may contain spaces:
    // state is field 3, utime 14 and stime 15.
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 1000 / USER_HZ;
  } catch {
    return undefined;
  }
}
