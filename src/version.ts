/**
 * The qpq version, taken from deno.json at build time (a static JSON import, so it is
 * embedded in a compiled binary too).
 *
 * @module
 */
import meta from "../deno.json" with { type: "json" };

/** qpq release version. */
export const VERSION: string = meta.version;
