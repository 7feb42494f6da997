/**
 * `qpq demo-group`: the two-party group demo against a running server.
 *
 * @module
 */
import { env, parseCommand, println } from "./_args.ts";
import { readCaCert } from "../client/connection.ts";
import { runGroupDemo } from "./_group_demo.ts";

/** Usage text. */
export const USAGE = `Usage: qpq demo-group [--server HOST:PORT] [--ca-cert FILE] [--dir DIR]

Two new identities (alice-xxxxxx and bob-xxxxxx) register on the server, form a group,
exchange messages both ways and print the transcript. Their state files go to DIR
(default: a temporary directory, removed at the end).

Options:
  --server HOST:PORT   server address (env QPQ_SERVER, default 127.0.0.1:7000)
  --ca-cert FILE       pin the server certificate (env QPQ_CA_CERT)
  --dir DIR            where the two state files are written
  -h, --help           show this help`;

/** Run `qpq demo-group`. */
export async function run(args: string[]): Promise<number> {
  const p = parseCommand("demo-group", args, {
    server: { type: "string" },
    "ca-cert": { type: "string" },
    dir: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (!p) {
    println(USAGE);
    return 0;
  }
  const caPath = p.values["ca-cert"] ?? env("QPQ_CA_CERT");
  // a directory of our own making goes when the demo ends; one the user named stays
  const temp = p.values.dir === undefined
    ? await Deno.makeTempDir({ prefix: "qpq-demo-" })
    : undefined;
  try {
    await runGroupDemo({
      server: p.values.server ?? env("QPQ_SERVER") ?? "127.0.0.1:7000",
      caCertPem: caPath ? await readCaCert(caPath) : undefined,
      dir: p.values.dir ?? temp!,
      print: println,
    });
  } finally {
    if (temp) await Deno.remove(temp, { recursive: true }).catch(() => {});
  }
  return 0;
}
