/**
 * Server configuration: TOML file keys of the original project (`listen`, `data_dir`,
 * `tls_cert`, `tls_key`, `auth_token`, `store_backend`, `db_path`, `db_key`) plus limits,
 * `session_ttl_seconds` and `health_listen`. Precedence: command-line flags over
 * environment (`QPQ_AUTH_TOKEN`, `QPQ_DB_KEY`, `QPQ_PRODUCTION`) over the file over
 * defaults. The only importer of smol-toml.
 *
 * @module
 */
import { parse as parseToml } from "smol-toml";
import {
  KEY_PACKAGE_FETCHES_PER_REQUESTER,
  KEY_PACKAGE_FETCHES_PER_TARGET,
  LOGIN_ATTEMPTS_PER_SOURCE,
  LOGIN_DEADLINE_MS,
  MAX_CONNECTIONS,
  MAX_CONNECTIONS_PER_USER,
  MAX_FRAME_BYTES,
  MAX_GROUPS_PER_USER,
  MAX_MESSAGE_BYTES,
  MAX_QUEUE_MESSAGES,
  MAX_SENDER_QUEUE_BYTES,
  MAX_SENDER_QUEUE_MESSAGES,
  MAX_UNAUTHENTICATED_PER_SOURCE,
  MAX_UNSENT_BYTES_PER_CONNECTION,
  MESSAGE_RETENTION_SECONDS,
  MIN_PRODUCTION_DB_KEY_LENGTH,
  MIN_PRODUCTION_TOKEN_LENGTH,
  SESSION_TTL_SECONDS,
  UNAUTHENTICATED_SHARE_DIVISOR,
} from "../limits.ts";
import { UsageError } from "../errors.ts";
import { parseHostPort } from "../transport/quic.ts";

/** The development registration token; refused in production mode. */
export const DEV_AUTH_TOKEN = "devtoken";

/** Resolved server configuration. */
export interface ServerConfig {
  /** QUIC listen address, `HOST:PORT`. */
  listen: string;
  /** Directory for the database, generated certificate and server secrets. */
  dataDir: string;
  /** TLS certificate file (PEM or DER); generated into dataDir when unset. */
  tlsCert: string | undefined;
  /** TLS private key file (PEM or PKCS#8 DER). */
  tlsKey: string | undefined;
  /** Token required to register an account. */
  authToken: string;
  /** "sql" (SQLite file) or "memory" (tests only). "file" is read as "sql". */
  storeBackend: "sql" | "memory";
  /** SQLite database path (default `<dataDir>/qpq.db`). */
  dbPath: string;
  /** Key for sealing stored values; empty = not sealed. Secret. */
  dbKey: string;
  /** Optional plain-HTTP health endpoint, `HOST:PORT`. */
  healthListen: string | undefined;
  /** Largest message payload in bytes. */
  maxMessageBytes: number;
  /** Most undelivered messages per recipient. */
  maxQueueMessages: number;
  /** Most undelivered messages one sender may hold in another user's queue (commits: twice). */
  maxSenderMessages: number;
  /** Most undelivered payload bytes one sender may hold in another user's queue (commits: twice). */
  maxSenderBytes: number;
  /** How long undelivered messages are kept, seconds. */
  retentionSeconds: number;
  /** Most connections served at once. */
  maxConnections: number;
  /** Most connections logged in as one user at once. */
  maxConnectionsPerUser: number;
  /** Most unread answer and push bytes per connection before it is cut off. */
  maxUnsentBytes: number;
  /** KeyPackage fetches one user may make at once (refilled over 10 minutes). */
  keyPackageFetchesPerRequester: number;
  /** KeyPackage fetches of one user's packages at once, by anyone (refilled over 10 minutes). */
  keyPackageFetchesPerTarget: number;
  /** How long a session token from a login stays valid, seconds. */
  sessionTtlSeconds: number;
  /** fsync every commit (default true); false trades power-cut safety for throughput. */
  fsync: boolean;
  /** QPQ_PRODUCTION=1: refuse unsafe settings. */
  production: boolean;
  /** Log level. */
  logLevel: "debug" | "info" | "warn" | "error";
  /** Time a connection has to log in before it is closed (ms). */
  loginDeadlineMs: number;
  /** Most connections not logged in at once (default a quarter of maxConnections). */
  maxUnauthenticatedConnections: number;
  /** Most connections not logged in at once from one IPv4 address or IPv6 /64. */
  maxUnauthenticatedPerSource: number;
  /**
   * Login attempts one IPv4 address or IPv6 /64 may start at once, one back every
   * 60 s / this; a login that succeeds gives its attempt back.
   */
  loginAttemptsPerSource: number;
  /** Most conversations one user is in; an add past it waits as a held invitation. */
  maxGroupsPerUser: number;
}

