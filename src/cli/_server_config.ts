/**
 * The configuration flags shared by `qpq server`, `qpq server backup` and `qpq server
 * restore`: the same file, flags and environment find the same data directory and key.
 *
 * @module
 */
import { env } from "./_args.ts";
import { loadServerConfig, type ServerConfig } from "../server/mod.ts";

/** parseArgs options of the flags every `qpq server` command reads. */
export const SERVER_CONFIG_OPTIONS = {
  config: { type: "string" },
  "data-dir": { type: "string" },
} as const;

/** Usage lines of {@link SERVER_CONFIG_OPTIONS}. */
export const SERVER_CONFIG_USAGE =
  `  --config FILE            TOML config (default $QPQ_CONFIG; see docs/operations.md)
  --data-dir DIR           data directory (default ./data; db_path in the config wins)`;

/** Read the server configuration the way `qpq server` does (flags > env > file > defaults). */
export function readServerConfig(
  values: { config?: string | undefined; "data-dir"?: string | undefined },
  more: { listen?: string | undefined; healthListen?: string | undefined } = {},
): Promise<ServerConfig> {
  return loadServerConfig(
    {
      config: values.config ?? env("QPQ_CONFIG"),
      dataDir: values["data-dir"],
      ...more,
    },
    {
      QPQ_AUTH_TOKEN: env("QPQ_AUTH_TOKEN"),
      QPQ_DB_KEY: env("QPQ_DB_KEY"),
      QPQ_PRODUCTION: env("QPQ_PRODUCTION"),
      QPQ_LOG: env("QPQ_LOG"),
    },
  );
}
