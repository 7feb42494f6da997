import { assert, assertEquals, assertThrows } from "./_support/assert.ts";
import {
  DEV_AUTH_TOKEN,
  parseConfigFile,
  resolveConfig,
  type ServerFlags,
} from "../src/server/config.ts";
import { UsageError } from "../src/errors.ts";

const TOML = `
listen = "127.0.0.1:7100"
data_dir = "/srv/qpq"
auth_token = "from-file"
store_backend = "file"
db_key = "file-key"
`;

Deno.test("resolveConfig uses defaults when nothing is given", () => {
  const c = resolveConfig({}, {}, {});
  assertEquals(c.listen, "0.0.0.0:7000");
  assertEquals(c.dataDir, "data");
  assertEquals(c.dbPath, "data/qpq.db");
  assertEquals(c.authToken, DEV_AUTH_TOKEN);
  assertEquals(c.storeBackend, "sql");
});

Deno.test("resolveConfig takes flags over env over file over defaults", () => {
  const file = parseConfigFile(TOML, "t.toml");
  const fromFile = resolveConfig({}, file, {});
  assertEquals(fromFile.listen, "127.0.0.1:7100");
  assertEquals(fromFile.dataDir, "/srv/qpq");
  assertEquals(fromFile.dbPath, "/srv/qpq/qpq.db");
  assertEquals(fromFile.authToken, "from-file");
  assertEquals(fromFile.storeBackend, "sql", "store_backend file maps to sql");
  const withEnv = resolveConfig({}, file, { QPQ_AUTH_TOKEN: "from-env", QPQ_DB_KEY: "env-key" });
  assertEquals(withEnv.authToken, "from-env");
  assertEquals(withEnv.dbKey, "env-key");
  const withFlags = resolveConfig({ listen: "127.0.0.1:9", dataDir: "/tmp/x" }, file, {});
  assertEquals(withFlags.listen, "127.0.0.1:9");
  assertEquals(withFlags.dataDir, "/tmp/x");
});

Deno.test("parseConfigFile rejects unknown keys, wrong types and bad TOML", () => {
  assertThrows(() => parseConfigFile(`lisen = "x"`, "a.toml"), UsageError, `Unknown key "lisen"`);
  assertThrows(() => parseConfigFile(`listen = 7000`, "a.toml"), UsageError, "must be a string");
  assertThrows(
    () => parseConfigFile(`listen = `, "a.toml"),
    UsageError,
    "Cannot parse config a.toml",
  );
});

Deno.test("resolveConfig validates addresses and tls pairs", () => {
  assertThrows(() => resolveConfig({ listen: "nonsense" }, {}, {}), UsageError, "HOST:PORT");
  assertThrows(() => resolveConfig({}, { tls_cert: "c.pem" }, {}), UsageError, "tls_key");
});

Deno.test("resolveConfig in production refuses dev token, short token, no db_key, generated cert", () => {
  const prod = { QPQ_PRODUCTION: "1" };
  assertThrows(() => resolveConfig({}, {}, prod), UsageError, "development auth_token");
  assertThrows(
    () => resolveConfig({}, {}, { ...prod, QPQ_AUTH_TOKEN: "short" }),
    UsageError,
    "at least",
  );
  const token = { ...prod, QPQ_AUTH_TOKEN: "a-long-enough-invite-token" };
  assertThrows(() => resolveConfig({}, {}, token), UsageError, "db_key");
  assertThrows(
    () => resolveConfig({}, {}, { ...token, QPQ_DB_KEY: "short-key" }),
    UsageError,
    "at least 32 characters",
  );
  const key = "zq3Hf8sXk2LwP0vR9mT4yB6nC1dE5gJ7";
  assertThrows(
    () => resolveConfig({}, {}, { ...token, QPQ_DB_KEY: key }),
    UsageError,
    "generated certificate",
  );
  const ok = resolveConfig({}, { tls_cert: "c.pem", tls_key: "k.pem" }, {
    ...token,
    QPQ_DB_KEY: key,
  });
  assertEquals(ok.production, true);
});

