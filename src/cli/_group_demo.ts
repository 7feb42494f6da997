/**
 * The two-party demo of the original project, on qpq's real client: two identities
 * register, one creates a group and invites the other, who joins from the Welcome; they
 * exchange messages both ways and the transcript is printed.
 *
 * @module
 */
import { QpqClient } from "../client/client.ts";
import { openLocalStore } from "../client/open_store.ts";
import { formatMessage } from "./_client.ts";
import { toHex } from "../bytes.ts";
import { InternalError } from "../errors.ts";

/** Options of {@link runGroupDemo}. */
export interface GroupDemoOptions {
  server: string;
  caCertPem?: string | undefined;
  /** Where the two state files go. */
  dir: string;
  /** Output line sink. */
  print: (line: string) => void;
}

/** The demo's two identities on one server, kept to be reused by the next run. */
interface DemoRecord {
  tag: string;
  passwords: [string, string];
}

/** Where a dir keeps its demo identities (passwords of throwaway demo accounts only). */
const RECORD_FILE = "demo-group.json";

async function readRecords(dir: string): Promise<Record<string, DemoRecord>> {
  try {
    const parsed = JSON.parse(await Deno.readTextFile(`${dir}/${RECORD_FILE}`));
    return typeof parsed === "object" && parsed !== null ? parsed : {};
  } catch {
    return {};
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/**
 * Run the demo; throws if any step fails (including a transcript mismatch). The two
 * identities (and their group) of an earlier run in the same dir against the same server
 * are reused, so running it again leaves no new accounts on the server.
 */
export async function runGroupDemo(o: GroupDemoOptions): Promise<void> {
  await Deno.mkdir(o.dir, { recursive: true, mode: 0o700 });
  const records = await readRecords(o.dir);
  let record = records[o.server];
  const statePath = (name: string) => `${o.dir}/qpq-${name}.bin`;
  const namesOf = (tag: string) => [`alice-${tag}`, `bob-${tag}`] as const;
  const reuse = record !== undefined &&
    (await exists(statePath(namesOf(record.tag)[0]))) &&
    (await exists(statePath(namesOf(record.tag)[1])));
  if (!reuse) {
    record = {
      tag: toHex(crypto.getRandomValues(new Uint8Array(3))),
      passwords: [0, 1].map(() => `pw-${toHex(crypto.getRandomValues(new Uint8Array(8)))}`) as [
        string,
        string,
      ],
    };
  }
  const { tag, passwords } = record!;
  const names = namesOf(tag);
  const group = `demo-${tag}`;
  const clients: QpqClient[] = [];
  try {
    for (const [i, name] of names.entries()) {
      const password = passwords[i]!;
      const store = await openLocalStore(statePath(name), password, {
        create: !reuse,
        username: name,
        server: o.server,
      });
      const client = QpqClient.create({
        store,
        password,
        caCertPem: o.caCertPem,
        server: o.server,
      });
      clients.push(client);
      if (reuse) {
        await client.ensureSession();
        o.print(`${name}: logged in (OPAQUE), the demo identity of an earlier run (${o.dir})`);
        continue;
      }
      await client.register();
      // recorded once registered: the next run logs in instead of registering anew
      if (i === 1) {
        records[o.server] = record!;
        await Deno.writeTextFile(`${o.dir}/${RECORD_FILE}`, JSON.stringify(records) + "\n", {
          mode: 0o600,
        });
      }
      o.print(`${name}: registered (OPAQUE), identity key published, KeyPackages uploaded`);
    }
    const [alice, bob] = clients as [QpqClient, QpqClient];
    await bob.sync();
    const made = alice.listConversations().some((c) => c.name === `#${group}`) &&
      bob.listConversations().some((c) => c.name === `#${group}`);
    if (!made) {
      await alice.createGroup(group);
      o.print(`${names[0]}: created #${group} (MLS_256_XWING_AES256GCM_SHA512_Ed25519)`);
      await alice.invite(group, [names[1]]);
      o.print(`${names[0]}: invited ${names[1]} (one commit, Welcome sent)`);
      await bob.join(); // alice is not bob's contact yet: join accepts her invitation
      o.print(`${names[1]}: joined #${group} from the Welcome`);
    } else o.print(`both: in #${group} already`);
    await alice.send(`#${group}`, "Hello from Alice!");
    await bob.sync();
    await bob.send(`#${group}`, "Hi Alice, Bob here. Post-quantum and all.");
    await alice.sync();
    const a = alice.epochInfo(`#${group}`);
    const b = bob.epochInfo(`#${group}`);
    if (a.authenticator !== b.authenticator) throw new InternalError("Group states diverged");
    o.print(`both: epoch ${a.epoch}, epoch authenticator ${a.authenticator.slice(0, 16)}… (equal)`);
    o.print("");
    o.print(`transcript as ${names[1]} stored it:`);
    const conv = bob.conversation(`#${group}`);
    const history = bob.history(`#${group}`, 2);
    for (const m of history) o.print(`  ${formatMessage(conv, m)}`);
    if (history.length !== 2) throw new InternalError("Transcript is incomplete");
  } finally {
    for (const c of clients) await c.close();
  }
}
