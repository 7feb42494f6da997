/**
 * The one rule for usernames, shared by the client (what a person types, the local state
 * file name, MLS credentials) and the server (accounts, OPAQUE, directory, channels, queues).
 *
 * ```
 * typed "Bob" ─► NFKC ─► lower case ─► "bob" ─► syntax check ─► canonical username
 *                                                 └► skeleton "bob" (look-alike check at registration)
 * ```
 *
 * A canonical username is 1–32 characters of `a-z`, `0-9`, `.`, `_`, `-`, starting with a
 * letter or digit. Names are case-insensitive: `Bob`, `BOB` and `ｂｏｂ` (full width, via
 * NFKC) all mean `bob`. Only ASCII is allowed on purpose: with no Cyrillic or Greek letters
 * there are no cross-script homoglyphs (`а` U+0430 beside `a`), so the look-alike skeleton
 * only has to fold a few ASCII confusions.
 *
 * The reserved form `name~N` (N = 2..999) is never accepted at registration: migration 3 of
 * the server database gives it to an account whose name collided with another one's
 * case-insensitively (see docs/operations.md). Such an account logs in and is addressed
 * with that name.
 *
 * @module
 */
import { ValidationError } from "./errors.ts";
import { MAX_USERNAME_CHARS } from "./limits.ts";

const NAME_RE = new RegExp(`^[a-z0-9][a-z0-9._-]{0,${MAX_USERNAME_CHARS - 1}}$`);
const RENAMED_RE = new RegExp(`^[a-z0-9][a-z0-9._-]{0,${MAX_USERNAME_CHARS - 1}}~[1-9][0-9]{0,2}$`);
/** Longer input is refused before normalization (NFKC may expand a character up to 18x). */
const MAX_INPUT_CHARS = 4 * MAX_USERNAME_CHARS;

/** What a valid username looks like, for error messages. */
export const USERNAME_RULE = `1-${MAX_USERNAME_CHARS} letters a-z, digits, '.', '_' or '-'`;

function invalid(input: string): ValidationError {
  // the input is hostile: show a bounded, printable prefix only
  const shown = [...input.slice(0, 40)].map((c) => (/^[\x21-\x7e]$/.test(c) ? c : "?")).join("");
  return new ValidationError(
    `Invalid username "${shown}${input.length > 40 ? "…" : ""}": use ${USERNAME_RULE}`,
  );
}

/** NFKC + lower case of at most {@link MAX_INPUT_CHARS} characters (no syntax check). */
function fold(input: string): string | undefined {
  if (typeof input !== "string" || input.length > MAX_INPUT_CHARS) return undefined;
  return input.normalize("NFKC").toLowerCase();
}

/**
 * The canonical form of a username (accepting the reserved `name~N` form of a renamed
 * account), for lookups, login and addressing.
 *
 * @throws {ValidationError} when it is not a valid username
 */
export function canonicalUsername(input: string): string {
  const s = fold(input);
  if (s === undefined || !(NAME_RE.test(s) || RENAMED_RE.test(s))) throw invalid(input);
  return s;
}

/**
 * The canonical form of a username for a new account: like {@link canonicalUsername} but
 * the reserved `name~N` form is refused.
 *
 * @throws {ValidationError} when it is not a valid new username
 */
export function canonicalNewUsername(input: string): string {
  const s = fold(input);
  if (s === undefined || !NAME_RE.test(s)) throw invalid(input);
  return s;
}

/** True when `s` is already a canonical username (including the reserved form). */
export function isCanonicalUsername(s: string): boolean {
  return typeof s === "string" && (NAME_RE.test(s) || RENAMED_RE.test(s));
}

/**
 * Same-looking characters folded by {@link usernameSkeleton}, applied in this order.
 *
 * The reference is the Unicode confusables table (UTS #39, `confusables.txt`); its only
 * entries among the characters a username may hold are `0` → `o`, `1`/`I`/`|` → `l` and
 * `m` → `rn` (folded here the other way, `rn` → `m`). The rest are ours, from names reported
 * as look-alikes (issues 18 and 21): `b.ob`, `bob-` and `bob_` beside `bob`; `8ob`, `6ob`,
 * `c4rol`, `d4ve` beside `bob`, `carol`, `dave`; `nnallory` and `mallorv` beside `mallory`.
 */
const SKELETON_FOLDS: readonly (readonly [RegExp, string])[] = [
  [/[._-]/g, ""], // separators are easy to miss (`bob.`, `b.ob`, `bob_`): dropped
  [/[1il|]/g, "l"], // l, I (lower-cased to i), 1, |
  [/0/g, "o"],
  [/2/g, "z"],
  [/3/g, "e"],
  [/4/g, "a"],
  [/5/g, "s"],
  [/[68]/g, "b"], // 6 reads as b, 8 as B
  [/7/g, "t"],
  [/9/g, "g"],
  [/y/g, "v"],
  [/[rn]n/g, "m"], // rn, nn
  [/vv/g, "w"], // vv, and so yy, vy
  [/cl/g, "d"],
];

/**
 * The look-alike skeleton of a username: two names with the same skeleton are too easy to
 * mistake for each other, and a new account whose skeleton matches an existing one is
 * refused. After lower case: `.`, `_` and `-` are dropped; `1`/`i`/`l`/`|` → `l`, `0` → `o`,
 * `2` → `z`, `3` → `e`, `4` → `a`, `5` → `s`, `6`/`8` → `b`, `7` → `t`, `9` → `g`,
 * `y` → `v`; then `rn`/`nn` → `m`, `vv` → `w`, `cl` → `d`. Usernames are ASCII only (see the
 * module doc), so no other script needs folding. Server databases store the skeleton of
 * each account (migration 6 recomputed them when this rule grew).
 */
export function usernameSkeleton(name: string): string {
  let s = name.toLowerCase();
  for (const [re, to] of SKELETON_FOLDS) s = s.replace(re, to);
  return s;
}

/**
 * A group name: 1–32 characters of letters, digits, `.`, `_` and `-`, starting with a
 * letter or digit (case kept). The server checks it at create-group; every member checks a
 * name an admin set in the group's settings (src/mls/settings.ts) before showing it.
 */
const GROUP_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

/** True when `name` (without `#`) is a valid group name. */
export function isGroupName(name: string): boolean {
  return typeof name === "string" && GROUP_NAME_RE.test(name);
}

/** What a valid group name looks like, for error messages. */
export const GROUP_NAME_RULE = "1-32 letters, digits, '.', '_' or '-'";

/**
 * A group name as typed (`#` allowed in front), checked.
 *
 * @throws {ValidationError} when it is not one (a bounded, printable prefix is shown)
 */
export function checkGroupName(input: string): string {
  const name = input.replace(/^#/, "");
  if (!isGroupName(name)) {
    const shown = [...name.slice(0, 40)].map((c) => (/^[\x21-\x7e]$/.test(c) ? c : "?")).join("");
    throw new ValidationError(`Invalid group name "${shown}": use ${GROUP_NAME_RULE}`);
  }
  return name;
}
