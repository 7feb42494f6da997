/**
 * Turns `deno bench --json` output into the results table of docs/results.md: one row per
 * benchmark with its time, rate, the baseline of its group and the ratio against it.
 *
 *   deno bench --json … > bench.json
 *   deno run --allow-read scripts/bench_table.ts bench.json      # prints a Markdown table
 *
 * With no file it reads standard input.
 *
 * @module
 */

interface BenchResult {
  origin: string;
  group: string | null;
  name: string;
  baseline: boolean;
  results: { ok?: { n: number; avg: number; p75: number; p99: number }; failed?: unknown }[];
}

/** One row of the table. */
export interface Row {
  file: string;
  group: string;
  name: string;
  avgNs: number;
  perSecond: number;
  baseline: string;
  ratio: string;
}

function fmtTime(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(1)} µs`;
  return `${ns.toFixed(0)} ns`;
}

function fmtRate(r: number): string {
  return r >= 100 ? Math.round(r).toLocaleString("en-US") : r.toFixed(1);
}

/** Build rows from parsed `deno bench --json` output. */
export function rows(report: { benches: BenchResult[] }): Row[] {
  const out: Row[] = [];
  const baselines = new Map<string, BenchResult>();
  for (const b of report.benches) {
    if (b.baseline && b.group) baselines.set(`${b.origin}|${b.group}`, b);
  }
  for (const b of report.benches) {
    const ok = b.results[0]?.ok;
    if (!ok) continue;
    const base = b.group ? baselines.get(`${b.origin}|${b.group}`) : undefined;
    const baseOk = base?.results[0]?.ok;
    out.push({
      file: b.origin.replace(/^.*\/bench\//, "bench/"),
      group: b.group ?? "",
      name: b.name,
      avgNs: ok.avg,
      perSecond: 1e9 / ok.avg,
      baseline: base && base !== b ? base.name : b.baseline ? "(baseline)" : "",
      ratio: base && baseOk && base !== b ? `${(baseOk.avg / ok.avg).toFixed(2)}×` : "",
    });
  }
  return out;
}

/** Render rows as a Markdown table. Ratio = baseline time / this time (above 1 = faster). */
export function markdown(rs: Row[]): string {
  const lines = [
    "| bench | benchmark | time/iter | per second | baseline | speed vs baseline |",
    "| --- | --- | ---: | ---: | --- | ---: |",
  ];
  for (const r of rs) {
    lines.push(
      `| ${r.file}${r.group ? ` · ${r.group}` : ""} | ${r.name} | ${fmtTime(r.avgNs)} | ${
        fmtRate(r.perSecond)
      } | ${r.baseline} | ${r.ratio} |`,
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const text = Deno.args[0]
    ? await Deno.readTextFile(Deno.args[0])
    : await new Response(Deno.stdin.readable).text();
  const start = text.indexOf("{");
  console.log(markdown(rows(JSON.parse(text.slice(start)))));
}
