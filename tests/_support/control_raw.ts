/**
 * Speak the control protocol (src/cli/_control.ts) by hand, as a same-user process that
 * does not know the password would: `deno run --allow-net --allow-read --allow-write control_raw.ts
 * SOCKET HELLO_JSON` reads the server's hello, sends HELLO_JSON (or, for `-`, nothing
 * and junk), and prints every frame it got as one JSON array. Run as its own process, since
 * the test runner's permissions do not reach Unix sockets.
 *
 * @module
 */
const [path, hello] = Deno.args;
const conn = await Deno.connect({ transport: "unix", path: path! });
const frames: unknown[] = [];
async function read(): Promise<unknown | null> {
  const head = new Uint8Array(4);
  let off = 0;
  while (off < 4) {
    const n = await conn.read(head.subarray(off));
    if (n === null) return null;
    off += n;
  }
  const len = new DataView(head.buffer).getUint32(0);
  const body = new Uint8Array(len);
  off = 0;
  while (off < len) {
    const n = await conn.read(body.subarray(off));
    if (n === null) return null;
    off += n;
  }
  return JSON.parse(new TextDecoder().decode(body));
}
try {
  const first = await read() as { challenge?: string } | null;
  frames.push(first);
  if (first?.challenge !== undefined) {
    if (hello === "-") {
      await conn.write(new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    } else {
      const body = new TextEncoder().encode(hello!);
      const head = new Uint8Array(4);
      new DataView(head.buffer).setUint32(0, body.length);
      await conn.write(head);
      await conn.write(body);
    }
    for (let f = await read(); f !== null; f = await read()) frames.push(f);
  }
} catch (e) {
  frames.push({ error: String(e) });
} finally {
  conn.close();
}
console.log(JSON.stringify(frames));