Deno.test("resolveConfig in production lists every unmet requirement in one error", () => {
  const e = assertThrows(
    () => resolveConfig({}, { store_backend: "memory" }, { QPQ_PRODUCTION: "1" }),
    UsageError,
  );
  assertEquals(
    e.message,
    "Production mode refuses 4 settings: (1) the development auth_token (set QPQ_AUTH_TOKEN); " +
      "(2) no db_key (or QPQ_DB_KEY), so stored data would not be sealed; " +
      "(3) a generated certificate (set tls_cert and tls_key); (4) the in-memory store",
  );
  const two = assertThrows(
    () => resolveConfig({}, {}, { QPQ_PRODUCTION: "1", QPQ_AUTH_TOKEN: "short", QPQ_DB_KEY: "k" }),
    UsageError,
  );
  assert(
    /refuses 3 settings: \(1\) an auth_token of at least 16.*\(2\) a random db_key.*\(3\) a generated/
      .test(two.message),
    two.message,
  );
  assert(!two.message.includes("\n"), "one line");
});

Deno.test("resolveConfig: strangers get a quarter of max_connections by default, never more than all", () => {
  const d = resolveConfig({}, {}, {});
  assertEquals(
    [d.loginDeadlineMs, d.maxUnauthenticatedConnections, d.maxUnauthenticatedPerSource],
    [10_000, 2_500, 64],
  );
  assertEquals(resolveConfig({}, { max_connections: 100 }, {}).maxUnauthenticatedConnections, 25);
  assertEquals(resolveConfig({}, { max_connections: 2 }, {}).maxUnauthenticatedConnections, 1);
  assertThrows(
    () => resolveConfig({}, { max_connections: 10, max_unauthenticated_connections: 11 }, {}),
    UsageError,
    "max_unauthenticated_connections cannot exceed max_connections",
  );
  assertThrows(
    () => resolveConfig({}, { login_deadline_ms: 0 }, {}),
    UsageError,
    "login_deadline_ms",
  );
});

Deno.test("resolveConfig reads the hostile-peer limits and refuses values that would break honest use", () => {
  const c = resolveConfig({}, {
    max_sender_messages: 7,
    max_sender_bytes: 4_000_000,
    max_connections: 9,
    max_connections_per_user: 3,
    max_unsent_bytes: 4_000_000,
  }, {});
  assertEquals(
    [c.maxSenderMessages, c.maxSenderBytes, c.maxConnections, c.maxConnectionsPerUser],
    [7, 4_000_000, 9, 3],
  );
  assertEquals(c.maxUnsentBytes, 4_000_000);
  assertThrows(() => resolveConfig({}, { max_connections: 0 }, {}), UsageError, "max_connections");
  assertThrows(
    () => resolveConfig({}, { max_sender_bytes: 1000 }, {}),
    UsageError,
    "twice max_message_bytes",
  );
  assertThrows(
    () => resolveConfig({}, { max_unsent_bytes: 1000 }, {}),
    UsageError,
    "max_unsent_bytes must be at least",
  );
});

/**
 * Every key the config file knows, a non-default value for it and the resolved field it
 * sets. The test below checks this table against the keys parseConfigFile lists, so a new
 * key cannot be added without a test of it.
 */
