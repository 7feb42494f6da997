/**
 * Command-line parsing shared by every subcommand (node:util parseArgs, strict), turning
 * parse failures into one-line {@link UsageError}s that name the command's --help.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { visibleLines } from "./_terminal.ts";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { UsageError } from "../errors.ts";

/** What a subcommand module exports. */
export interface CommandModule {
  /** Full usage text printed by `--help`. */
  USAGE: string;
  /** Run with the arguments after the command name; resolves to the exit code. */
  run(args: string[]): Promise<number>;
}

/** Flags every client command accepts (see {@link CLIENT_FLAGS_USAGE}). */
export const CLIENT_OPTIONS = {
  server: { type: "string" },
  "ca-cert": { type: "string" },
  username: { type: "string" },
  password: { type: "string" },
  state: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

/** Usage lines for {@link CLIENT_OPTIONS}. */
export const CLIENT_FLAGS_USAGE = `Connection and identity:
  --server HOST:PORT   server address (env QPQ_SERVER, default 127.0.0.1:7000)
  --ca-cert FILE       pin the server certificate, PEM or DER (env QPQ_CA_CERT)
  --username NAME      your user name (env QPQ_USERNAME)
  --password PW        your password (env QPQ_PASSWORD; else asked on a terminal,
                       twice for a new state, again after a wrong one)
  --state FILE         local state file (default qpq-<username>.bin)
  --json               one JSON object per line
  -h, --help           show this help`;

/** Parsed arguments. */
export interface Parsed<V> {
  /** Option values. */
  values: V;
  /** Positional arguments. */
  positionals: string[];
}

/**
 * Parse `args` for command `name`. Returns `null` when `--help` was given (the caller
 * prints its usage). Throws {@link UsageError} for unknown or malformed options.
 */
export function parseCommand<const O extends ParseArgsOptionsConfig>(
  name: string,
  args: string[],
  options: O,
  positionals: { min?: number; max?: number } = { max: 0 },
):
  | Parsed<
    ReturnType<typeof parseArgs<{ options: O; allowPositionals: true; strict: true }>>["values"]
  >
  | null {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const unknown = /Unknown option '([^']+)'/.exec(msg);
    if (unknown) throw new UsageError(`Unknown option ${unknown[1]} (see qpq ${name} --help)`);
    const missing = /Option '([^']+?)(?: <value>)?' argument missing/.exec(msg);
    if (missing) {
      throw new UsageError(
        `Option ${missing[1]!.replace(/^-\w, /, "")} needs a value (see qpq ${name} --help)`,
      );
    }
    throw new UsageError(`${msg.split("\n")[0]} (see qpq ${name} --help)`);
  }
  if ((parsed.values as Record<string, unknown>).help) return null;
  const n = parsed.positionals.length;
  if (positionals.max !== undefined && n > positionals.max) {
    const extra = parsed.positionals[positionals.max]!;
    throw new UsageError(`Unexpected argument "${extra}" (see qpq ${name} --help)`);
  }
  if (positionals.min !== undefined && n < positionals.min) {
    throw new UsageError(`Missing argument (see qpq ${name} --help)`);
  }
  return parsed as never;
}

/**
 * Where a command's output goes: the process's stdout and stderr, or, for a command run on
 * behalf of another process through the local control socket (src/cli/_control.ts), that
 * process's connection. Set per command run with `OUTPUT.run(sink, …)`.
 */
export interface OutputSink {
  out(line: string): void;
  err(line: string): void;
}

/** The output of the command running in this async context (none: stdout and stderr). */
export const OUTPUT = new AsyncLocalStorage<OutputSink>();

/** Write a line to stdout. */
export function println(line = ""): void {
  const sink = OUTPUT.getStore();
  if (sink) return sink.out(visibleLines(line));
  Deno.stdout.writeSync(new TextEncoder().encode(visibleLines(line) + "\n"));
}

/** Write a line to stderr. */
export function eprintln(line: string): void {
  const sink = OUTPUT.getStore();
  if (sink) return sink.err(visibleLines(line));
  Deno.stderr.writeSync(new TextEncoder().encode(visibleLines(line) + "\n"));
}

/** Read an environment variable, treating a denied permission as unset. */
export function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}
