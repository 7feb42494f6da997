/**
 * `qpq members <group>`: list a conversation's members.
 *
 * @module
 */
import { clientCommand, timerText } from "./_client.ts";
import { println } from "./_args.ts";
import { formatDuration } from "./disappear.ts";
import { rosterLine } from "./_membership.ts";
import { visible } from "./_terminal.ts";

/** Usage text. */
export const USAGE = `Usage: qpq members <conversation> --username NAME [--password PW]

List the members of a group or DM as the MLS group state knows them (after receiving
what is waiting), with the epoch and its authenticator (equal on every member's device).
Offline it shows what this device knows, and a warning line says so.`;

/** Run `qpq members`. */
export const run = clientCommand({
  name: "members",
  usage: USAGE,
  positionals: { min: 1, max: 1 },
  offline: true,
  async run(client, { values, positionals, online }) {
    if (online) await client.sync();
    const members = client.members(positionals[0]!);
    const conv = client.conversation(positionals[0]!);
    const epoch = conv.kind === "self" ? undefined : client.epochInfo(positionals[0]!);
    const settings = client.settings(positionals[0]!);
    // a DM or a group made before roles: everyone is an admin, no role is shown
    const admins = settings?.admins.filter((a) => members.includes(a));
    if (values.json) {
      println(JSON.stringify({
        type: "members",
        ...(online ? {} : { offline: true }),
        conversation: conv.name,
        members,
        ...(admins ? { admins } : {}),
        ...(settings ? { disappearingSeconds: settings.disappearingSeconds } : {}),
        ...(settings?.description ? { description: settings.description } : {}),
        epoch: epoch ? Number(epoch.epoch) : undefined,
        epochAuthenticator: epoch?.authenticator,
      }));
    } else {
      println(rosterLine(conv.name, members, admins));
      if (settings?.description) println(`topic: ${visible(settings.description)}`);
      if (settings?.disappearingSeconds) {
        println(`disappearing messages: ${timerText(settings.disappearingSeconds)}`);
      }
      if (settings?.disappearingSeconds) {
        println(`disappearing messages: ${formatDuration(settings.disappearingSeconds)}`);
      }
      if (epoch) {
        println(`epoch ${epoch.epoch}, authenticator ${epoch.authenticator.slice(0, 16)}…`);
      }
    }
    return 0;
  },
});