const EVERY_KEY: [key: string, value: string | number | boolean, field: string, want?: unknown][] =
  [
    ["listen", "127.0.0.1:7101", "listen"],
    ["data_dir", "/srv/qpq-all", "dataDir"],
    ["tls_cert", "/etc/qpq/cert.pem", "tlsCert"],
    ["tls_key", "/etc/qpq/key.pem", "tlsKey"],
    ["auth_token", "file-token", "authToken"],
    ["store_backend", "memory", "storeBackend"],
    ["db_path", "/var/lib/qpq/other.db", "dbPath"],
    ["db_key", "file-db-key", "dbKey"],
    ["health_listen", "127.0.0.1:7102", "healthListen"],
    ["max_message_bytes", 100_000, "maxMessageBytes"],
    ["max_queue_messages", 500, "maxQueueMessages"],
    ["max_sender_messages", 100, "maxSenderMessages"],
    ["max_sender_bytes", 8 * 1024 * 1024, "maxSenderBytes"],
    ["retention_seconds", 3600, "retentionSeconds"],
    ["max_connections", 50, "maxConnections"],
    ["max_connections_per_user", 4, "maxConnectionsPerUser"],
    ["max_unsent_bytes", 4 * 1024 * 1024, "maxUnsentBytes"],
    ["key_package_fetches_per_requester", 300, "keyPackageFetchesPerRequester"],
    ["key_package_fetches_per_target", 30, "keyPackageFetchesPerTarget"],
    ["session_ttl_seconds", 7200, "sessionTtlSeconds"],
    ["log_level", "warn", "logLevel"],
    ["fsync", false, "fsync"],
    ["login_deadline_ms", 5_000, "loginDeadlineMs"],
    ["max_unauthenticated_connections", 20, "maxUnauthenticatedConnections"],
    ["max_unauthenticated_per_source", 8, "maxUnauthenticatedPerSource"],
    ["login_attempts_per_source", 90, "loginAttemptsPerSource"],
    ["max_groups_per_user", 100, "maxGroupsPerUser"],
  ];

Deno.test("every config file key is read into the configuration (and this test knows them all)", () => {
  let known: string[] = [];
  try {
    parseConfigFile("no_such_key = 1\n", "qpq.toml");
  } catch (e) {
    known = /known keys: (.*)$/.exec((e as Error).message)![1]!.split(", ");
  }
  assertEquals(EVERY_KEY.map(([k]) => k).sort(), [...known].sort());
  const toml = EVERY_KEY.map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join("\n");
  const file = parseConfigFile(toml, "qpq.toml");
  const c = resolveConfig({}, file, {}) as unknown as Record<string, unknown>;
  const defaults = resolveConfig({}, {}, {}) as unknown as Record<string, unknown>;
  for (const [key, value, field, want] of EVERY_KEY) {
    assertEquals(c[field], want ?? value, key);
    assert(defaults[field] !== c[field], `${key}: the test value must differ from the default`);
  }
});

Deno.test("every QPQ_* variable of the server beats the file, and every flag beats both", () => {
  const file = parseConfigFile(
    [
      'listen = "127.0.0.1:7201"',
      'data_dir = "/from/file"',
      'health_listen = "127.0.0.1:7202"',
      'auth_token = "file-token"',
      'db_key = "file-key"',
      'log_level = "warn"',
    ].join("\n"),
    "qpq.toml",
  );
  const env = {
    QPQ_AUTH_TOKEN: "env-token",
    QPQ_DB_KEY: "env-key",
    QPQ_LOG: "debug",
    QPQ_PRODUCTION: "0",
  };
  const fromEnv = resolveConfig({}, file, env);
  assertEquals(
    [fromEnv.authToken, fromEnv.dbKey, fromEnv.logLevel, fromEnv.production],
    ["env-token", "env-key", "debug", false],
  );
  assertEquals([fromEnv.listen, fromEnv.dataDir], ["127.0.0.1:7201", "/from/file"]);
  const flags = {
    listen: "127.0.0.1:7301",
    dataDir: "/from/flag",
    healthListen: "127.0.0.1:7302",
  };
  const fromFlags = resolveConfig(flags, file, env);
  assertEquals(
    [fromFlags.listen, fromFlags.dataDir, fromFlags.healthListen],
    ["127.0.0.1:7301", "/from/flag", "127.0.0.1:7302"],
  );
  assertEquals(fromFlags.dbPath, "/from/flag/qpq.db", "db_path follows the data dir");
  // QPQ_PRODUCTION: "1" and "true" turn it on, anything else leaves it off
  for (const [v, on] of [["1", true], ["true", true], ["0", false], ["yes", false]] as const) {
    const prod = { QPQ_AUTH_TOKEN: "x".repeat(40), QPQ_DB_KEY: "k".repeat(44) };
    const tls = { tls_cert: "c.pem", tls_key: "k.pem" };
    assertEquals(resolveConfig({}, tls, { ...prod, QPQ_PRODUCTION: v }).production, on, v);
  }
});

