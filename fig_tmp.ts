import { SqliteServerStore } from "./src/store/server/mod.ts";
const dir = Deno.args[0]!;
await Deno.mkdir(`${dir}/data`, { recursive: true });
const s = await SqliteServerStore.open(`${dir}/data/qpq.db`, { dbKey: "fig-db-key-0123456789abcdef0123", limits: { maxQueueMessages: 1e9, maxSenderMessages: 1e9, maxSenderBytes: 1e12 } });
const users = 200;
for (let i = 0; i < users; i++) await s.createUser(`u${i}`, new Uint8Array(64));
const payload = new Uint8Array(1024).fill(7);
const t0 = performance.now();
const ps = [];
for (let i = 0; i < 100_000; i++) {
  ps.push(s.enqueue({ sender: `u${i % users}`, messageId: crypto.randomUUID().replaceAll("-", ""), channelId: null, payload, recipients: [`u${(i + 1) % users}`] }));
  if (ps.length >= 256) { await Promise.all(ps.splice(0)); }
}
await Promise.all(ps);
console.log("filled", Math.round(performance.now() - t0), "ms");
await s.close();
