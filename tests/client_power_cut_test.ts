/**
 * A power cut on the client: what the client store committed without waiting for the disk
 * (`transaction(fn, { durable: false })`: "sent" marks, read marks) may be lost, nothing
 * else. The power cut is modelled exactly: the store calls `onDurableCommit` after every
 * commit that waited for the disk; the test images the database and its WAL there; cutting
 * the power at a moment restores the files to the last image taken before that moment
 * (SQLite in WAL mode makes the WAL durable at such a commit, frames in order, so what a
 * real disk keeps is that image or more).
 *
 * - the sender's power fails just after the server stored its message: the message and its
 *   sending ratchet survive (stored before the ciphertext left); the "sent" mark may not, so
 *   the message is queued again and resent under its id (the server keeps one copy);
 * - the recipient's power fails just after its ack: the received message survives (stored
 *   before the ack; the server dropped its copy).
 *
 * @module
 */
import { assert, assertEquals } from "./_support/assert.ts";
import { QpqClient } from "../src/client/client.ts";
import { connectServer } from "../src/client/connection.ts";
import { openLocalStore } from "../src/client/open_store.ts";
import type { ClientStore } from "../src/store/client/mod.ts";
import { FAST_KDF } from "./_support/clients.ts";
import { startTestServer } from "./_support/server.ts";

const FILES = [".db", ".db-wal"] as const;

/** The files of a client state as of its last durable commit. */
class PowerCut {
  #last: (Uint8Array | undefined)[] = [];
  #cut: (Uint8Array | undefined)[] | undefined;
  constructor(readonly path: string) {}

  /** Image the files now (a durable commit just returned). */
  image(): void {
    this.#last = FILES.map((f) => {
      try {
        return Deno.readFileSync(this.path + f);
      } catch {
        return undefined;
      }
    });
  }

  /** The power fails now: what survives is the last image. */
  cutNow(): void {
    this.#cut ??= this.#last;
  }

  get cut(): boolean {
    return this.#cut !== undefined;
  }

  /** After the (dead) process is gone: the files are what the disk kept. */
  restore(): void {
    if (this.#cut === undefined) throw new Error("no power cut happened");
    FILES.forEach((f, i) => {
      const b = this.#cut![i];
      if (b === undefined) Deno.removeSync(this.path + f);
      else Deno.writeFileSync(this.path + f, b);
    });
    try {
      Deno.removeSync(this.path + ".db-shm");
    } catch { /* none */ }
  }
}

interface Device {
  name: string;
  path: string;
  store: ClientStore;
  client: QpqClient;
  power: PowerCut;
}

/** Open `name`'s state (creating it at first) and a client that cuts the power right after `cutAfter` answers, once armed. */
async function device(
  ts: { addr: string; certPem: string },
  dir: string,
  name: string,
  armed: { kind: string | undefined },
  power = new PowerCut(`${dir}/${name}.bin`),
): Promise<Device> {
  const path = `${dir}/${name}.bin`;
  const store = await openLocalStore(path, `pw-${name}`, {
    create: true,
    username: name,
    server: ts.addr,
    kdf: FAST_KDF,
  }) as ClientStore;
  store.onDurableCommit = () => power.image();
  power.image();
  const client = QpqClient.create({
    acceptFrom: "anyone",
    store,
    password: `pw-${name}`,
    caCertPem: ts.certPem,
    connect: async (o) => {
      const link = await connectServer(o);
      return {
        server: link.server,
        close: () => link.close(),
        call: async (req, expect, opts) => {
          const ans = await link.call(req, expect, opts);
          if (armed.kind === req.kind) power.cutNow();
          return ans;
        },
      };
    },
  });
  return { name, path, store, client, power };
}

/** The dead process is gone, the files are what the disk kept, the device starts again. */
async function restart(
  ts: { addr: string; certPem: string },
  dir: string,
  d: Device,
): Promise<Device> {
  await d.client.close();
  d.power.restore();
  return await device(ts, dir, d.name, { kind: undefined }, new PowerCut(d.path));
}

function bodies(c: QpqClient): string[] {
  return c.history("#duo", 100).flatMap((m) => m.body.startsWith("w") ? [] : [m.body]);
}

Deno.test("client power cut: a lost 'sent' mark resends once; the message, its ratchet and a received message survive", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-power-" });
  try {
    const alice0 = { kind: undefined as string | undefined };
    const bob0 = { kind: undefined as string | undefined };
    let alice = await device(ts, dir, "alice", alice0);
    let bob = await device(ts, dir, "bob", bob0);
    await alice.client.register();
    await bob.client.register();
    await alice.client.createGroup("duo");
    await alice.client.invite("#duo", ["bob"]);
    await bob.client.sync();

    // alice's power fails right after the server stored "one"; bob's right after his ack
    alice0.kind = "enqueue";
    await alice.client.send("#duo", "one");
    assert(alice.power.cut);
    bob0.kind = "ack";
    assertEquals(await bob.client.sync(), 1);
    assert(bob.power.cut);

    alice = await restart(ts, dir, alice);
    bob = await restart(ts, dir, bob);
    // not vacuous: the cut undid alice's "sent" mark (the message is queued again)...
    assertEquals(bodies(alice.client), ["one"]);
    assertEquals(alice.client.pendingCount(), 1);
    // ...and kept bob's received message, acknowledged before the cut
    assertEquals(bodies(bob.client), ["one"]);

    await alice.client.flushOutbox();
    assertEquals(alice.client.pendingCount(), 0);
    await alice.client.send("#duo", "two");
    await bob.client.sync();
    // once each, in order, readable: "two" did not reuse the generation of "one"
    assertEquals(bodies(bob.client), ["one", "two"]);
    assertEquals(bodies(alice.client), ["one", "two"]);
    await alice.client.close();
    await bob.client.close();
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
