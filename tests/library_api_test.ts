/**
 * The library API as a program would use it: everything below comes from `mod.ts` alone —
 * a server started in process, two clients on encrypted local states, a DM both ways.
 */
import {
  type ClientEvent,
  createServices,
  DEFAULT_ARGON2ID_PARAMS,
  openLocalStore,
  QpqClient,
  QpqError,
  resolveConfig,
  startServer,
} from "../mod.ts";
import { assert, assertEquals } from "./_support/assert.ts";

Deno.test("mod.ts alone runs a server and two clients that talk both ways", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qpq-lib-" });
  const config = resolveConfig({ listen: "127.0.0.1:0", dataDir: `${dir}/server` }, {}, {});
  const silent = { debug() {}, info() {}, warn() {}, error() {} };
  const server = await startServer(config, { services: createServices, log: silent });
  const addr = `127.0.0.1:${server.addr.port}`;
  const kdf = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 };
  const clients: QpqClient[] = [];
  const got = new Map<string, string[]>();
  const open = async (name: string) => {
    const password = `pw-${name}-library`;
    const store = await openLocalStore(`${dir}/${name}.qpq`, password, {
      create: true,
      username: name,
      server: addr,
      kdf,
    });
    got.set(name, []);
    const client = QpqClient.create({
      store,
      password,
      caCertPem: server.certificate.certPem,
      acceptFrom: "anyone",
      onEvent: (e: ClientEvent) => {
        if (e.kind === "message" && e.message.direction === "in") {
          got.get(name)!.push(e.message.body);
        }
      },
    });
    clients.push(client);
    await client.register();
    return client;
  };
  try {
    const alice = await open("alice");
    const bob = await open("bob");
    await alice.dm("bob");
    await alice.send("@bob", "hi bob");
    await bob.sync();
    await bob.send("@alice", "hi alice");
    await alice.sync();
    assertEquals(got.get("bob"), ["hi bob"]);
    assertEquals(got.get("alice"), ["hi alice"]);
    const refused = await alice.send("@nobody", "x").then(() => undefined, (e) => e);
    assert(refused instanceof QpqError, "errors are of the one family");
  } finally {
    for (const c of clients) await c.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
