/**
 * The structure STYLE.md asks for, checked on the real module graph (`deno info --json`
 * from main.ts and mod.ts): no import cycles, each layer imports only the layers below it,
 * and the crypto and protocol layers do no I/O.
 */
import { assert, assertEquals } from "./_support/assert.ts";

const ROOT = new URL("../", import.meta.url);

/** What each folder of src/ may import (besides itself and the base files). */
const LAYERS: Record<string, string[]> = {
  "src/crypto": [],
  "src/mls": [],
  "src/wire": [],
  "src/auth": [],
  "src/transport": [],
  "src/store": ["src/crypto"],
  "src/server": ["src/auth", "src/crypto", "src/mls", "src/store", "src/transport", "src/wire"],
  "src/client": ["src/auth", "src/crypto", "src/mls", "src/store", "src/transport", "src/wire"],
  "src/loadtest": ["src/auth", "src/client", "src/crypto", "src/store"],
};
/** Files at the top of src/ that every layer may use (they import only each other). */
const BASE = [
  "src/bytes.ts",
  "src/errors.ts",
  "src/limits.ts",
  "src/log.ts",
  "src/names.ts",
  "src/version.ts",
];
/** Layers that must do no I/O: no Deno API call, no fetch. */
const PURE = ["src/crypto", "src/mls", "src/wire", "src/auth"];

interface Graph {
  edges: Map<string, string[]>;
}

async function graphOf(entry: string): Promise<Graph> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string; dependencies?: { code?: { specifier?: string } }[] }[];
  };
  const root = ROOT.href;
  const local = (s: string) => s.startsWith(root) && s.endsWith(".ts");
  const edges = new Map<string, string[]>();
  for (const m of info.modules) {
    if (!local(m.specifier)) continue;
    const deps = (m.dependencies ?? [])
      .map((d) => d.code?.specifier)
      .filter((s): s is string => s !== undefined && local(s))
      .map((s) => s.slice(root.length));
    edges.set(m.specifier.slice(root.length), deps);
  }
  return { edges };
}

async function wholeGraph(): Promise<Map<string, string[]>> {
  const all = new Map<string, string[]>();
  for (const entry of ["main.ts", "mod.ts"]) {
    for (const [k, v] of (await graphOf(entry)).edges) all.set(k, v);
  }
  return all;
}

/** Every cycle's files (strongly connected components of more than one file, or a self-loop). */
export function cycles(edges: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const c: string[] = [];
      for (;;) {
        const w = stack.pop()!;
        onStack.delete(w);
        c.push(w);
        if (w === v) break;
      }
      if (c.length > 1 || (edges.get(v) ?? []).includes(v)) found.push(c.sort());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) visit(v);
  return found;
}

function layerOf(file: string): string {
  const parts = file.split("/");
  return parts.length > 2 ? parts.slice(0, 2).join("/") : file;
}

Deno.test("cycles() finds a cycle and a self-import, and passes a tree", () => {
  assertEquals(cycles(new Map([["a", ["b"]], ["b", ["c"]], ["c", []]])), []);
  assertEquals(cycles(new Map([["a", ["b"]], ["b", ["a"]]])), [["a", "b"]]);
  assertEquals(cycles(new Map([["a", ["a"]]])), [["a"]]);
});

Deno.test("structure: no import cycles, layers import only what is below them, pure layers do no I/O", async () => {
  const edges = await wholeGraph();
  assert(edges.size > 100, `only ${edges.size} modules in the graph: the check proves nothing`);
  assertEquals(cycles(edges), [], "import cycles");

  const wrong: string[] = [];
  for (const [file, deps] of edges) {
    const from = layerOf(file);
    const allowed = LAYERS[from];
    for (const dep of deps) {
      const to = layerOf(dep);
      if (to === from) continue;
      if (BASE.includes(file)) {
        if (!BASE.includes(dep)) wrong.push(`${file} -> ${dep} (a base file imports a layer)`);
        continue;
      }
      if (allowed === undefined) continue; // main.ts, mod.ts, src/cli: the top
      if (!BASE.includes(dep) && !allowed.includes(to)) wrong.push(`${file} -> ${dep}`);
    }
  }
  assertEquals(wrong, [], "imports across layers that the layer table does not allow");

  const io: string[] = [];
  for (const file of edges.keys()) {
    if (!PURE.includes(layerOf(file)) || file.includes("/_gen/")) continue;
    const text = await Deno.readTextFile(new URL(file, ROOT));
    text.split("\n").forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, "").replace(/^\s*(\/\*|\*).*$/, "");
      const uses = code.replaceAll('Symbol.for("Deno.customInspect")', "");
      if (/\bDeno\.[a-zA-Z]/.test(uses) || /\bfetch\(/.test(uses)) {
        io.push(`${file}:${i + 1}: ${line.trim()}`);
      }
    });
  }
  assertEquals(io, [], "I/O in a layer that must do none");
});

Deno.test("deno task compile includes every worker module src/ starts (a compiled qpq could not start it)", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks;
  const included = new Set(
    [...String(tasks.compile).matchAll(/--include (\S+)/g)].map((m) => m[1]),
  );
  const workers: string[] = [];
  const walk = async (dir: URL, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await walk(new URL(`${e.name}/`, dir), `${rel}${e.name}/`);
      else if (e.name.endsWith(".ts")) {
        const text = await Deno.readTextFile(new URL(e.name, dir));
        for (const m of text.matchAll(/new Worker\(\s*new URL\("([^"]+)", import\.meta\.url\)/g)) {
          const target = new URL(m[1]!, new URL(`${rel}${e.name}`, ROOT));
          workers.push(target.href.slice(ROOT.href.length));
        }
      }
    }
  };
  await walk(new URL("src/", ROOT), "src/");
  assert(workers.length >= 3, `found only ${workers.length} worker modules: ${workers}`);
  for (const w of workers) assert(included.has(w), `${w} is not --include'd in the compile task`);
});
