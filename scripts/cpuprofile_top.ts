/**
 * Top functions of a V8 `.cpuprofile` by self time: sums the samples of every node by
 * function name and script (file:line), and prints the largest with their share.
 *
 *   deno run --allow-read scripts/cpuprofile_top.ts FILE.cpuprofile [TOP] [--by-file | --inclusive] [--grep=TEXT]
 *
 * `--by-file` sums by script instead (which library or source file the time goes to);
 * `--inclusive` gives each function's total time (itself and what it called), and
 * `--grep=TEXT` keeps the rows whose name or file contains TEXT.
 *
 * @module
 */

/** The part of a V8 CPU profile this reads. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[] | undefined;
  }[];
  samples: number[];
  timeDeltas: number[];
}

/** One row: a function (or a file) and its self time. */
export interface TopRow {
  key: string;
  selfMs: number;
  share: number;
}

function shortUrl(url: string): string {
  const nm = url.indexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + 13).replace(/^\.deno\/[^/]+\/node_modules\//, "");
    return rest;
  }
  const src = url.search(/\/(src|bench|scripts|tests)\//);
  if (src >= 0) return url.slice(src + 1);
  return url.replace(/^ext:/, "ext:");
}

/** Self time per function (or per file with `byFile`), largest first. */
export function summarize(p: CpuProfile, byFile = false): TopRow[] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const sums = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    const file = shortUrl(f.url);
    const key = byFile
      ? (file || `(${f.functionName})`)
      : `${f.functionName || "(anonymous)"} ${file ? `${file}:${f.lineNumber + 1}` : ""}`.trim();
    sums.set(key, (sums.get(key) ?? 0) + us);
    total += us;
  }
  return [...sums].map(([key, us]) => ({ key, selfMs: us / 1000, share: us / total }))
    .sort((a, b) => b.selfMs - a.selfMs);
}

/**
 * Total (inclusive) time per function: each sample counts once for every distinct function
 * on its stack, so a caller's figure includes what it called. `(idle)`, `(program)` and the
 * garbage collector are left out.
 */
export function inclusive(p: CpuProfile): TopRow[] {
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const keyOf = (id: number) => {
    const f = byId.get(id)!.callFrame;
    const file = shortUrl(f.url);
    return `${f.functionName || "(anonymous)"} ${file ? `${file}:${f.lineNumber + 1}` : ""}`
      .trim();
  };
  const sums = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const us = p.timeDeltas[i] ?? 0;
    let id: number | undefined = p.samples[i]!;
    const leaf = byId.get(id)!.callFrame.functionName;
    if (leaf === "(idle)" || leaf === "(program)" || leaf === "(garbage collector)") continue;
    total += us;
    const seen = new Set<string>();
    while (id !== undefined) {
      const k = keyOf(id);
      if (!seen.has(k)) {
        seen.add(k);
        sums.set(k, (sums.get(k) ?? 0) + us);
      }
      id = parent.get(id);
    }
  }
  return [...sums].map(([key, us]) => ({ key, selfMs: us / 1000, share: us / total }))
    .sort((a, b) => b.selfMs - a.selfMs);
}

/** The first `n` rows as text. */
export function formatTop(rows: TopRow[], n: number): string {
  const total = rows.reduce((s, r) => s + r.selfMs, 0);
  const lines = [`total sampled ${total.toFixed(0)} ms`];
  for (const r of rows.slice(0, n)) {
    lines.push(
      `${r.selfMs.toFixed(1).padStart(9)} ms ${(r.share * 100).toFixed(1).padStart(5)} %  ${r.key}`,
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const [file, top] = Deno.args.filter((a) => !a.startsWith("--"));
  if (!file) throw new Error("Usage: cpuprofile_top.ts FILE.cpuprofile [TOP] [--by-file]");
  const profile = JSON.parse(await Deno.readTextFile(file)) as CpuProfile;
  const rows = Deno.args.includes("--inclusive")
    ? inclusive(profile)
    : summarize(profile, Deno.args.includes("--by-file"));
  const filter = Deno.args.find((a) => a.startsWith("--grep="))?.slice(7);
  console.log(
    formatTop(filter ? rows.filter((r) => r.key.includes(filter)) : rows, Number(top ?? 30)),
  );
}
