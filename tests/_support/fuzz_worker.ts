/// <reference lib="deno.worker" />
/**
 * Worker side of {@link runDecoderFuzz}: builds the targets, runs the planned cases and
 * reports. Each case is marked in shared memory while it runs (see fuzz_runner.ts).
 *
 * @module
 */
import { classify, loadFrameCorpus } from "./fuzz.ts";
import { buildTargets } from "./fuzz_targets.ts";
import {
  addProblem,
  caseInput,
  type DecoderFuzzOptions,
  emptyReport,
  inputHex,
  planCases,
  type WorkerMessage,
} from "./fuzz_runner.ts";

function post(m: WorkerMessage): void {
  self.postMessage(m);
}

async function run(sab: SharedArrayBuffer, options: DecoderFuzzOptions): Promise<void> {
  const watch = new Float64Array(sab);
  const all = await buildTargets(await loadFrameCorpus());
  const targets = options.only
    ? all.filter((t) => options.only!.some((p) => t.name.startsWith(p)))
    : all;
  post({ type: "ready", targets: targets.map((t) => t.name) });
  const plan = planCases(targets, options.cases);
  const report = emptyReport(options.seed);
  for (const t of targets) {
    report.targets[t.name] = {
      cases: 0,
      ok: 0,
      okModified: 0,
      rejects: {},
      causes: {},
      crashes: 0,
      hangs: 0,
      maxMs: 0,
      slowestIndex: -1,
      totalMs: 0,
    };
  }
  const started = performance.now();
  let lastProgress = started;
  const rounds = Math.max(...plan.values());
  for (let i = 0; i < rounds; i++) {
    for (let ti = 0; ti < targets.length; ti++) {
      const t = targets[ti]!;
      if (i >= plan.get(t.name)!) continue;
      const stats = report.targets[t.name]!;
      const { input, rng } = caseInput(t, options.seed, i);
      watch[1] = ti;
      watch[2] = i;
      watch[0] = Date.now();
      watch[3] = 1;
      const t0 = performance.now();
      let outcome;
      let cause = "-";
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const r = t.run(input, rng);
        if (r instanceof Promise) {
          const timeout = new Promise<"hang">((res) => {
            timer = setTimeout(() => res("hang"), options.hangMs);
          });
          const v = await Promise.race([r, timeout]);
          if (v === "hang") outcome = { kind: "hang" as const };
        }
        outcome ??= { kind: "ok" as const };
      } catch (e) {
        outcome = classify(e, t.allowInternal);
        const c = (e as { cause?: unknown }).cause;
        if (c !== undefined) cause = c instanceof Error ? c.name : typeof c;
      } finally {
        clearTimeout(timer);
        watch[3] = 0;
      }
      const ms = performance.now() - t0;
      stats.cases++;
      report.cases++;
      stats.totalMs += ms;
      if (ms > stats.maxMs) {
        stats.maxMs = ms;
        stats.slowestIndex = i;
      }
      if (outcome.kind === "ok") {
        stats.ok++;
        if (!t.corpus.some((c) => c.length === input.length && c.every((b, k) => b === input[k]))) {
          stats.okModified++;
        }
      } else if (outcome.kind === "reject") {
        stats.rejects[outcome.code] = (stats.rejects[outcome.code] ?? 0) + 1;
        stats.causes[cause] = (stats.causes[cause] ?? 0) + 1;
      } else {
        addProblem(report, {
          kind: outcome.kind,
          target: t.name,
          seed: options.seed,
          index: i,
          error: outcome.kind === "crash" ? outcome.error : `no answer within ${options.hangMs} ms`,
          inputHex: inputHex(input),
        });
      }
      const now = performance.now();
      if (now - lastProgress > 1000) {
        lastProgress = now;
        report.durationMs = now - started;
        post({ type: "progress", report });
      }
    }
  }
  report.durationMs = performance.now() - started;
  post({ type: "done", report });
}

self.onmessage = (e: MessageEvent<{ sab: SharedArrayBuffer; options: DecoderFuzzOptions }>) => {
  run(e.data.sab, e.data.options).catch((err) =>
    post({ type: "error", error: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  );
};
