/**
 * Regenerates src/wire/_gen/ from schemas/*.capnp with the Debian `capnp` compiler and
 * capnp-es's code generator (`deno task gen`). The output is committed; a test compares it
 * with a fresh generation whenever `capnp` is installed.
 *
 * Usage: deno task gen [--check]
 *   --check   generate into a temp dir and exit 1 if it differs from the committed code
 *
 * @module
 */
import { generateWireCode } from "./_gen_lib.ts";

const check = Deno.args.includes("--check");
const outDir = new URL("../src/wire/_gen/", import.meta.url);
const result = await generateWireCode();
if (check) {
  const committed = await Deno.readTextFile(new URL("qpq.ts", outDir));
  if (committed !== result) {
    console.error("src/wire/_gen/qpq.ts is out of date: run `deno task gen`");
    Deno.exit(1);
  }
  console.log("src/wire/_gen/qpq.ts matches schemas/qpq.capnp");
} else {
  await Deno.writeTextFile(new URL("qpq.ts", outDir), result);
  console.log("wrote src/wire/_gen/qpq.ts");
}
