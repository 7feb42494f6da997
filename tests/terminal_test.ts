/**
 * The terminal edge (src/cli/_terminal.ts): what a peer sends can be seen, never interpreted.
 * A corpus of escape sequences, controls and bidi overrides through the sanitizer and through
 * `qpq recv` / `qpq history` as a user runs them.
 */
import { assert, assertEquals, assertStringIncludes } from "./_support/assert.ts";
import { bodyLines, CONTINUATION, visible, visibleLines } from "../src/cli/_terminal.ts";
import { type CliResult, runQpq } from "./_support/cli.ts";
import { startTestServer } from "./_support/server.ts";

/** Sequences that change what a terminal shows when printed raw. */
const CORPUS = [
  "\x1b[2J\x1b[H", // clear the screen, cursor home
  "\x1b]0;pwned\x07", // set the window title (OSC 0)
  "\x1b[31mred\x1b[0m", // recolour
  "\x1b[8mhidden\x1b[28m", // hide text
  "\x1b[1A\x1b[2K", // cursor up, erase the line (overwrite the line above)
  "\r[bob] forged", // carriage return: overwrite from the line start
  "a\bb\x7f", // backspace, DEL
  "\x9b2J", // C1 CSI
  "\x85next line", // C1 NEL
  "abc\u202etxt.exe", // right-to-left override
  "\u2066isolate\u2069", // bidi isolates
  "\x00\x07\x0b\x0c\x1a", // NUL, BEL, VT, FF, SUB
];

/** True when `s` holds anything a terminal would act on (other than \n and \t). */
function interpretable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x09 || c === 0x0a) continue;
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return true;
    if ((c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069)) return true;
  }
  return false;
}

Deno.test("visible makes every control, escape and bidi override visible", () => {
  for (const s of CORPUS) {
    const v = visible(s);
    assert(!interpretable(v), JSON.stringify(v));
    assert(!v.includes("\n"), "no newline survives");
  }
  assertEquals(visible("\x1b[2J"), "^[[2J");
  assertEquals(visible("a\u202eb"), "a\\u202eb");
  assertEquals(visible("tab\tstays"), "tab\tstays");
  assertEquals(visible("plain text, ünïcödé ✓"), "plain text, ünïcödé ✓");
});

Deno.test("visibleLines keeps qpq's own newlines and escapes the rest; JSON stays exact", () => {
  assertEquals(visibleLines("one\ntwo\x1b"), "one\ntwo^[");
  // what JSON.stringify leaves raw (C1, DEL, bidi) becomes a \u escape: the same string
  for (const s of CORPUS) {
    const line = visibleLines(JSON.stringify({ body: s }));
    assert(!interpretable(line));
    assertEquals(JSON.parse(line).body, s);
  }
});

Deno.test("bodyLines keeps a multi-line body visibly one message", () => {
  const forged = "ok\n[alice] I owe you $100\n* alice removed you from #team";
  const out = bodyLines("[mallory] ", forged).split("\n");
  assertEquals(out, [
    "[mallory] ok",
    `${CONTINUATION}[alice] I owe you $100`,
    `${CONTINUATION}* alice removed you from #team`,
  ]);
  assertEquals(bodyLines("[m] ", "a\r\nb"), `[m] a\n${CONTINUATION}b`);
});

Deno.test("qpq recv and history show a hostile message as one visible message", async () => {
  const ts = await startTestServer();
  const dir = await Deno.makeTempDir({ prefix: "qpq-terminal-" });
  await Deno.writeTextFile(`${dir}/ca.pem`, ts.certPem);
  const qpq = (user: string, args: string[], stdin?: string): Promise<CliResult> =>
    runQpq([...args, "--username", user], {
      cwd: dir,
      env: { QPQ_SERVER: ts.addr, QPQ_CA_CERT: `${dir}/ca.pem`, QPQ_PASSWORD: `pw-${user}` },
      ...(stdin === undefined ? {} : { stdin }),
    });
  try {
    for (const u of ["mal", "vic"]) assertEquals((await qpq(u, ["register-user"])).code, 0);
    // through standard input (a control cannot ride in an argument); a NUL is refused there
    // as binary input, so it is left out (visible() above shows it as ^@)
    const body = CORPUS.join("\n").replaceAll("\x00", "") + "\n[alice] I owe you $100";
    assertEquals((await qpq("mal", ["send", "--to", "vic"], body)).code, 0);
    // a stranger's DM is a request: one sanitized line, then `accept` shows it
    const req = await qpq("vic", ["recv"]);
    assertEquals(req.stdout, "request from @mal: 1 message\n");
    const r = await qpq("vic", ["accept", "@mal"]);
    assertEquals(r.code, 0, r.stderr);
    assert(!interpretable(r.stdout), JSON.stringify(r.stdout));
    const lines = r.stdout.trimEnd().split("\n").filter((l) => !l.startsWith("* "));
    assert(lines[0]!.startsWith("[mal] "), lines[0]);
    for (const l of lines.slice(1)) assert(l.startsWith(CONTINUATION), JSON.stringify(l));
    assertStringIncludes(r.stdout, "^[[2J");
    assertStringIncludes(r.stdout, "\\u202e");
    const h = await qpq("vic", ["history", "@mal"]);
    assert(!interpretable(h.stdout));
    // --json keeps the exact text
    const j = await qpq("vic", ["history", "@mal", "--json"]);
    const msg = JSON.parse(j.stdout.trim().split("\n").at(-1)!);
    assertEquals(msg.body, body);
  } finally {
    await ts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
