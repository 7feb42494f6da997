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

/** Run the demo; throws if any step fails (including a transcript mismatch). */
export async function runGroupDemo(o: GroupDemoOptions): Promise<void> {
  const tag = toHex(crypto.getRandomValues(new Uint8Array(3)));
  const names = [`alice-${tag}`, `bob-${tag}`] as const;
  const group = `demo-${tag}`;
  const clients: QpqClient[] = [];
  try {
    for (const name of names) {
      const password = `pw-${toHex(crypto.getRandomValues(new Uint8Array(8)))}`;
      const store = await openLocalStore(`${o.dir}/qpq-${name}.bin`, password, {
        create: true,
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
      await client.register();
      o.print(`${name}: registered (OPAQUE), identity key published, KeyPackages uploaded`);
    }
    const [alice, bob] = clients as [QpqClient, QpqClient];
    await alice.createGroup(group);
    o.print(`${names[0]}: created #${group} (MLS_256_XWING_AES256GCM_SHA512_Ed25519)`);
    await alice.invite(group, [names[1]]);
    o.print(`${names[0]}: invited ${names[1]} (one commit, Welcome sent)`);
    await bob.join(); // alice is not bob's contact yet: join accepts her invitation
    o.print(`${names[1]}: joined #${group} from the Welcome`);
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
    const history = bob.history(`#${group}`, 10);
    for (const m of history) o.print(`  ${formatMessage(conv, m)}`);
    if (history.length !== 2) throw new InternalError("Transcript is incomplete");
  } finally {
    for (const c of clients) await c.close();
  }
}
