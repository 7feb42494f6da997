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

/** True for what a terminal would act on: C0 (but tab; newline unless kept), DEL, C1, bidi. */
function dangerous(code: number, keepNewline: boolean): boolean {
  if (code === 0x09) return false;
  if (code === 0x0a) return !keepNewline;
  return code < 0x20 || (code >= 0x7f && code <= 0x9f) || (code >= 0x202a && code <= 0x202e) ||
    (code >= 0x2066 && code <= 0x2069);
}

function show(code: number): string {
  if (code < 0x20) return `^${String.fromCharCode(code + 0x40)}`;
  return `\\u${code.toString(16).padStart(4, "0")}`;
}

function escape(s: string, keepNewline: boolean): string {
  let out = "";
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const code = s.charCodeAt(i);
    if (!dangerous(code, keepNewline)) continue;
    out += s.slice(from, i) + show(code);
    from = i + 1;
  }
  return from === 0 ? s : out + s.slice(from);
}

/** `s` with every control, escape and bidi override made visible; no newline survives. */
export function visible(s: string): string {
  return escape(s, false);
}

/**
 * The last step before output: like {@link visible}, but the newlines qpq put between its own
 * lines are kept (peer text has been through {@link visible} or {@link bodyLines} already).
 */
export function visibleLines(s: string): string {
  return escape(s, true);
}

/** A message body as lines to print: the first after `prefix`, the rest as continuations. */
export function bodyLines(prefix: string, body: string): string {
  const lines = body.split(/\r?\n/).map(visible);
  return [prefix + (lines[0] ?? ""), ...lines.slice(1).map((l) => CONTINUATION + l)].join("\n");
}
