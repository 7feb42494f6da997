/**
 * Shared by `deno task gen` and the generated-code test: runs `capnp compile -o-` on
 * schemas/qpq.capnp and feeds the CodeGeneratorRequest to capnp-es's TypeScript generator.
 *
 * @module
 */
import { compileAll } from "capnp-es/compiler";
import { Buffer } from "node:buffer";

/** Directory holding the schema, as a path usable as a working directory. */
export const SCHEMA_DIR = new URL("../schemas/", import.meta.url);

/** True when the Debian `capnp` compiler is on PATH. */
export async function capnpAvailable(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("capnp", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return success;
  } catch {
    return false;
  }
}

/** Generate the TypeScript for schemas/qpq.capnp and return it as text. */
export async function generateWireCode(): Promise<string> {
  const out = await new Deno.Command("capnp", {
    args: ["compile", "-o-", "qpq.capnp"],
    cwd: SCHEMA_DIR,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`capnp compile failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  const { files } = await compileAll(Buffer.from(out.stdout), { ts: true });
  const ts = [...files.entries()].find(([name]) => name.endsWith("qpq.ts"));
  if (!ts) throw new Error("capnp-es produced no qpq.ts");
  return ts[1];
}
