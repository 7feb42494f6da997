/**
 * {@link MemoryLocalState}: the name tests, the simulation and the load tool use for the
 * {@link LocalState} of one account held in memory. It is no second implementation: `new
 * MemoryLocalState(initialMeta)` returns {@link ClientStore.inMemory}, the one client store
 * on SQLite `:memory:` (same rules, same sealing; no file, lock or password).
 *
 * ```
 * const disk = new MemoryLocalState(initialMeta);   // the first handle, open
 * clientA = new Client(disk)          ─► crash: drop clientA without close
 * const again = disk.reopen()          ─► a new open handle over the same data;
 * clientB = new Client(again)              every earlier handle is closed now, so a late
 *                                          write of the dead clientA throws "closed"
 * await again.close()                  ─► data kept; again.reopen() opens it once more
 * ```
 *
 * @module
 */

import { ClientStore } from "./client_store.ts";
import type { ClientMetaInit, LocalState } from "./local_state.ts";

/** A client state in memory: a {@link ClientStore} made by {@link ClientStore.inMemory}. */
export type MemoryLocalState = ClientStore;

/**
 * `new MemoryLocalState(initialMeta)`: a new, empty {@link ClientStore.inMemory}.
 *
 * @throws {UsageError} when the meta record is invalid
 */
export const MemoryLocalState = function MemoryLocalState(initialMeta: ClientMetaInit) {
  return ClientStore.inMemory(initialMeta);
} as unknown as new (initialMeta: ClientMetaInit) => ClientStore & LocalState;