/** The keys the config parser knows (from its own error message). */
function knownKeys(): string[] {
  try {
    parseConfigFile("no_such_key = 1\n", "qpq.toml");
  } catch (e) {
    return /known keys: (.*)$/.exec((e as Error).message)![1]!.split(", ");
  }
  throw new Error("parseConfigFile accepted an unknown key");
}

/** The rows of the first Markdown table in `text` whose header is key | env var | flag | … */
function configTable(text: string): Map<string, string[]>[] {
  const lines = text.split("\n");
  const head = lines.findIndex((l) => /^\|\s*key\s*\|\s*env var\s*\|\s*flag\s*\|/.test(l));
  if (head < 0) return [];
  const rows: Map<string, string[]>[] = [];
  const names = lines[head]!.split("|").slice(1, -1).map((c) => c.trim());
  for (const line of lines.slice(head + 2)) {
    if (!line.startsWith("|")) break;
    const cells = line.split("|").slice(1, -1).map((c) => c.trim());
    rows.push(new Map(names.map((n, i) => [n, [cells[i] ?? ""]])));
  }
  return rows;
}

const code = (cell: string): string | undefined => /^`([^`]*)`/.exec(cell)?.[1];

for (const doc of ["docs/operations.md", "README.md"]) {
  Deno.test(`${doc} lists every config key exactly once, with the env var, flag and default the code uses`, async () => {
    const text = await Deno.readTextFile(new URL(`../${doc}`, import.meta.url));
    const rows = configTable(text);
    const keys = rows.map((r) => code(r.get("key")![0]!) ?? "");
    assertEquals([...keys].sort(), knownKeys().sort(), `${doc}: the keys of its table`);
    assertEquals(new Set(keys).size, keys.length, `${doc}: a key listed twice`);
    const field = new Map(EVERY_KEY.map(([k, v, f]) => [k, { value: v, field: f }]));
    const defaults = resolveConfig({}, {}, {}) as unknown as Record<string, unknown>;
    const flagField: Record<string, keyof ServerFlags> = {
      "--listen": "listen",
      "--data-dir": "dataDir",
      "--health-listen": "healthListen",
    };
    for (const r of rows) {
      const key = code(r.get("key")![0]!)!;
      const { value, field: f } = field.get(key)!;
      // the env var column: that variable sets this key, over the file
      const envVar = code(r.get("env var")![0]!);
      const other = typeof value === "string" ? `${value}-env` : value;
      for (const name of ["QPQ_AUTH_TOKEN", "QPQ_DB_KEY", "QPQ_LOG"]) {
        const envValue = name === "QPQ_LOG" ? "error" : String(other);
        const c = resolveConfig({}, {}, { [name]: envValue }) as unknown as Record<string, unknown>;
        assertEquals(c[f] === envValue, envVar === name, `${doc}: ${key} and ${name}`);
      }
      // the flag column: that flag sets this key
      const flag = code(r.get("flag")![0]!);
      for (const [name, flagKey] of Object.entries(flagField)) {
        const v = flagKey === "dataDir" ? "/from/flag" : "127.0.0.1:7999";
        const c = resolveConfig({ [flagKey]: v }, {}, {}) as unknown as Record<string, unknown>;
        assertEquals(c[f] === v, flag === name, `${doc}: ${key} and ${name}`);
      }
      // the default column: a literal or a leading number is the code's default
      const cell = r.get("default")![0]!;
      const literal = code(cell);
      const number = /^(\d+)\b/.exec(cell)?.[1];
      if (literal !== undefined && !literal.includes("<")) {
        assertEquals(String(defaults[f]), literal, `${doc}: default of ${key}`);
      } else if (number !== undefined) {
        assertEquals(defaults[f], Number(number), `${doc}: default of ${key}`);
      }
    }
  });
}
