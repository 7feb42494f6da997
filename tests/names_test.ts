/**
 * The username rule (src/names.ts) and the client's conversation names
 * (src/client/conversations.ts): one canonical form, look-alike skeletons, `@user` and
 * `#group` never ambiguous, an old local state brought to canonical names.
 */
import { assertEquals, assertThrows } from "./_support/assert.ts";
import {
  canonicalNewUsername,
  canonicalUsername,
  isCanonicalUsername,
  usernameSkeleton,
} from "../src/names.ts";
import { UsageError, ValidationError } from "../src/errors.ts";
import { MemoryLocalState } from "../src/store/client/mod.ts";
import { IdentityKeyPair } from "../src/crypto/mod.ts";
import { canonicalizeLocalNames, findConversation } from "../src/client/conversations.ts";
import { usernameFromIdentity } from "../src/mls/_state.ts";
import { utf8 } from "../src/bytes.ts";

Deno.test("canonicalUsername folds case and width to one form and refuses everything else", () => {
  for (
    const [input, out] of [
      ["bob", "bob"],
      ["Bob", "bob"],
      ["BOB", "bob"],
      ["ｂｏｂ", "bob"], // full width, NFKC
      ["\u212Aate", "kate"], // KELVIN SIGN
      ["a.b_c-d9", "a.b_c-d9"],
      ["bob~2", "bob~2"],
      ["x".repeat(32), "x".repeat(32)],
    ]
  ) assertEquals(canonicalUsername(input!), out);
  for (
    const bad of [
      "",
      "x".repeat(33),
      "a".repeat(300),
      "x/../../pwned",
      "../x",
      ".x",
      "-x",
      "a b",
      "\u0430lice", // Cyrillic a
      "\u03bfscar", // Greek omicron
      "al\u200bice", // zero-width space
      "bob\n",
      "bob~0",
      "bob~1000",
      "~2",
      "İ", // lower-cases to i + combining dot
    ]
  ) assertThrows(() => canonicalUsername(bad), ValidationError, "Invalid username");
  assertEquals(canonicalNewUsername("Bob"), "bob");
  assertThrows(() => canonicalNewUsername("bob~2"), ValidationError);
  assertEquals([isCanonicalUsername("bob"), isCanonicalUsername("Bob")], [true, false]);
});

Deno.test("canonicalUsername shows a hostile name only as a short printable prefix", () => {
  const e = assertThrows(() => canonicalUsername("\x1b[2J" + "x".repeat(100)), ValidationError);
  assertEquals(e.message.includes("\x1b"), false);
  assertEquals(e.message.length < 120, true, e.message);
});

Deno.test("usernameSkeleton ignores separators and reads digits as the letters they look like", () => {
  // issue 18 and issue 21: each of these registered beside the first of its row
  const same = [
    ["bob", "bob.", "bob-", "bob_", "bob..", "b.ob", "8ob", "6ob", "b-o_b."],
    ["alice", "alice.", "al.ice", "4lice", "a1ice."],
    ["mallory", "mallorv", "nnallory", "rnallory", "ma11ory", "nnallorv"],
    ["carol", "c4rol", "carol.", "car0l", "c-4-r-0-l"],
    ["dave", "d4ve", "dave.", "cl4ve"],
    ["eve", "3ve", "ev3"],
    ["tom", "7om", "t0m"],
    ["zed", "2ed"],
    ["greg", "9reg"],
    ["yvette", "vvette", "wette"],
  ];
  for (const group of same) {
    for (const n of group) {
      assertEquals(usernameSkeleton(n), usernameSkeleton(group[0]!), `${n} ~ ${group[0]}`);
    }
  }
  // still told apart: the names in each row are different people
  const different = ["bob", "rob", "alice", "mallory", "carol", "dave", "eve", "tom", "ann"];
  assertEquals(new Set(different.map(usernameSkeleton)).size, different.length);
});

Deno.test("usernameSkeleton folds the documented look-alikes and nothing else", () => {
  const same = [
    ["alice", "a1ice", "aIice", "al1ce", "a|ice"],
    ["bob", "b0b", "BOB", "bOb"],
    ["mary", "rnary"],
    ["wolf", "vvolf", "w0lf", "vv01f"],
    ["dan", "clan"],
    ["sam", "5am"],
    ["a.b", "a_b", "a-b", "ab"],
  ];
  for (const group of same) {
    for (const n of group) assertEquals(usernameSkeleton(n), usernameSkeleton(group[0]!), n);
  }
  const different = ["alice", "bob", "mary", "wolf", "dan", "sam", "carol", "dave", "eve"];
  assertEquals(new Set(different.map(usernameSkeleton)).size, different.length);
});

