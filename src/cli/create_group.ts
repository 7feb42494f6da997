/**
 * `qpq create-group <name>`: create an MLS group.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { UsageError } from "../errors.ts";
import type { MlsSuiteName } from "../mls/mod.ts";

/** Usage text. */
export const USAGE = `Usage: qpq create-group <name> --username NAME [--password PW] [--suite SUITE]

Create a group with you as its only member, then add people with qpq invite.

Options:
  --suite xwing|x25519   MLS cipher suite: xwing = MLS_256_XWING_AES256GCM_SHA512_Ed25519
                         (post-quantum, default), x25519 = MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`;

const SUITES: Record<string, MlsSuiteName> = {
  xwing: "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
  x25519: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
};

/** Run `qpq create-group`. */
export const run = clientCommand({
  name: "create-group",
  usage: USAGE,
  options: { suite: { type: "string" } },
  positionals: { min: 1, max: 1 },
  async run(client, { values, positionals }) {
    const suiteName = (values.suite as string | undefined) ?? "xwing";
    const suite = SUITES[suiteName];
    if (!suite) throw new UsageError(`Unknown suite "${suiteName}": use xwing or x25519`);
    const conv = await client.createGroup(positionals[0]!, suite);
    println(
      values.json
        ? JSON.stringify({ type: "conversation", name: conv.name, suite })
        : `Group ${conv.name} created (${suite})`,
    );
    return 0;
  },
});
