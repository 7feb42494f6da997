/**
 * `qpq disappear <group> <duration|off>`: set a group's disappearing-message timer.
 *
 * @module
 */
import { clientCommand } from "./_client.ts";
import { println } from "./_args.ts";
import { UsageError } from "../errors.ts";
import { visible } from "./_terminal.ts";

/** Usage text. */
export const USAGE = `Usage: qpq disappear <group> <duration|off> --username NAME [--password PW]

Set how long messages of a group are kept: every member's client deletes older ones from
its history, on start and while it runs. Duration: 30s to 4w (s, m, h, d, w), or off.
Admins only; every member's client checks this from the group's MLS state.`;

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Parse `30s`, `5m`, `1h`, `7d`, `2w` or `off` into seconds (0 = off). */
export function parseDuration(text: string): number {
  if (text === "off" || text === "0") return 0;
  const m = /^([1-9][0-9]{0,6})([smhdw])$/.exec(text);
  if (!m) throw new UsageError(`Say a duration like 30s, 10m, 1h, 7d or 2w, or off (got ${text})`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

/** Render seconds as the largest whole unit (`1h`, `90s`); `off` for 0. */
export function formatDuration(seconds: number): string {
  if (seconds === 0) return "off";
  for (const u of ["w", "d", "h", "m"]) {
    if (seconds % UNITS[u]! === 0) return `${seconds / UNITS[u]!}${u}`;
  }
  return `${seconds}s`;
}

/** Run `qpq disappear`. */
export const run = clientCommand({
  name: "disappear",
  usage: USAGE,
  positionals: { min: 2, max: 2 },
  async run(client, { values, positionals }) {
    const [group, text] = positionals as [string, string];
    const seconds = parseDuration(text);
    const changed = await client.setDisappearing(group, seconds);
    const conv = client.conversation(group);
    if (values.json) {
      println(JSON.stringify({
        type: "disappear",
        conversation: conv.name,
        disappearingSeconds: seconds,
        changed,
      }));
    } else {
      println(
        `Disappearing messages in ${visible(conv.name)}: ${formatDuration(seconds)}${
          changed ? "" : " already"
        }`,
      );
    }
    return 0;
  },
});