Deno.test("usernameFromIdentity reads an MLS credential canonically and refuses a non-username", () => {
  assertEquals(usernameFromIdentity(utf8("Bob")), "bob");
  assertEquals(usernameFromIdentity(utf8("bob")), "bob");
  assertEquals(usernameFromIdentity(utf8("\u0430lice")), undefined);
  assertEquals(usernameFromIdentity(utf8("a/b")), undefined);
});

function state(username: string): MemoryLocalState {
  const kp = IdentityKeyPair.generate();
  return new MemoryLocalState({
    username,
    server: "localhost:1",
    identitySeed: kp.exportPrivateKey(),
    identityPublic: kp.publicKey,
  });
}

Deno.test("canonicalizeLocalNames brings an old state (Alice, @Bob and Bob's pin) to canonical names", () => {
  const s = state("Alice");
  const key = new Uint8Array(32).fill(9);
  s.pinKey("Bob", key);
  s.upsertConversation({ id: "self", kind: "self", name: "@Alice", createdAt: 1 });
  s.upsertConversation({
    id: "aa",
    kind: "dm",
    name: "@Bob",
    peer: "Bob",
    channelId: "aa",
    createdAt: 2,
  });
  canonicalizeLocalNames(s);
  assertEquals(s.meta.username, "alice");
  assertEquals(s.getConversation("self")?.name, "@alice");
  assertEquals(s.getConversation("aa")?.name, "@bob");
  assertEquals(s.getConversation("aa")?.peer, "bob");
  assertEquals(s.pinnedKey("bob"), key);
  assertEquals(findConversation(s, "alice", "@BOB", 0).id, "aa");
});

Deno.test("findConversation: @user is a DM only, #group a group only, a bare name in both is refused", () => {
  const s = state("carol");
  s.upsertConversation({ id: "g", kind: "group", name: "#dave", channelId: "g", createdAt: 1 });
  // no DM with dave yet: the bare name is the group, unless dave is known to be a user
  assertEquals(findConversation(s, "carol", "dave", 0).id, "g");
  assertThrows(
    () => findConversation(s, "carol", "dave", 0, { isUser: true }),
    UsageError,
    "dave is both @dave and #dave: say which",
  );
  assertThrows(() => findConversation(s, "carol", "@dave", 0), UsageError, "No conversation");
  s.upsertConversation({
    id: "d",
    kind: "dm",
    name: "@dave",
    peer: "dave",
    channelId: "d",
    createdAt: 2,
  });
  assertThrows(() => findConversation(s, "carol", "dave", 0), UsageError, "both @dave and #dave");
  assertThrows(() => findConversation(s, "carol", "DAVE", 0), UsageError, "both @dave and #dave");
  assertEquals(findConversation(s, "carol", "@Dave", 0).id, "d");
  assertEquals(findConversation(s, "carol", "#dave", 0).id, "g");
  // a pinned contact counts as a user too
  s.upsertConversation({ id: "t", kind: "group", name: "#erin", channelId: "t", createdAt: 3 });
  s.pinKey("erin", new Uint8Array(32).fill(1));
  assertThrows(() => findConversation(s, "carol", "erin", 0), UsageError, "both @erin and #erin");
});

Deno.test("findConversation: look-alike groups need their id suffix", () => {
  const s = state("carol");
  s.upsertConversation({
    id: "3f2a00",
    kind: "group",
    name: "#team~3f2a",
    channelId: "3f2a00",
    createdAt: 1,
  });
  s.upsertConversation({
    id: "9c0100",
    kind: "group",
    name: "#Tearn~9c01",
    channelId: "9c0100",
    createdAt: 2,
  });
  for (const ref of ["#team", "#Team", "team", "#tearn"]) {
    assertThrows(() => findConversation(s, "carol", ref, 0), UsageError, "several groups");
  }
  assertEquals(findConversation(s, "carol", "#team~3f2a", 0).id, "3f2a00");
  assertEquals(findConversation(s, "carol", "#Tearn~9c", 0).id, "9c0100");
  assertEquals(findConversation(s, "carol", "#team~9c01", 0).id, "9c0100");
});