/** Values given on the command line (undefined = not given). */
export interface ServerFlags {
  config?: string | undefined;
  listen?: string | undefined;
  dataDir?: string | undefined;
  healthListen?: string | undefined;
}

const FILE_KEYS = {
  listen: "string",
  data_dir: "string",
  tls_cert: "string",
  tls_key: "string",
  auth_token: "string",
  store_backend: "string",
  db_path: "string",
  db_key: "string",
  health_listen: "string",
  max_message_bytes: "number",
  max_queue_messages: "number",
  max_sender_messages: "number",
  max_sender_bytes: "number",
  max_connections: "number",
  max_connections_per_user: "number",
  max_unsent_bytes: "number",
  key_package_fetches_per_requester: "number",
  key_package_fetches_per_target: "number",
  retention_seconds: "number",
  session_ttl_seconds: "number",
  log_level: "string",
  fsync: "boolean",
  login_deadline_ms: "number",
  max_unauthenticated_connections: "number",
  max_unauthenticated_per_source: "number",
  login_attempts_per_source: "number",
  max_groups_per_user: "number",
} as const;

type FileConfig = {
  -readonly [K in keyof typeof FILE_KEYS]?: typeof FILE_KEYS[K] extends "string" ? string
    : typeof FILE_KEYS[K] extends "boolean" ? boolean
    : number;
};

