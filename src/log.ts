/**
 * Structured logging: one JSON object per line on stderr. Callers pass only
 * non-secret fields; values that look like secrets are never accepted by type
 * (pass ids, counts and codes, not payloads).
 *
 * @module
 */

/** Log levels in increasing severity. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Fields allowed in a log line: plain scalars only (no byte arrays, no objects). */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** A logger writing JSON lines. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** Minimum level written (default "info"). */
  level?: LogLevel;
  /** Where lines go (default: stderr). */
  write?: (line: string) => void;
  /** Fields added to every line. */
  base?: LogFields;
}

/** Create a JSON-lines logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? "info"];
  const enc = new TextEncoder();
  const write = options.write ??
    ((line: string) => {
      try {
        Deno.stderr.writeSync(enc.encode(line + "\n"));
      } catch { /* stderr closed: nothing to do */ }
    });
  const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (ORDER[level] < min) return;
    write(JSON.stringify({ t: new Date().toISOString(), level, msg, ...options.base, ...fields }));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}

/** A logger that drops everything. */
export const silentLogger: Logger = createLogger({ write: () => {}, level: "error" });
