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

Two identities (alice-xxxxxx and bob-xxxxxx) register on the server, form a group,
exchange messages both ways and print the transcript. Their state files (and, for these
throwaway demo accounts only, their passwords) stay in DIR, default ~/.qpq/demo-group: a
later run against the same server logs them in again and reuses their group, so it leaves
no new accounts behind (without HOME: a temporary directory, removed at the end).

Options:
  --server HOST:PORT   server address (env QPQ_SERVER, default 127.0.0.1:7000)
  --ca-cert FILE       pin the server certificate (env QPQ_CA_CERT)
  --dir DIR            where the two demo identities are kept
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
  // the demo identities stay for the next run; without HOME (nowhere to keep them) a
  // temporary directory goes when the demo ends
  const home = env("HOME");
  const temp = p.values.dir === undefined && !home
    ? await Deno.makeTempDir({ prefix: "qpq-demo-" })
    : undefined;
  try {
    await runGroupDemo({
      server: p.values.server ?? env("QPQ_SERVER") ?? "127.0.0.1:7000",
      caCertPem: caPath ? await readCaCert(caPath) : undefined,
      dir: p.values.dir ?? temp ?? `${home}/.qpq/demo-group`,
      print: println,
    });
  } finally {
    if (temp) await Deno.remove(temp, { recursive: true }).catch(() => {});
  }
  return 0;
}