/** Parse TOML config text; unknown keys and wrong types are {@link UsageError}s. */
export function parseConfigFile(text: string, path: string): FileConfig {
  let raw: Record<string, unknown>;
  try {
    raw = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    const first = e instanceof Error ? (e.message.split("\n")[0] ?? "") : "";
    const line = (e as { line?: unknown }).line;
    const at = typeof line === "number" ? ` line ${line}` : "";
    throw new UsageError(`Cannot parse config ${path}${at}: ${first}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const want = (FILE_KEYS as Record<string, string>)[key];
    const at = keyLine(text, key);
    const where = `${path}${at === undefined ? "" : ` line ${at}`}`;
    if (!want) {
      const near = closestKey(key, Object.keys(FILE_KEYS));
      throw new UsageError(
        `Unknown key "${key}" in ${where}${near ? `; did you mean "${near}"?` : ""}; known keys: ${
          Object.keys(FILE_KEYS).join(", ")
        }`,
      );
    }
    if (typeof value !== want || (want === "number" && !Number.isSafeInteger(value))) {
      throw new UsageError(
        `Key "${key}" in ${where} must be ${
          want === "number" ? "an integer" : want === "boolean" ? "true or false" : "a string"
        }`,
      );
    }
    out[key] = value;
  }
  return out as FileConfig;
}

/** The 1-based line where top-level `key` is set (`key =`, `"key" =`, `[key]`), if found. */
function keyLine(text: string, key: string): number | undefined {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    for (const k of [key, `"${key}"`, `'${key}'`]) {
      if (!l.startsWith(k) && !l.startsWith(`[${k}`)) continue;
      const rest = l.startsWith(k) ? l.slice(k.length).trimStart() : l.slice(k.length + 1);
      if (/^[=.\]]/.test(rest)) return i + 1;
    }
  }
  return undefined;
}

/** The known key nearest to `key` (edit distance at most a third of its length), if any. */
function closestKey(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(key.toLowerCase().replaceAll("-", "_"), k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

/** Levenshtein distance (small strings: config keys). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        prev[j]! + 1,
        cur[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** Environment variables read by the server. */
export interface ServerEnv {
  QPQ_AUTH_TOKEN?: string | undefined;
  QPQ_DB_KEY?: string | undefined;
  QPQ_PRODUCTION?: string | undefined;
  QPQ_LOG?: string | undefined;
}

/** Merge flags, env, file and defaults; validates every value. Pure apart from nothing. */
export function resolveConfig(flags: ServerFlags, file: FileConfig, env: ServerEnv): ServerConfig {
  const dataDir = flags.dataDir ?? file.data_dir ?? "data";
  const backend = file.store_backend ?? "sql";
  if (!["sql", "file", "memory"].includes(backend)) {
    throw new UsageError(
      `Invalid store_backend "${backend}": use "sql" (or "file", read as "sql")`,
    );
  }
  const logLevel = env.QPQ_LOG ?? file.log_level ?? "info";
  if (!["debug", "info", "warn", "error"].includes(logLevel)) {
    throw new UsageError(`Invalid log level "${logLevel}": use debug, info, warn or error`);
  }
  const config: ServerConfig = {
    listen: flags.listen ?? file.listen ?? "0.0.0.0:7000",
    dataDir,
    tlsCert: file.tls_cert,
    tlsKey: file.tls_key,
    authToken: env.QPQ_AUTH_TOKEN ?? file.auth_token ?? DEV_AUTH_TOKEN,
    storeBackend: backend === "memory" ? "memory" : "sql",
    dbPath: file.db_path ?? joinPath(dataDir, "qpq.db"),
    dbKey: env.QPQ_DB_KEY ?? file.db_key ?? "",
    healthListen: flags.healthListen ?? file.health_listen,
    maxMessageBytes: file.max_message_bytes ?? MAX_MESSAGE_BYTES,
    maxQueueMessages: file.max_queue_messages ?? MAX_QUEUE_MESSAGES,
    maxSenderMessages: file.max_sender_messages ?? MAX_SENDER_QUEUE_MESSAGES,
    maxSenderBytes: file.max_sender_bytes ?? MAX_SENDER_QUEUE_BYTES,
    retentionSeconds: file.retention_seconds ?? MESSAGE_RETENTION_SECONDS,
    maxConnections: file.max_connections ?? MAX_CONNECTIONS,
    maxConnectionsPerUser: file.max_connections_per_user ?? MAX_CONNECTIONS_PER_USER,
    maxUnsentBytes: file.max_unsent_bytes ?? MAX_UNSENT_BYTES_PER_CONNECTION,
    keyPackageFetchesPerRequester: file.key_package_fetches_per_requester ??
      KEY_PACKAGE_FETCHES_PER_REQUESTER,
    keyPackageFetchesPerTarget: file.key_package_fetches_per_target ??
      KEY_PACKAGE_FETCHES_PER_TARGET,
    sessionTtlSeconds: file.session_ttl_seconds ?? SESSION_TTL_SECONDS,
    fsync: file.fsync ?? true,
    production: env.QPQ_PRODUCTION === "1" || env.QPQ_PRODUCTION === "true",
    logLevel: logLevel as ServerConfig["logLevel"],
    loginDeadlineMs: file.login_deadline_ms ?? LOGIN_DEADLINE_MS,
    maxUnauthenticatedConnections: file.max_unauthenticated_connections ??
      Math.max(
        1,
        Math.floor((file.max_connections ?? MAX_CONNECTIONS) / UNAUTHENTICATED_SHARE_DIVISOR),
      ),
    maxUnauthenticatedPerSource: file.max_unauthenticated_per_source ??
      MAX_UNAUTHENTICATED_PER_SOURCE,
    loginAttemptsPerSource: file.login_attempts_per_source ?? LOGIN_ATTEMPTS_PER_SOURCE,
    maxGroupsPerUser: file.max_groups_per_user ?? MAX_GROUPS_PER_USER,
  };
  parseHostPort(config.listen, "listen address");
  if (config.healthListen !== undefined) {
    parseHostPort(config.healthListen, "health_listen address");
  }
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new UsageError(
      "Set both tls_cert and tls_key, or neither (a certificate is then generated)",
    );
  }
  for (
    const [name, v] of [
      ["max_message_bytes", config.maxMessageBytes],
      ["max_queue_messages", config.maxQueueMessages],
      ["max_sender_messages", config.maxSenderMessages],
      ["max_sender_bytes", config.maxSenderBytes],
      ["max_connections", config.maxConnections],
      ["max_connections_per_user", config.maxConnectionsPerUser],
      ["max_unsent_bytes", config.maxUnsentBytes],
      ["key_package_fetches_per_requester", config.keyPackageFetchesPerRequester],
      ["key_package_fetches_per_target", config.keyPackageFetchesPerTarget],
      ["retention_seconds", config.retentionSeconds],
      ["session_ttl_seconds", config.sessionTtlSeconds],
      ["login_deadline_ms", config.loginDeadlineMs],
      ["max_unauthenticated_connections", config.maxUnauthenticatedConnections],
      ["max_unauthenticated_per_source", config.maxUnauthenticatedPerSource],
      ["login_attempts_per_source", config.loginAttemptsPerSource],
      ["max_groups_per_user", config.maxGroupsPerUser],
    ] as const
  ) {
    if (!(v > 0)) throw new UsageError(`${name} must be a positive integer`);
  }
  if (config.maxMessageBytes > MAX_MESSAGE_BYTES) {
    throw new UsageError(`max_message_bytes cannot exceed ${MAX_MESSAGE_BYTES}`);
  }
  if (config.maxSenderBytes < 2 * config.maxMessageBytes) {
    throw new UsageError("max_sender_bytes must be at least twice max_message_bytes");
  }
  if (config.maxUnsentBytes < 2 * MAX_FRAME_BYTES) {
    throw new UsageError(`max_unsent_bytes must be at least ${2 * MAX_FRAME_BYTES} (two frames)`);
  }
  if (config.maxUnauthenticatedConnections > config.maxConnections) {
    throw new UsageError("max_unauthenticated_connections cannot exceed max_connections");
  }
  if (config.production) checkProduction(config);
  return config;
}

/**
 * The unmet production requirements of a configuration, one phrase each (empty when
 * none): the dev token, a short token, no or a short db_key, a generated certificate,
 * the in-memory store.
 */
export function productionProblems(config: ServerConfig): string[] {
  const problems: string[] = [];
  if (config.authToken === DEV_AUTH_TOKEN) {
    problems.push("the development auth_token (set QPQ_AUTH_TOKEN)");
  } else if (config.authToken.length < MIN_PRODUCTION_TOKEN_LENGTH) {
    problems.push(`an auth_token of at least ${MIN_PRODUCTION_TOKEN_LENGTH} characters is needed`);
  }
  if (config.dbKey === "") {
    problems.push("no db_key (or QPQ_DB_KEY), so stored data would not be sealed");
  } else if (config.dbKey.length < MIN_PRODUCTION_DB_KEY_LENGTH) {
    problems.push(
      `a random db_key of at least ${MIN_PRODUCTION_DB_KEY_LENGTH} characters is needed (e.g. openssl rand -base64 32)`,
    );
  }
  if (config.tlsCert === undefined) {
    problems.push("a generated certificate (set tls_cert and tls_key)");
  }
  if (config.storeBackend === "memory") problems.push("the in-memory store");
  return problems;
}

/** QPQ_PRODUCTION=1: one {@link UsageError} that lists every unmet requirement at once. */
export function checkProduction(config: ServerConfig): void {
  const problems = productionProblems(config);
  if (problems.length === 0) return;
  throw new UsageError(
    `Production mode refuses ${problems.length} setting${problems.length > 1 ? "s" : ""}: ` +
      problems.map((p, i) => `(${i + 1}) ${p}`).join("; "),
  );
}

function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** Read and resolve the configuration (the I/O part). */
export async function loadServerConfig(flags: ServerFlags, env: ServerEnv): Promise<ServerConfig> {
  let file: FileConfig = {};
  if (flags.config !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(flags.config);
    } catch (e) {
      throw new UsageError(
        `Cannot read config ${flags.config}: ${
          e instanceof Deno.errors.NotFound ? "no such file" : "not readable"
        }`,
      );
    }
    file = parseConfigFile(text, flags.config);
  }
  return resolveConfig(flags, file, env);
}
