/**
 * Third-party test vectors, read in place from ../shared/test-vectors/ beside the checkout.
 * A missing folder or file fails the test loudly; it never skips.
 *
 * @module
 */

/** The test-vectors folder. */
export const VECTORS_DIR = new URL("../../../shared/test-vectors/", import.meta.url);

/** Text of a vector file (path relative to the vectors folder). */
export function readVectorText(rel: string): string {
  const url = new URL(rel, VECTORS_DIR);
  try {
    return Deno.readTextFileSync(url);
  } catch (e) {
    throw new Error(
      `Test vectors missing: cannot read ${url.pathname}; ../shared/test-vectors must sit beside the checkout`,
      { cause: e },
    );
  }
}

/** Parsed JSON of a vector file. */
// deno-lint-ignore no-explicit-any
export function readVectorJson(rel: string): any {
  return JSON.parse(readVectorText(rel));
}
