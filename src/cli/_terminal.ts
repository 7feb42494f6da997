/**
 * The terminal is an edge: every string that came from a peer or the server passes here on
 * its way to a screen, so it can be seen but never interpreted.
 *
 * ```
 * C0 controls (ESC, BEL, CR, backspace …)  ─► caret form: ESC ─► ^[, CR ─► ^M, NUL ─► ^@
 * DEL, C1 controls (U+0080–U+009F), bidi   ─► \u007f, \u009b, \u202e (also valid inside JSON
 *   overrides and isolates (U+202A–U+202E,    strings, where they mean the same character, so
 *   U+2066–U+2069)                            --json output stays exact)
 * a newline inside a message body          ─► a continuation line "  | …" (never a new line
 *                                             that could pass for a message or an event)
 * ```
 *
 * Tab and the newlines qpq itself writes between lines are kept.
 *
 * @module
 */

/** Marks the continuation lines of a multi-line message. */
export const CONTINUATION = "  | ";

const DANGEROUS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
const DANGEROUS_KEEP_NEWLINE =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

function show(c: string): string {
  const code = c.charCodeAt(0);
  if (code < 0x20) return `^${String.fromCharCode(code + 0x40)}`;
  return `\\u${code.toString(16).padStart(4, "0")}`;
}

/** `s` with every control, escape and bidi override made visible; no newline survives. */
export function visible(s: string): string {
  return s.replace(DANGEROUS, show);
}

/**
 * The last step before output: like {@link visible}, but the newlines qpq put between its own
 * lines are kept (peer text has been through {@link visible} or {@link bodyLines} already).
 */
export function visibleLines(s: string): string {
  return s.replace(DANGEROUS_KEEP_NEWLINE, show);
}

/** A message body as lines to print: the first after `prefix`, the rest as continuations. */
export function bodyLines(prefix: string, body: string): string {
  const lines = body.split(/\r?\n/).map(visible);
  return [prefix + (lines[0] ?? ""), ...lines.slice(1).map((l) => CONTINUATION + l)].join("\n");
}
