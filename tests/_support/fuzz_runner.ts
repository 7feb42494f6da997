/**
 * Runs the decoder fuzz targets in a worker with a watchdog, so even a synchronous
 * infinite loop in a decoder is caught: the worker writes the case it is running into
 * shared memory, and the main thread terminates it when one case outlives `hangMs`.
 *
 * ```
 * main ──run{seed, plan}──► worker: for each case: mark(start) ─► mutate ─► decode ─► unmark
 *   ▲  watchdog: marked case older than hangMs? ─► terminate, report (target, index)
 *   └──── progress / done {report} ─────────┘
 * ```
 *
 * @module
 */
import { caseRng, mutate } from "./fuzz.ts";
import type { FuzzTarget } from "./fuzz_targets.ts";
import { toHex } from "../../src/bytes.ts";

/** One crash or hang, with what replays it. */
export interface Problem {
  kind: "crash" | "hang";
  target: string;
  seed: number;
  index: number;
  error: string;
  /** The first 512 bytes of the input, hex. */
  inputHex: string;
}

/** Counters of one target. */
export interface TargetStats {
  cases: number;
  /** Returned a value. */
  ok: number;
  /** Returned a value for an input that differs from every corpus entry. */
  okModified: number;
  /** QpqError codes thrown. */
  rejects: Record<string, number>;
  /**
   * What the QpqErrors wrapped, by the cause's class name (`-` for none): a decoder that
   * turns a library's TypeError/RangeError into a ValidationError shows up here.
   */
  causes: Record<string, number>;
  crashes: number;
  hangs: number;
  /** Slowest case (ms) and its index. */
  maxMs: number;
  slowestIndex: number;
  totalMs: number;
}

/** What a fuzz run found. */
export interface FuzzReport {
  seed: number;
  durationMs: number;
  cases: number;
  crashes: number;
  hangs: number;
  targets: Record<string, TargetStats>;
  /** Up to 20 crashes and hangs. */
  problems: Problem[];
}

/** Messages from the worker. */
export type WorkerMessage =
  | { type: "ready"; targets: string[] }
  | { type: "progress"; report: FuzzReport }
  | { type: "done"; report: FuzzReport }
  | { type: "error"; error: string };

/** Options of {@link runDecoderFuzz}. */
export interface DecoderFuzzOptions {
  seed: number;
  /** Total cases, shared by the targets' weights (each target gets at least 20). */
  cases: number;
  /** A case running longer than this is a hang (ms). */
  hangMs: number;
  /** Only targets whose name starts with one of these. */
  only?: string[];
  /** Called about once a second. */
  onProgress?: (r: FuzzReport) => void;
}

/** Cases per target for a total, by weight. */
export function planCases(
  targets: readonly { name: string; weight: number }[],
  total: number,
): Map<string, number> {
  const sum = targets.reduce((n, t) => n + t.weight, 0);
  return new Map(targets.map((t) => [t.name, Math.max(20, Math.round((total * t.weight) / sum))]));
}

/** The input of one case (deterministic in seed, target and index). */
export function caseInput(
  target: FuzzTarget,
  seed: number,
  index: number,
): { input: Uint8Array; rng: ReturnType<typeof caseRng> } {
  const rng = caseRng(seed, target.name, index);
  const base = rng.pick(target.corpus);
  // a few cases keep the valid input: the harness must see the success path too
  const input = rng.chance(0.03) ? base.slice() : mutate(rng, base, target.corpus, target.shape);
  return { input, rng };
}

/** An empty report. */
export function emptyReport(seed: number): FuzzReport {
  return { seed, durationMs: 0, cases: 0, crashes: 0, hangs: 0, targets: {}, problems: [] };
}

/** Add a problem to the report (keeping the first 20). */
export function addProblem(report: FuzzReport, p: Problem): void {
  if (p.kind === "crash") report.crashes++;
  else report.hangs++;
  const t = report.targets[p.target];
  if (t) {
    if (p.kind === "crash") t.crashes++;
    else t.hangs++;
  }
  if (report.problems.length < 20) report.problems.push(p);
}

/**
 * Run the decoder targets in a worker. Resolves with the report; a hang terminates the
 * worker and ends the run early (the report says where).
 */
export function runDecoderFuzz(options: DecoderFuzzOptions): Promise<FuzzReport> {
  const worker = new Worker(new URL("./fuzz_worker.ts", import.meta.url).href, {
    type: "module",
  });
  const sab = new SharedArrayBuffer(4 * 8);
  const watch = new Float64Array(sab); // [startedAtMs, targetIndex, caseIndex, running]
  let names: string[] = [];
  let last = emptyReport(options.seed);
  return new Promise<FuzzReport>((resolve, reject) => {
    const finish = (r: FuzzReport | Error) => {
      clearInterval(dog);
      worker.terminate();
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const dog = setInterval(() => {
      if (watch[3] !== 1 || Date.now() - watch[0]! < options.hangMs) return;
      const target = names[watch[1]!] ?? "?";
      addProblem(last, {
        kind: "hang",
        target,
        seed: options.seed,
        index: watch[2]!,
        error: `no answer within ${options.hangMs} ms (synchronous loop?)`,
        inputHex: "",
      });
      finish(last);
    }, 100);
    worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
      const m = e.data;
      if (m.type === "ready") names = m.targets;
      else if (m.type === "progress") {
        last = m.report;
        options.onProgress?.(m.report);
      } else if (m.type === "done") finish(m.report);
      else finish(new Error(`fuzz worker failed: ${m.error}`));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      finish(new Error(`fuzz worker crashed: ${e.message}`));
    };
    worker.postMessage({ type: "run", sab, options: { ...options, onProgress: undefined } });
  });
}

/** Short hex of an input for reports. */
export function inputHex(b: Uint8Array): string {
  return toHex(b.subarray(0, 512));
}
