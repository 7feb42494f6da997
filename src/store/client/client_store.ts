/**
 * The client's encrypted local state: {@link ClientStore}.
 *
 * Files, all next to each other (mode 0600 where the platform honours it):
 *
 * | file                       | holds                                                        |
 * | -------------------------- | ------------------------------------------------------------ |
 * | `statePath`                | header (magic "QPQS", version, Argon2id params, salt, key   |
 * |                            | check) + the sealed meta record (identity, session token)   |
 * | `statePath.db`             | SQLite (see _client_db.ts): cursor, groups (MLS states),     |
 * |                            | KeyPackage private parts, pinned contacts, conversations,    |
 * |                            | messages, outbox                                             |
 * | `statePath.db-wal`, `-shm` | SQLite WAL side files while open                             |
 * | `statePath.lock`           | the holder's pid while a process has the state open          |
 * | `statePath.tmp-*`          | transient: atomic rewrites of the state file                 |
 *
 * Keys and sealing:
 *
 * ```
 * password ─Argon2id(salt, params from the header)─▶ state key ─HKDF─┬─ meta key  (AEAD)
 *                                                                     ├─ value key (AEAD)
 *                                                                     ├─ index key (HMAC)
 *                                                                     └─ check key (HMAC)
 * ```
 *
 * After a password change ({@link ClientStore.changePassword}, format version 2) the state key
 * is no longer Argon2id(password) itself but kept in the header wrapped (XChaCha20-Poly1305)
 * under Argon2id(password, new salt) for each password that opens the state; the database
 * and its keys are unchanged, so only the state file is rewritten, atomically.
 *
 * Every database value is sealed with XChaCha20-Poly1305 under the value key with the table
 * (or column) label and row key as associated data (a value moved to another row or column
 * no longer opens); every lookup column is an HMAC under the index key. No plaintext, password or token is written
 * to any of the files above.
 *
 * Opening, so that a wrong password or a damaged file changes nothing:
 *
 * ```
 * stat ─► lock ─► read + parse header ─► Argon2id ─► compare key check ─► open meta
 *      ─► open db read-only checks (schema version, db key check) ─► pragmas
 *      ─► older schema? upgrade it, each version one transaction (_client_migrate.ts) ─► ready
 *      (any failure from "parse" on: StorageError STATE_OPEN_FAILED_MESSAGE, lock released;
 *       a database newer than this build: its own one-line StorageError, nothing changed)
 * ```
 *
 * Creating (only when the state file does not exist): derive keys, build the database under
 * a temporary name and rename it to `statePath.db`, then write the state file atomically.
 * A crash in between leaves no state file, so the next create starts over; a leftover
 * `statePath.db` without a state file cannot be decrypted by anyone (its salt was never
 * written) and is moved aside to `statePath.db.orphan-<ms>`.
 *
 * In memory ({@link ClientStore.inMemory}: tests, the simulation, the load tool): the same
 * store and every rule, on a SQLite `:memory:` database, with no file, lock, password or
 * sealing (nothing reaches a disk; see _client_keys.ts); {@link ClientStore.reopen} stands for a restart
 * (the data is kept, every earlier handle is closed).
 *
 * API shape: {@link LocalState}.
 * {@link ClientStore.open} and {@link ClientStore.close} are async (Argon2id runs
 * in WebAssembly); every other method is synchronous (node:sqlite is synchronous), runs as
 * one SQLite transaction, and can be grouped with others in {@link ClientStore.transaction}.
 * The meta record lives in the state file, not in SQLite, so {@link ClientStore.updateMeta}
 * is atomic on its own but not part of a database transaction.
 *
 * @module
 */

import type { DatabaseSync, SQLInputValue } from "node:sqlite";
import { type Row, Statements } from "../_statements.ts";
import { dirname, resolve } from "node:path";
import { fromBase64, fromUtf8, toBase64, utf8, zeroize } from "../../bytes.ts";
import {
  type Argon2idParams,
  CryptoError,
  DEFAULT_ARGON2ID_PARAMS,
  parseArgon2idParams,
} from "../../crypto/mod.ts";
import { QpqError, StorageError, UsageError } from "../../errors.ts";
import {
  CLIENT_SCHEMA_VERSION,
  createClientDb,
  createMemoryClientDb,
  openClientDb,
} from "./_client_db.ts";
import { ClientKeys, type ClientLabel } from "./_client_keys.ts";
import { FileLock } from "../_file_lock.ts";
import { migrateV1, migrateV2, migrateV3, migrateV4, migrateV5 } from "./_client_migrate.ts";
import {
  asyncTransaction,
  byCreation,
  byString,
  checkConsent,
  checkContact,
  checkConversation,
  checkCount,
  checkCursor,
  checkGroup,
  checkGroupSecrets,
  checkKeyPackage,
  checkMessage,
  checkMeta,
  checkOutbox,
  checkStatus,
  checkTime,
  closedError,
  closeInTransaction,
  CONSENT_STATUSES,
  copyMeta,
  damagedRecord,
  DIRECTIONS,
  KINDS,
  nameConflict,
  newStateTag,
  patchedMeta,
  redactedMeta,
  STATUSES,
  unknownConversation,
  zeroMeta,
} from "./_records.ts";
import { StateTags } from "./_state_tags.ts";
import {
  DamagedStateError,
  decodeMeta,
  encodeMeta,
  encodeStateFile,
  encodeStateHeader,
  encodeWrappedHeaderPrefix,
  encodeWrappedStateHeader,
  MAX_KEY_SLOTS,
  type MetaFields,
  parseStateFile,
  removeStrayTempFiles,
  STATE_SALT_BYTES,
  syncDirectory,
  tempPathFor,
  writeFileAtomicSync,
} from "./_client_state_file.ts";
import type {
  ClientMeta,
  ClientMetaInit,
  ClientMetaPatch,
  ConsentStatus,
  Conversation,
  GroupMeta,
  GroupRecord,
  GroupSecret,
  GroupSecretChanges,
  GroupSummary,
  KeyPackageRecord,
  LocalState,
  MessageStatus,
  OutboxEntry,
  StoredMessage,
  TransactionOptions,
} from "./local_state.ts";

/** The one message for a wrong password or a damaged state (header, meta or database). */
export const STATE_OPEN_FAILED_MESSAGE = "Cannot open state: wrong password or damaged file";

/** Progress message passed to `onProgress` just before the slow password derivation. */
export const DERIVING_KEY_MESSAGE = "Deriving key from password…";

/** Options of {@link ClientStore.open}. */
export interface ClientStoreOpenOptions {
  /**
   * Create the state when `statePath` does not exist (then `initialMeta` is required).
   * An existing state is never overwritten: it is opened as is (check
   * {@link ClientStore.created} and `meta.username` to tell).
   */
  create?: boolean;
  /** The meta record of a newly created state. Ignored when the state already exists. */
  initialMeta?: ClientMetaInit;
  /**
   * Argon2id parameters for a NEW state (default {@link DEFAULT_ARGON2ID_PARAMS}, the OWASP
   * minimum). Existing states always use the parameters recorded in their header. Only tests
   * should pass weaker ones.
   */
  kdf?: Argon2idParams;
  /** Called with a short status line before slow steps (password derivation). */
  onProgress?: (message: string) => void;
}

/** Paths of every file belonging to one client state. */
export interface ClientStatePaths {
  /** Header and sealed meta. */
  state: string;
  /** SQLite conversation database. */
  db: string;
  /** SQLite write-ahead log (while open). */
  wal: string;
  /** SQLite shared-memory index (while open). */
  shm: string;
  /** Lock file (while open). */
  lock: string;
}

/** The files that make up the client state at `statePath` (see the module doc). */
export function clientStatePaths(statePath: string): ClientStatePaths {
  return {
    state: statePath,
    db: `${statePath}.db`,
    wal: `${statePath}.db-wal`,
    shm: `${statePath}.db-shm`,
    lock: `${statePath}.lock`,
  };
}

/** The `statePath` of a state in memory ({@link ClientStore.inMemory}). */
const MEMORY_PATH = ":memory:";

/** Absolute paths of the states open in this process. */
const OPEN_STATES = new Set<string>();

/**
 * An open client state. Create with {@link ClientStore.open}; always {@link close} it (or
 * `await using`). Holds keys, so it redacts itself when inspected or serialised.
 */
export class ClientStore implements LocalState {
  readonly #path: string;
  readonly #abs: string;
  #header: Uint8Array;
  #slots: number;
  readonly #db: DatabaseSync;
  readonly #keys: ClientKeys;
  readonly #lock: FileLock | undefined;
  /** In memory only: the data's one open handle (see {@link reopen}). */
  readonly #memory: { handle: ClientStore } | undefined;
  readonly #created: boolean;
  readonly #sql: Statements;
  #meta: MetaFields;
  #depth = 0;
  #closed = false;
  /** Bytes of every value handed to a writing statement (see {@link bytesWritten}). */
  #written = 0;
  /** See {@link LocalState.recordsVersion}. */
  #records = 0;
  /**
   * Decoded rows read once or more per received message, kept while this handle is open:
   * a group's record without its state, a conversation, a consent status, the cursor. Every
   * write of them goes through this handle, which updates or drops its copy; a transaction
   * rolled back drops them all. Reads hand out copies. The lookup hashes of ids (HMACs under
   * a fixed key, so the same for the same id) are kept too.
   */
  readonly #cache = new RowCache();
  /** State tags moved by changes of secrets only, not written (see {@link StateTags}). */
  readonly #tags = new StateTags();
  readonly #onUnload = () => this.#closeSync();

  private constructor(
    init: {
      path: string;
      abs: string;
      header: Uint8Array;
      db: DatabaseSync;
      keys: ClientKeys;
      lock?: FileLock;
      memory?: { handle: ClientStore };
      meta: MetaFields;
      created: boolean;
      slots?: number;
    },
  ) {
    this.#path = init.path;
    this.#abs = init.abs;
    this.#header = init.header;
    this.#slots = init.slots ?? 1;
    this.#db = init.db;
    this.#sql = new Statements(init.db);
    this.#keys = init.keys;
    this.#lock = init.lock;
    this.#memory = init.memory;
    this.#meta = init.meta;
    this.#created = init.created;
    if (init.memory !== undefined) init.memory.handle = this;
    else globalThis.addEventListener("unload", this.#onUnload);
  }

  /**
   * A new, empty state in memory with this meta record (checked and copied, as `open`'s
   * `initialMeta`), and a first open handle on it: SQLite `:memory:`, no
   * file, lock, password or sealing (`changePassword` changes nothing). The data lives until the last handle is
   * garbage-collected; {@link reopen} opens the next handle.
   *
   * @throws {UsageError} when the meta record is invalid
   */
  static inMemory(initialMeta: ClientMetaInit): ClientStore {
    checkMeta(initialMeta);
    const keys = ClientKeys.inMemory();
    const db = createMemoryClientDb(keys);
    return new ClientStore({
      path: MEMORY_PATH,
      abs: MEMORY_PATH,
      header: new Uint8Array(0),
      db,
      keys,
      memory: { handle: undefined as unknown as ClientStore },
      meta: copyMeta(initialMeta),
      created: true,
    });
  }

  /**
   * In memory only: a new open handle over the same data, as a restarted process would open
   * the same file. Every earlier handle is closed from then on (even one never closed: a
   * crashed client's late writes throw `UsageError`). Works on a closed handle too.
   *
   * @throws {UsageError} for a state on disk, or inside a transaction
   */
  reopen(): ClientStore {
    const memory = this.#memory;
    if (memory === undefined) throw new UsageError("Only a state in memory reopens itself");
    const open = memory.handle;
    if (open.#depth > 0) throw new UsageError("Cannot reopen state inside a transaction");
    open.#sql.clear();
    return new ClientStore({
      path: MEMORY_PATH,
      abs: MEMORY_PATH,
      header: this.#header,
      db: this.#db,
      keys: this.#keys,
      memory,
      meta: open.#meta,
      created: false,
    });
  }

  /**
   * Open the state at `statePath`, creating it when asked and missing.
   *
   * @throws {UsageError} "No local state at <path>: …" (register, or point --state at the account's file) when missing
   *   and `create` is not set; "State <path> is in use by another qpq process (pid N)" when
   *   locked; "State <path> is already open in this process"
   * @throws {StorageError} {@link STATE_OPEN_FAILED_MESSAGE} for a wrong password or a
   *   damaged header, meta record or database; no file is modified then
   */
  static async open(
    statePath: string,
    password: string | Uint8Array,
    options: ClientStoreOpenOptions = {},
  ): Promise<ClientStore> {
    const abs = resolve(statePath);
    if (OPEN_STATES.has(abs)) {
      throw new UsageError(`State ${statePath} is already open in this process`);
    }
    if (!exists(abs)) {
      if (options.create !== true) throw noState(statePath);
      if (options.initialMeta === undefined) {
        throw new UsageError("Cannot create state: initial meta is required");
      }
      checkMeta(options.initialMeta);
      if (options.kdf !== undefined) checkKdf(options.kdf);
      try {
        Deno.mkdirSync(dirname(abs), { recursive: true, mode: 0o700 });
      } catch (e) {
        throw new StorageError(
          `Cannot create state ${statePath}: the directory cannot be created`,
          {
            cause: e,
          },
        );
      }
    }
    OPEN_STATES.add(abs);
    let lock: FileLock | undefined;
    try {
      lock = FileLock.acquire(abs, statePath);
      if (exists(abs)) {
        return await ClientStore.#openExisting(statePath, abs, password, lock, options);
      }
      if (options.create !== true || options.initialMeta === undefined) throw noState(statePath);
      return await ClientStore.#create(statePath, abs, password, lock, {
        ...options,
        initialMeta: options.initialMeta,
      });
    } catch (e) {
      lock?.release();
      OPEN_STATES.delete(abs);
      throw e;
    }
  }

  /**
   * The keys a password unlocks for the state at `statePath`, without opening it (no lock,
   * no database): what a second process proves to the one holding the state, through the
   * local control socket ({@link ClientKeys.controlMac}). The caller destroys them.
   *
   * @throws {StorageError} {@link STATE_OPEN_FAILED_MESSAGE} for a wrong password or a damaged header
   */
  static async unlockKeys(
    statePath: string,
    password: string | Uint8Array,
    onProgress?: (text: string) => void,
  ): Promise<ClientKeys> {
    let keys: ClientKeys | undefined;
    try {
      const { header } = parseStateFile(Deno.readFileSync(resolve(statePath)));
      const kdf = parseArgon2idParams(header.kdf);
      onProgress?.(DERIVING_KEY_MESSAGE);
      const stateKey = await ClientKeys.stateKey(password, header.salt, kdf, header.slots);
      if (stateKey === undefined) throw new DamagedStateError("no key slot opens");
      try {
        keys = ClientKeys.fromStateKey(stateKey);
      } finally {
        zeroize(stateKey);
      }
      if (!ClientKeys.checkMatches(header.check, keys.stateCheck())) {
        throw new DamagedStateError("key check differs");
      }
      return keys;
    } catch (e) {
      keys?.destroy();
      throw new StorageError(STATE_OPEN_FAILED_MESSAGE, { cause: e });
    }
  }

  /** HMAC-SHA256 under this state's control key (see {@link ClientStore.unlockKeys}). */
  controlMac(...parts: Uint8Array[]): Uint8Array {
    return this.#keys.controlMac(...parts);
  }

  static async #openExisting(
    path: string,
    abs: string,
    password: string | Uint8Array,
    lock: FileLock,
    options: ClientStoreOpenOptions,
  ): Promise<ClientStore> {
    let file: Uint8Array;
    try {
      file = Deno.readFileSync(abs);
    } catch (e) {
      throw new StorageError(`Cannot read state ${path}`, { cause: e });
    }
    let keys: ClientKeys | undefined;
    let db: DatabaseSync | undefined;
    try {
      const { header, sealedMeta } = parseStateFile(file);
      let kdf: Argon2idParams;
      try {
        kdf = parseArgon2idParams(header.kdf);
      } catch (e) {
        throw new DamagedStateError("bad KDF parameters", { cause: e });
      }
      options.onProgress?.(DERIVING_KEY_MESSAGE);
      const stateKey = await ClientKeys.stateKey(password, header.salt, kdf, header.slots);
      if (stateKey === undefined) throw new DamagedStateError("no key slot opens");
      try {
        keys = ClientKeys.fromStateKey(stateKey);
      } finally {
        zeroize(stateKey);
      }
      if (!ClientKeys.checkMatches(header.check, keys.stateCheck())) {
        throw new DamagedStateError("key check differs");
      }
      let plain: Uint8Array;
      try {
        plain = keys.openMeta(header.bytes, sealedMeta);
      } catch (e) {
        throw new DamagedStateError("meta record does not open", { cause: e });
      }
      let meta: MetaFields;
      try {
        meta = decodeMeta(plain);
      } finally {
        zeroize(plain);
      }
      const dbPath = clientStatePaths(abs).db;
      if (!exists(dbPath)) {
        zeroMeta(meta);
        throw new StorageError(`Cannot open state: ${path}.db is missing`);
      }
      const opened = openClientDb(dbPath, keys);
      db = opened.db;
      removeStrayTempFiles(abs);
      const store = new ClientStore({
        path,
        abs,
        header: header.bytes.slice(),
        db,
        keys,
        lock,
        meta,
        created: false,
        slots: header.slots?.sealed.length ?? 1,
      });
      if (opened.version < CLIENT_SCHEMA_VERSION) {
        try {
          if (opened.version < 2) migrateV1(db, keys, store);
          if (opened.version < 3) migrateV2(db, keys, store);
          if (opened.version < 4) migrateV3(db, store);
          if (opened.version < 5) migrateV4(db, store);
          migrateV5(db, keys, store);
        } catch (e) {
          store.#closeSync();
          throw e;
        }
      }
      return store;
    } catch (e) {
      try {
        db?.close();
      } catch { /* already failing */ }
      keys?.destroy();
      if (e instanceof DamagedStateError || e instanceof CryptoError) {
        throw new StorageError(STATE_OPEN_FAILED_MESSAGE, { cause: e });
      }
      throw e;
    }
  }

  static async #create(
    path: string,
    abs: string,
    password: string | Uint8Array,
    lock: FileLock,
    options: ClientStoreOpenOptions & { initialMeta: ClientMetaInit },
  ): Promise<ClientStore> {
    const kdf = options.kdf ?? DEFAULT_ARGON2ID_PARAMS;
    const salt = crypto.getRandomValues(new Uint8Array(STATE_SALT_BYTES));
    options.onProgress?.(DERIVING_KEY_MESSAGE);
    const keys = await ClientKeys.derive(password, salt, kdf);
    const meta = copyMeta(options.initialMeta);
    let db: DatabaseSync | undefined;
    try {
      const paths = clientStatePaths(abs);
      moveOrphanDbAside(paths, options.onProgress);
      removeStrayTempFiles(abs);
      const tmpDb = tempPathFor(paths.db);
      try {
        createClientDb(tmpDb, keys);
        Deno.renameSync(tmpDb, paths.db);
      } catch (e) {
        for (const p of [tmpDb, `${tmpDb}-wal`, `${tmpDb}-shm`]) {
          try {
            Deno.removeSync(p);
          } catch { /* not created */ }
        }
        throw e;
      }
      syncDirectory(dirname(abs));
      const header = encodeStateHeader(kdf, salt, keys.stateCheck());
      writeFileAtomicSync(abs, sealedStateFile(keys, header, meta));
      db = openClientDb(paths.db, keys).db;
      return new ClientStore({ path, abs, header, db, keys, lock, meta, created: true });
    } catch (e) {
      try {
        db?.close();
      } catch { /* already failing */ }
      keys.destroy();
      zeroMeta(meta);
      if (e instanceof QpqError) throw e;
      throw new StorageError(`Cannot create state ${path}`, { cause: e });
    }
  }

  /** The state path as given to {@link open}. */
  get statePath(): string {
    return this.#path;
  }

  /** True when {@link open} created this state (false when it already existed). */
  get created(): boolean {
    return this.#created;
  }

  /**
   * Bytes of every value this handle has handed to SQLite in a writing statement (sealed
   * values, lookup hashes, 8 per number or short text), since it was opened: what a change
   * costs on disk before SQLite's own page and WAL overhead. For benchmarks and tests.
   */
  get bytesWritten(): number {
    return this.#written;
  }

  /** See {@link LocalState.recordsVersion}. */
  get recordsVersion(): number {
    return this.#records;
  }

  /** True after {@link close}. */
  get closed(): boolean {
    return this.#closed || (this.#memory !== undefined && this.#memory.handle !== this);
  }

  /**
   * A copy of the meta record. Byte fields are fresh copies the caller may zero; the object
   * redacts `identitySeed` and `sessionToken` when inspected or JSON-serialised.
   */
  get meta(): ClientMeta {
    this.#alive();
    return redactedMeta(this.#meta);
  }

  /**
   * Change the meta record and rewrite the state file atomically (temp file, fsync, rename,
   * directory fsync). Not part of {@link transaction}.
   *
   * @throws {UsageError} on invalid values
   * @throws {StorageError} when the file cannot be written (the old one is kept)
   */
  updateMeta(patch: ClientMetaPatch): void {
    this.#alive();
    const next = patchedMeta(this.#meta, patch);
    if (this.#memory !== undefined) {
      zeroMeta(this.#meta);
      this.#meta = next;
      return;
    }
    try {
      writeFileAtomicSync(this.#abs, sealedStateFile(this.#keys, this.#header, next));
    } catch (e) {
      zeroMeta(next);
      if (e instanceof QpqError) throw e;
      throw new StorageError(`Cannot write state ${this.#path}`, { cause: e });
    }
    zeroMeta(this.#meta);
    this.#meta = next;
  }

  /** How many passwords open this state: 1, or 2 while a password change is under way. */
  get passwordCount(): number {
    this.#alive();
    return this.#slots;
  }

  /**
   * Re-seal the state so that exactly the passwords in `unlockWith` open it (one or two:
   * two while a password change waits for the server). `current` must open it now. Only
   * the state file is rewritten, atomically (temp file, fsync, rename): a crash leaves the
   * old file or the new one. The state key, and so the database, is unchanged; the new
   * file has a fresh salt, so `current` no longer opens it unless it is in `unlockWith`.
   *
   * @throws {UsageError} "Current password is wrong" when `current` does not open the state
   * @throws {StorageError} when the file cannot be written (the old one is kept)
   */
  async changePassword(
    current: string | Uint8Array,
    unlockWith: readonly (string | Uint8Array)[],
  ): Promise<void> {
    this.#alive();
    if (this.#memory !== undefined) return; // no password seals a state in memory
    if (unlockWith.length < 1 || unlockWith.length > MAX_KEY_SLOTS) {
      throw new UsageError(`A state opens with 1 to ${MAX_KEY_SLOTS} passwords`);
    }
    for (const pw of unlockWith) {
      if (pw.length === 0) throw new UsageError("Password must not be empty");
    }
    let parsed: ReturnType<typeof parseStateFile>;
    let kdf: Argon2idParams;
    try {
      parsed = parseStateFile(Deno.readFileSync(this.#abs));
      kdf = parseArgon2idParams(parsed.header.kdf);
    } catch (e) {
      throw new StorageError(`Cannot read state ${this.#path}`, { cause: e });
    }
    const { header } = parsed;
    const stateKey = await ClientKeys.stateKey(current, header.salt, kdf, header.slots);
    try {
      let ok = false;
      if (stateKey !== undefined) {
        const probe = ClientKeys.fromStateKey(stateKey);
        ok = ClientKeys.checkMatches(header.check, probe.stateCheck()) &&
          ClientKeys.checkMatches(this.#keys.stateCheck(), probe.stateCheck());
        probe.destroy();
      }
      if (!ok || stateKey === undefined) throw new UsageError("Current password is wrong");
      this.#alive();
      const salt = crypto.getRandomValues(new Uint8Array(STATE_SALT_BYTES));
      const prefix = encodeWrappedHeaderPrefix(kdf, salt);
      const slots: Uint8Array[] = [];
      for (const pw of unlockWith) {
        slots.push(await ClientKeys.wrap(pw, salt, kdf, stateKey, prefix));
      }
      this.#alive();
      const next = encodeWrappedStateHeader(prefix, slots, this.#keys.stateCheck());
      try {
        writeFileAtomicSync(this.#abs, sealedStateFile(this.#keys, next, this.#meta));
      } catch (e) {
        throw new StorageError(`Cannot write state ${this.#path}`, { cause: e });
      }
      this.#header = next;
      this.#slots = slots.length;
    } finally {
      if (stateKey !== undefined) zeroize(stateKey);
    }
  }

  /**
   * Run `fn` as one database transaction: everything it writes is committed together when it
   * returns, and nothing is kept when it throws (the error is rethrown). Calls may nest
   * (savepoints). `fn` must be synchronous; a returned promise is refused and rolled back.
   * `{ durable: false }` (outermost call only): committed without waiting for the disk
   * (`synchronous = NORMAL` for this commit; WAL frames are ordered, so the next durable
   * commit makes it durable too). See {@link LocalState.transaction} for when that is right.
   */
  transaction<T>(fn: () => T, opts?: TransactionOptions): T {
    this.#alive();
    const sp = this.#depth === 0 ? undefined : `qpq_sp_${this.#depth}`;
    // SQLite refuses to change the safety level inside a transaction: the outermost decides
    const lazy = sp === undefined && opts?.durable === false;
    if (lazy) this.#exec("PRAGMA synchronous = NORMAL");
    try {
      const out = this.#transaction(fn, sp);
      if (sp === undefined && !lazy) this.onDurableCommit?.();
      return out;
    } finally {
      if (lazy) this.#exec("PRAGMA synchronous = FULL");
    }
  }

  /**
   * Test and simulation seam: called after each commit that waited for the disk (a durable
   * outermost {@link transaction}), when what was committed so far survives a power cut.
   * A test images the files here to cut the power later; nothing else sets it.
   */
  onDurableCommit?: () => void;

  #transaction<T>(fn: () => T, sp: string | undefined): T {
    this.#exec(sp === undefined ? "BEGIN IMMEDIATE" : `SAVEPOINT ${sp}`);
    this.#depth++;
    const mark = this.#tags.mark();
    let out: T;
    try {
      out = fn();
      if (out instanceof Promise) {
        out.catch(() => {});
        throw asyncTransaction();
      }
    } catch (e) {
      this.#depth--;
      this.#cache.clear(); // what the cache took from the rolled back writes is gone
      this.#tags.rollBack(mark);
      this.#records++;
      try {
        if (sp === undefined) this.#db.exec("ROLLBACK");
        else this.#db.exec(`ROLLBACK TO ${sp}; RELEASE ${sp}`);
      } catch { /* the transaction is gone already */ }
      throw e;
    }
    this.#depth--;
    try {
      this.#db.exec(sp === undefined ? "COMMIT" : `RELEASE ${sp}`);
    } catch (e) {
      this.#cache.clear();
      this.#tags.rollBack(mark);
      this.#records++;
      try {
        if (sp === undefined && this.#db.isTransaction) this.#db.exec("ROLLBACK");
      } catch { /* already failing */ }
      throw wrap(e);
    }
    if (sp === undefined) this.#tags.committed();
    return out;
  }

  // ---- cursor ----

  /** Last queue sequence number processed and stored (0 at first). */
  cursor(): number {
    return this.#read(() => {
      if (this.#cache.cursor !== undefined) return this.#cache.cursor;
      const r = this.#get("SELECT data FROM cursor WHERE id = 0");
      if (r === undefined) return this.#cache.cursor = 0;
      const plain = this.#open("cursor", r.data);
      const text = fromUtf8(plain);
      const n = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
      if (!Number.isSafeInteger(n)) throw damagedRecord();
      return this.#cache.cursor = n;
    });
  }

  /** Record the last processed queue sequence number. */
  setCursor(seq: number): void {
    checkCursor(seq);
    this.#write1(() =>
      this.#run(
        "INSERT INTO cursor (id, data) VALUES (0, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data",
        this.#keys.seal("cursor", utf8(String(seq))),
      )
    );
    this.#cache.cursor = seq;
  }

  // ---- groups ----

  /** The group record of a channel (hex id), or undefined. */
  group(channelId: string): GroupRecord | undefined {
    return this.#read(() => {
      const idH = this.#lookup("group", channelId);
      const r = this.#get("SELECT state, pending, data FROM groups WHERE id_h = ?", idH);
      return r === undefined ? undefined : this.#group(r, idH);
    });
  }

  /** Insert or replace a group record; returns its new state tag (see {@link LocalState}). */
  putGroup(record: GroupRecord, secrets?: GroupSecretChanges): string {
    checkGroup(record);
    if (secrets !== undefined) {
      checkGroupSecrets(secrets);
      if (record.secrets !== undefined) throw new UsageError("Invalid group secrets: given twice");
    }
    const tag = newStateTag();
    this.#write(() => {
      const idH = this.#lookup("group", record.channelId);
      const pending = record.pendingCommit === undefined
        ? null
        : this.#keys.seal("group-commit", record.pendingCommit, idH);
      this.#run(
        "INSERT INTO groups (id_h, state, pending, data) VALUES (?, ?, ?, ?) " +
          "ON CONFLICT (id_h) DO UPDATE SET state = excluded.state, " +
          "pending = excluded.pending, data = excluded.data",
        idH,
        this.#keys.seal("group-state", record.state, idH),
        pending,
        this.#keys.seal("group", encodeGroup(record), idH),
      );
      this.#run(
        "INSERT INTO group_tags (group_h, tag) VALUES (?, ?) " +
          "ON CONFLICT (group_h) DO UPDATE SET tag = excluded.tag",
        idH,
        tag,
      );
      this.#tags.drop(record.channelId);
      this.#records++;
      this.#putSecrets(record.channelId, idH, secrets ?? { all: true, put: record.secrets ?? [] });
      this.#cache.groups.delete(record.channelId);
    });
    return tag;
  }

  /** Change only a group's secrets, when its tag is `baseTag` (see {@link LocalState}). */
  putGroupSecrets(
    channelId: string,
    baseTag: string,
    secrets: GroupSecretChanges,
  ): string | undefined {
    checkGroupSecrets(secrets);
    return this.#write(() => {
      const idH = this.#lookup("group", channelId);
      // the row's tag: from the kept record, else read (no row: no record, or one of an
      // earlier build without a tag, never a base)
      const kept = this.#cache.groups.get(channelId);
      const row = kept === undefined
        ? this.#get("SELECT tag FROM group_tags WHERE group_h = ?", idH)?.tag
        : kept?.stateTag;
      if (typeof row !== "string" || row === "") return undefined;
      if (this.#tags.tagOf(channelId, row) !== baseTag) return undefined;
      this.#putSecrets(channelId, idH, secrets);
      // the new tag stays in memory: the row is not rewritten for a ratchet's move
      return this.#tags.move(channelId, row);
    });
  }

  /** Apply a change of a group's secrets (inside a write). */
  #putSecrets(channelId: string, idH: Uint8Array, c: GroupSecretChanges): void {
    if (c.all === true) this.#run("DELETE FROM group_secrets WHERE group_h = ?", idH);
    for (const epoch of c.all === true ? [] : c.drop ?? []) {
      this.#run(
        "DELETE FROM group_secrets WHERE group_h = ? AND epoch_h = ?",
        idH,
        this.#lookupBytes("group-secret-epoch", secretKey(channelId, epoch)),
      );
    }
    for (const x of c.put) {
      const slotH = this.#lookupBytes("group-secret-slot", secretKey(channelId, x.epoch, x.node));
      const epochH = this.#lookupBytes("group-secret-epoch", secretKey(channelId, x.epoch));
      this.#run(
        "INSERT INTO group_secrets (group_h, slot_h, epoch_h, data) VALUES (?, ?, ?, ?) " +
          "ON CONFLICT (group_h, slot_h) DO UPDATE SET data = excluded.data",
        idH,
        slotH,
        epochH,
        this.#keys.seal("group-secret", encodeSecret(x), idH, slotH, epochH),
      );
    }
  }

  /** Every stored secret of a group, by epoch then node. */
  #secrets(idH: Uint8Array): GroupSecret[] {
    return this.#all("SELECT slot_h, epoch_h, data FROM group_secrets WHERE group_h = ?", idH)
      .map((r) => {
        const plain = this.#open(
          "group-secret",
          r.data,
          idH,
          r.slot_h as Uint8Array,
          r.epoch_h as Uint8Array,
        );
        try {
          return decodeSecret(plain);
        } finally {
          zeroize(plain);
        }
      })
      .sort((a, b) => a.epoch - b.epoch || a.node - b.node);
  }

  /** The group record of a channel without its state (left sealed), or undefined. */
  groupMeta(channelId: string): GroupMeta | undefined {
    return this.#read(() => {
      let g = this.#cache.groups.get(channelId);
      if (g === undefined) {
        const idH = this.#lookup("group", channelId);
        const r = this.#get(
          "SELECT pending, data, tag FROM groups LEFT JOIN group_tags ON group_h = id_h " +
            "WHERE id_h = ?",
          idH,
        );
        g = r === undefined ? null : this.#groupMeta(r, idH);
        this.#cache.put(this.#cache.groups, channelId, g);
      }
      return g === null ? undefined : this.#withTag(copyGroupMeta(g));
    });
  }

  /** Replace everything of a stored group record but its state; false when there is none. */
  putGroupMeta(meta: Omit<GroupRecord, "state">): boolean {
    // the state is not read: an empty placeholder passes the record checks
    checkGroup({ ...meta, state: new Uint8Array(1) });
    return this.#write1(() => {
      const idH = this.#lookup("group", meta.channelId);
      const pending = meta.pendingCommit === undefined
        ? null
        : this.#keys.seal("group-commit", meta.pendingCommit, idH);
      const old = this.#cache.groups.get(meta.channelId);
      if (!old || !sameListedFields(old, meta)) this.#records++;
      this.#cache.groups.delete(meta.channelId);
      return this.#run(
        "UPDATE groups SET pending = ?, data = ? WHERE id_h = ?",
        pending,
        this.#keys.seal("group", encodeGroup(meta), idH),
        idH,
      ) > 0;
    });
  }

  /** Every group record without its state, by channel id. */
  listGroupMeta(): GroupMeta[] {
    return this.#read(() =>
      this.#all(
        "SELECT id_h, pending, data, tag FROM groups LEFT JOIN group_tags ON group_h = id_h",
      )
        .map((r) => this.#withTag(this.#groupMeta(r, r.id_h as Uint8Array)))
        .sort((a, b) => byString(a.channelId, b.channelId))
    );
  }

  /** Delete a group record (we left or were removed); true when it existed. */
  deleteGroup(channelId: string): boolean {
    return this.#write(() => {
      const idH = this.#lookup("group", channelId);
      this.#cache.groups.delete(channelId);
      this.#tags.drop(channelId);
      this.#records++;
      this.#run("DELETE FROM group_secrets WHERE group_h = ?", idH);
      this.#run("DELETE FROM group_tags WHERE group_h = ?", idH);
      return this.#run("DELETE FROM groups WHERE id_h = ?", idH) > 0;
    });
  }

  /** Every group record, by channel id. */
  listGroups(): GroupRecord[] {
    return this.#read(() =>
      this.#all("SELECT id_h, state, pending, data FROM groups")
        .map((r) => this.#group(r, r.id_h as Uint8Array))
        .sort((a, b) => byString(a.channelId, b.channelId))
    );
  }

  // ---- key packages ----

  /** Store the private part of a KeyPackage we upload (replacing one with the same ref). */
  putKeyPackage(record: KeyPackageRecord): void {
    checkKeyPackage(record);
    this.#write(() => {
      const refH = this.#lookup("key-package", record.ref);
      this.#run(
        "INSERT INTO key_packages (ref_h, data, private) VALUES (?, ?, ?) " +
          "ON CONFLICT (ref_h) DO UPDATE SET data = excluded.data, private = excluded.private",
        refH,
        this.#keys.seal("key-package", encodeKeyPackage(record), refH),
        this.#keys.seal("key-package-private", record.privatePackage, refH),
      );
    });
  }

  /** Every stored KeyPackage private part, by ref. */
  listKeyPackages(): KeyPackageRecord[] {
    return this.#read(() =>
      this.#all("SELECT ref_h, data, private FROM key_packages")
        .map((r) => this.#keyPackage(r, r.ref_h as Uint8Array))
        .sort((a, b) => byString(a.ref, b.ref))
    );
  }

  /** Delete one (a Welcome used it); true when it existed. */
  deleteKeyPackage(ref: string): boolean {
    return this.#write(() =>
      this.#run(
        "DELETE FROM key_packages WHERE ref_h = ?",
        this.#lookup("key-package", ref),
      ) > 0
    );
  }

  // ---- contacts ----

  /** The identity key pinned for a user, or undefined. */
  pinnedKey(username: string): Uint8Array | undefined {
    return this.#read(() => {
      const nameH = this.#lookup("contact", username);
      const r = this.#get("SELECT data FROM contacts WHERE name_h = ?", nameH);
      return r === undefined ? undefined : this.#open("contact", r.data, nameH);
    });
  }

  /** Pin a user's identity key (first use), replacing an earlier pin. */
  pinKey(username: string, key: Uint8Array): void {
    checkContact(username, key);
    this.#write1(() => {
      const nameH = this.#lookup("contact", username);
      this.#run(
        "INSERT INTO contacts (name_h, data) VALUES (?, ?) " +
          "ON CONFLICT (name_h) DO UPDATE SET data = excluded.data",
        nameH,
        this.#keys.seal("contact", key, nameH),
      );
    });
  }

  // ---- consent ----

  /** A user's consent status, or undefined for a stranger. */
  consent(username: string): ConsentStatus | undefined {
    return this.#read(() => {
      let status = this.#cache.consent.get(username);
      if (status === undefined) {
        const nameH = this.#lookup("contact", username);
        const r = this.#get("SELECT data FROM consent WHERE name_h = ?", nameH);
        status = r === undefined
          ? null
          : oneOf(this.#json("consent", r.data, nameH).status, CONSENT_STATUSES);
        this.#cache.put(this.#cache.consent, username, status);
      }
      return status ?? undefined;
    });
  }

  /** Set (or forget) a user's consent status. */
  /** Whether read receipts are sent: on unless turned off. */
  readReceipts(): boolean {
    return this.#read(() => {
      const r = this.#get("SELECT value FROM state_meta WHERE key = 'read_receipts'");
      return r === undefined || (r.value as Uint8Array)[0] !== 0;
    });
  }

  /** Turn sending read receipts on or off. */
  setReadReceipts(on: boolean): void {
    this.#write1(() => {
      this.#run(
        "INSERT INTO state_meta (key, value) VALUES ('read_receipts', ?) " +
          "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        new Uint8Array([on ? 1 : 0]),
      );
    });
  }

  setConsent(username: string, status: ConsentStatus | undefined): void {
    checkConsent(username, status);
    this.#write1(() => {
      this.#cache.consent.delete(username);
      const nameH = this.#lookup("contact", username);
      if (status === undefined) {
        this.#run("DELETE FROM consent WHERE name_h = ?", nameH);
        return;
      }
      this.#run(
        "INSERT INTO consent (name_h, data) VALUES (?, ?) " +
          "ON CONFLICT (name_h) DO UPDATE SET data = excluded.data",
        nameH,
        this.#keys.seal("consent", utf8(JSON.stringify({ username, status })), nameH),
      );
    });
  }

  /** The users we blocked, sorted. */
  listBlocked(): string[] {
    return this.#read(() =>
      this.#all("SELECT name_h, data FROM consent")
        .map((r) => this.#json("consent", r.data, r.name_h as Uint8Array))
        .filter((v) => v.status === "blocked")
        .map((v) => str(v.username))
        .sort(byString)
    );
  }

  // ---- conversations ----

  /**
   * Insert or replace the conversation with `c.id`.
   *
   * @throws {UsageError} (code "conflict") when another conversation already has `c.name`
   */
  upsertConversation(c: Conversation): void {
    checkConversation(c);
    this.#write1(() => {
      const kept = this.#cache.conversations.get(c.id);
      if (!kept || !sameListedConversation(kept, c)) this.#records++;
      this.#cache.conversations.delete(c.id);
      const idH = this.#lookup("conversation", c.id);
      const nameH = this.#lookup("conversation-name", c.name);
      const other = this.#get("SELECT id_h FROM conversations WHERE name_h = ?", nameH);
      if (other !== undefined && !bytesEqual(other.id_h as Uint8Array, idH)) {
        throw nameConflict(c.name);
      }
      const old = this.#get("SELECT data FROM conversations WHERE id_h = ?", idH);
      const readSeq = Math.max(
        c.readSeq ?? 0,
        old === undefined ? 0 : this.#conversation(old.data, idH).readSeq ?? 0,
      );
      if (readSeq > 0) c = { ...c, readSeq };
      this.#run(
        "INSERT INTO conversations (id_h, name_h, data) VALUES (?, ?, ?) " +
          "ON CONFLICT (id_h) DO UPDATE SET name_h = excluded.name_h, data = excluded.data",
        idH,
        nameH,
        this.#keys.seal("conversation", encodeConversation(c), idH),
      );
    });
  }

  /** The conversation with this id, or undefined. */
  getConversation(id: string): Conversation | undefined {
    return this.#read(() => {
      let c = this.#cache.conversations.get(id);
      if (c === undefined) {
        const idH = this.#lookup("conversation", id);
        const r = this.#get("SELECT data FROM conversations WHERE id_h = ?", idH);
        c = r === undefined ? null : this.#conversation(r.data, idH);
        this.#cache.put(this.#cache.conversations, id, c);
      }
      return c === null ? undefined : copyConversation(c);
    });
  }

  /** The conversation with this display name, or undefined. */
  findConversationByName(name: string): Conversation | undefined {
    return this.#read(() => {
      const nameH = this.#lookup("conversation-name", name);
      const r = this.#get("SELECT id_h, data FROM conversations WHERE name_h = ?", nameH);
      return r === undefined ? undefined : this.#conversation(r.data, r.id_h as Uint8Array);
    });
  }

  /** Every conversation, oldest first (by `createdAt`, then name). */
  listConversations(): Conversation[] {
    return this.#read(() =>
      this.#all("SELECT id_h, data FROM conversations")
        .map((r) => this.#conversation(r.data, r.id_h as Uint8Array))
        .sort(byCreation)
    );
  }

  // ---- messages ----

  /**
   * Store a message. Idempotent: returns false (and changes nothing) when `messageId` is
   * already stored, so a redelivered message is never shown twice.
   *
   * @throws {UsageError} when the conversation does not exist or a field is invalid
   */
  addMessage(m: StoredMessage): boolean {
    checkMessage(m);
    return this.#write1(() => {
      const convH = this.#lookup("conversation", m.conversationId);
      if (
        !this.#cache.conversations.get(m.conversationId) &&
        this.#get("SELECT 1 AS x FROM conversations WHERE id_h = ?", convH) === undefined
      ) {
        throw unknownConversation(m.conversationId);
      }
      const idH = this.#lookup("message", m.messageId);
      this.#cache.dropMessage(m.messageId);
      return this.#run(
        "INSERT INTO messages (id_h, conv_h, data) VALUES (?, ?, ?) ON CONFLICT (id_h) DO NOTHING",
        idH,
        convH,
        this.#keys.seal("message", encodeMessage(m), idH, convH),
      ) > 0;
    });
  }

  /** True when a message with this id is stored. */
  getMessage(messageId: string): StoredMessage | undefined {
    return this.#read(() => {
      let m = this.#cache.messages.get(messageId);
      if (m === undefined) {
        const idH = this.#lookup("message", messageId);
        const r = this.#get("SELECT conv_h, data FROM messages WHERE id_h = ?", idH);
        m = r === undefined ? null : this.#message(r.data, idH, r.conv_h as Uint8Array);
        this.#cache.keepMessage(messageId, m);
      }
      return m === null ? undefined : copyMessage(m);
    });
  }

  /** True when a message with this id is stored. */
  hasMessage(messageId: string): boolean {
    return this.#read(() =>
      this.#get(
        "SELECT 1 AS x FROM messages WHERE id_h = ?",
        this.#lookup("message", messageId),
      ) !== undefined
    );
  }

  /**
   * The newest `count` messages of a conversation, oldest first. Order is the order in which
   * this client stored them (its local timeline), not the senders' clocks.
   */
  history(conversationId: string, count: number): StoredMessage[] {
    checkCount(count);
    return this.#read(() => {
      const convH = this.#lookup("conversation", conversationId);
      return this.#all(
        "SELECT id_h, data FROM messages WHERE conv_h = ? ORDER BY seq DESC LIMIT ?",
        convH,
        count,
      ).reverse().map((r) => this.#message(r.data, r.id_h as Uint8Array, convH));
    });
  }

  /** A message's 1-based position in its conversation's history; undefined when unknown. */
  messageIndex(messageId: string): number | undefined {
    return this.#read(() => {
      const idH = this.#lookup("message", messageId);
      const r = this.#get("SELECT conv_h, seq FROM messages WHERE id_h = ?", idH);
      if (r === undefined) return undefined;
      const n = this.#get(
        "SELECT count(*) AS n FROM messages WHERE conv_h = ? AND seq <= ?",
        r.conv_h as Uint8Array,
        r.seq as number,
      );
      return Number(n?.n ?? 0);
    });
  }

  /** The message at 1-based position `index` of a conversation's history, or undefined. */
  messageAt(conversationId: string, index: number): StoredMessage | undefined {
    if (!Number.isSafeInteger(index) || index < 1) return undefined;
    return this.#read(() => {
      const convH = this.#lookup("conversation", conversationId);
      const r = this.#get(
        "SELECT id_h, data FROM messages WHERE conv_h = ? ORDER BY seq LIMIT 1 OFFSET ?",
        convH,
        index - 1,
      );
      return r === undefined ? undefined : this.#message(r.data, r.id_h as Uint8Array, convH);
    });
  }

  /**
   * Mark every message of a conversation stored so far as read. Not durable on its own
   * (a power cut may undo it: the messages show unread again); the next durable commit
   * carries it.
   */
  markRead(conversationId: string): void {
    this.#write(() => {
      const c = this.getConversation(conversationId);
      if (c === undefined) throw unknownConversation(conversationId);
      const convH = this.#lookup("conversation", conversationId);
      const r = this.#get("SELECT max(seq) AS s FROM messages WHERE conv_h = ?", convH);
      const last = typeof r?.s === "number" ? r.s : 0;
      if (last > (c.readSeq ?? 0)) this.upsertConversation({ ...c, readSeq: last });
    }, { durable: false });
  }

  /** See {@link LocalState.expireMessages}. */
  expireMessages(conversationId: string, before: number): number {
    return this.#write(() => {
      const convH = this.#lookup("conversation", conversationId);
      const rows = this.#all("SELECT id_h, data FROM messages WHERE conv_h = ?", convH);
      let n = 0;
      for (const r of rows) {
        const m = this.#message(r.data, r.id_h as Uint8Array, convH);
        if ((m.sentAt || m.receivedAt) < before) {
          this.#cache.dropMessage(m.messageId);
          this.#run("DELETE FROM messages WHERE id_h = ?", r.id_h as Uint8Array);
          n++;
        }
      }
      return n;
    });
  }

  /** Messages stored after the last {@link markRead}, counted up to `cap` (then `cap + 1`). */
  unreadCount(conversationId: string, cap: number): number {
    checkCount(cap);
    return this.#read(() => {
      const c = this.getConversation(conversationId);
      if (c === undefined) return 0;
      const convH = this.#lookup("conversation", conversationId);
      const r = this.#get(
        "SELECT count(*) AS n FROM (SELECT 1 FROM messages WHERE conv_h = ? AND seq > ? LIMIT ?)",
        convH,
        c.readSeq ?? 0,
        cap + 1,
      );
      return Number(r?.n ?? 0);
    });
  }

  /** Replace a stored message's content (same id, same conversation); false when unknown. */
  updateMessage(m: StoredMessage): boolean {
    checkMessage(m);
    return this.#write1(() => {
      const idH = this.#lookup("message", m.messageId);
      const old = this.getMessage(m.messageId);
      if (old === undefined) return false;
      if (old.conversationId !== m.conversationId) {
        throw new UsageError("A message cannot move to another conversation");
      }
      // its conversation's lookup hash is the row's conv_h (addMessage stored it so)
      const convH = this.#lookup("conversation", old.conversationId);
      this.#cache.dropMessage(m.messageId);
      this.#run(
        "UPDATE messages SET data = ? WHERE id_h = ?",
        this.#keys.seal("message", encodeMessage(m), idH, convH),
        idH,
      );
      this.#cache.keepMessage(m.messageId, storedForm(m));
      return true;
    });
  }

  /** Set the delivery status of a stored message; false when no such message. */
  setMessageStatus(messageId: string, status: MessageStatus, failure?: string): boolean {
    checkStatus(status);
    return this.#write1(() => {
      const idH = this.#lookup("message", messageId);
      const m = this.getMessage(messageId);
      if (m === undefined) return false;
      const convH = this.#lookup("conversation", m.conversationId);
      m.status = status;
      if (status === "failed" && failure !== undefined) m.failure = failure;
      else delete m.failure;
      this.#cache.dropMessage(messageId);
      this.#run(
        "UPDATE messages SET data = ? WHERE id_h = ?",
        this.#keys.seal("message", encodeMessage(m), idH, convH),
        idH,
      );
      this.#cache.keepMessage(messageId, storedForm(m));
      return true;
    });
  }

  // ---- outbox ----

  // A row's `conv_h` is its conversation's lookup hash (as a message row's), also bound into
  // its sealed value: what is queued for a conversation, and how much, is SQL on
  // `(conv_h, seq)` and opens no entry.

  /** Queue a request for sending; false when `messageId` is already queued. */
  addOutbox(e: OutboxEntry): boolean {
    checkOutbox(e);
    return this.#write1(() => {
      const idH = this.#lookup("outbox", e.messageId);
      const convH = this.#lookup("conversation", e.conversationId);
      return this.#run(
        "INSERT INTO outbox (id_h, conv_h, data) VALUES (?, ?, ?) ON CONFLICT (id_h) DO NOTHING",
        idH,
        convH,
        this.#keys.seal("outbox", encodeOutbox(e), idH, convH),
      ) > 0;
    });
  }

  /** Every queued request (of one conversation, when given), oldest first. */
  listOutbox(conversationId?: string): OutboxEntry[] {
    return this.#read(() => {
      const rows = conversationId === undefined
        ? this.#all("SELECT id_h, conv_h, data FROM outbox WHERE seq > 0 ORDER BY seq")
        : this.#all(
          "SELECT id_h, conv_h, data FROM outbox WHERE conv_h = ? AND seq > 0 ORDER BY seq",
          this.#lookup("conversation", conversationId),
        );
      return rows.map((r) => this.#outboxRow(r));
    });
  }

  /** How many requests are queued (see {@link LocalState}). */
  outboxCount(): number {
    return this.#read(() =>
      Number(this.#get("SELECT count(*) AS n FROM outbox WHERE seq > 0")?.n ?? 0)
    );
  }

  /** Whether a request of the conversation waits before this one (see {@link LocalState}). */
  queuedBefore(messageId: string | undefined, conversationId?: string): boolean {
    return this.#read(() => {
      const at = messageId === undefined ? undefined : this.#get(
        "SELECT seq, conv_h FROM outbox WHERE id_h = ? AND seq > 0",
        this.#lookup("outbox", messageId),
      );
      if (at !== undefined) {
        return this.#get(
          "SELECT 1 AS x FROM outbox WHERE conv_h = ? AND seq > 0 AND seq < ? LIMIT 1",
          at.conv_h as Uint8Array,
          at.seq as number,
        ) !== undefined;
      }
      if (conversationId === undefined) return false;
      return this.#get(
        "SELECT 1 AS x FROM outbox WHERE conv_h = ? AND seq > 0 LIMIT 1",
        this.#lookup("conversation", conversationId),
      ) !== undefined;
    });
  }

  // Kept sent requests share the outbox table (no new schema version): their `seq` is
  // negative (the newest the lowest), so the queue (seq > 0) is read without opening them.

  /** Keep an acknowledged request to resend after a server restore (see LocalState). */
  keepSent(messageId: string, sentAt: number, limits: { count: number; bytes: number }): boolean {
    checkTime("sent time", sentAt);
    return this.#write(() => {
      const idH = this.#lookup("outbox", messageId);
      const r = this.#get("SELECT id_h, conv_h, data FROM outbox WHERE id_h = ? AND seq > 0", idH);
      if (r === undefined) return false;
      const e = { ...this.#outboxRow(r), sentAt };
      delete e.resend;
      const data = this.#keys.seal("outbox", encodeOutbox(e), idH, r.conv_h as Uint8Array);
      // the totals before this one: kept by this handle, else counted once in SQL
      const before = this.#cache.kept ?? this.#keptTotals();
      this.#run(
        "UPDATE outbox SET seq = (SELECT MIN(COALESCE(MIN(seq), 0), 0) - 1 FROM outbox), " +
          "data = ? WHERE id_h = ?",
        data,
        idH,
      );
      // the newest that fit both limits stay: the oldest go while the totals exceed one
      let count = before.count + 1;
      let bytes = before.bytes + data.length;
      while (count > limits.count || bytes > limits.bytes) {
        const oldest = this.#get(
          "SELECT seq, length(data) AS n FROM outbox WHERE seq < 0 ORDER BY seq DESC LIMIT 1",
        );
        if (oldest === undefined) break;
        this.#run("DELETE FROM outbox WHERE seq = ?", oldest.seq as number);
        count--;
        bytes -= Number(oldest.n);
      }
      this.#cache.kept = { count, bytes };
      return true;
    });
  }

  /** How many requests are kept, and their bytes (a scan of the kept rows, in SQL). */
  #keptTotals(): { count: number; bytes: number } {
    const total = this.#get(
      "SELECT COUNT(*) AS n, TOTAL(length(data)) AS b FROM outbox WHERE seq < 0",
    );
    return { count: Number(total?.n ?? 0), bytes: Number(total?.b ?? 0) };
  }

  /** The kept sent requests, oldest first. */
  listSent(): OutboxEntry[] {
    return this.#read(() =>
      this.#all("SELECT id_h, conv_h, data FROM outbox WHERE seq < 0 ORDER BY seq DESC").map((
        r,
      ) => this.#outboxRow(r))
    );
  }

  /** Queue the kept requests sent since `since` again; forget older ones. */
  requeueSent(since: number): number {
    return this.#write(() => {
      this.#cache.kept = undefined;
      let n = 0;
      for (
        const r of this.#all(
          "SELECT seq, id_h, conv_h, data FROM outbox WHERE seq < 0 ORDER BY seq DESC",
        )
      ) {
        const idH = r.id_h as Uint8Array;
        const e = this.#outboxRow(r);
        if ((e.sentAt ?? 0) < since) {
          this.#run("DELETE FROM outbox WHERE id_h = ?", idH);
          continue;
        }
        delete e.sentAt;
        e.resend = true;
        this.#run(
          "UPDATE outbox SET seq = (SELECT MAX(COALESCE(MAX(seq), 0), 0) + 1 FROM outbox), " +
            "data = ? WHERE id_h = ?",
          this.#keys.seal("outbox", encodeOutbox(e), idH, r.conv_h as Uint8Array),
          idH,
        );
        n++;
      }
      return n;
    });
  }

  /** Remove a request (the server acknowledged it); false when it was not queued. */
  removeOutbox(messageId: string): boolean {
    return this.#write1(() => {
      const r = this.#get(
        "DELETE FROM outbox WHERE id_h = ? RETURNING seq, length(data) AS n",
        this.#lookup("outbox", messageId),
      );
      if (r === undefined) return false;
      // a kept one gone: the kept totals follow
      const kept = this.#cache.kept;
      if (kept && (r.seq as number) < 0) {
        this.#cache.kept = { count: kept.count - 1, bytes: kept.bytes - Number(r.n) };
      }
      return true;
    });
  }

  /** Count one more send attempt; returns the new count, or undefined when not queued. */
  bumpOutbox(messageId: string): number | undefined {
    return this.#write1(() => {
      const idH = this.#lookup("outbox", messageId);
      // queued only: a kept (sent) request is not tried again, and its size is in the kept totals
      const r = this.#get("SELECT id_h, conv_h, data FROM outbox WHERE id_h = ? AND seq > 0", idH);
      if (r === undefined) return undefined;
      const e = this.#outboxRow(r);
      e.attempts++;
      this.#run(
        "UPDATE outbox SET data = ? WHERE id_h = ?",
        this.#keys.seal("outbox", encodeOutbox(e), idH, r.conv_h as Uint8Array),
        idH,
      );
      return e.attempts;
    });
  }

  // ---- lifecycle ----

  /** Close the database, zero the keys and secrets, release the lock. Idempotent. */
  close(): Promise<void> {
    if (this.#depth > 0) {
      return Promise.reject(closeInTransaction());
    }
    this.#closeSync();
    return Promise.resolve();
  }

  /** `await using store = await ClientStore.open(…)` closes it at scope exit. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Redacted JSON form (no keys, no meta). */
  toJSON(): { statePath: string; closed: boolean } {
    return { statePath: this.#path, closed: this.closed };
  }

  [Symbol.for("Deno.customInspect")](): string {
    return `ClientStore { statePath: ${JSON.stringify(this.#path)}, closed: ${this.closed} }`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `ClientStore { statePath: ${JSON.stringify(this.#path)}, closed: ${this.closed} }`;
  }

  // ---- plumbing ----

  #closeSync(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#memory !== undefined) {
      // the data stays for the next handle (reopen); only this handle ends
      if (this.#memory.handle === this) this.#sql.clear();
      return;
    }
    globalThis.removeEventListener("unload", this.#onUnload);
    this.#sql.clear();
    try {
      this.#db.close();
    } catch { /* closing anyway */ }
    this.#keys.destroy();
    zeroMeta(this.#meta);
    this.#lock?.release();
    OPEN_STATES.delete(this.#abs);
  }

  #alive(): void {
    if (this.closed) throw closedError();
  }

  #exec(sql: string): void {
    try {
      this.#db.exec(sql);
    } catch (e) {
      throw wrap(e);
    }
  }

  #read<T>(fn: () => T): T {
    this.#alive();
    try {
      return fn();
    } catch (e) {
      throw wrap(e);
    }
  }

  #write<T>(fn: () => T, opts?: TransactionOptions): T {
    this.#alive();
    try {
      return this.transaction(fn, opts);
    } catch (e) {
      throw wrap(e);
    }
  }

  /**
   * A write of one statement (and reads before it): inside a transaction it runs there
   * without a savepoint of its own, since SQLite keeps or undoes one statement whole (a
   * savepoint costs two more statements, and the receive path nests several per message).
   */
  #write1<T>(fn: () => T): T {
    if (this.#depth === 0) return this.#write(fn);
    this.#alive();
    try {
      return fn();
    } catch (e) {
      throw wrap(e);
    }
  }

  #get(sql: string, ...args: SQLInputValue[]): Row | undefined {
    return this.#sql.get(sql, ...args);
  }

  #all(sql: string, ...args: SQLInputValue[]): Row[] {
    return this.#sql.all(sql, ...args);
  }

  #run(sql: string, ...args: SQLInputValue[]): number {
    for (const a of args) {
      this.#written += a instanceof Uint8Array || typeof a === "string" ? a.length : 8;
    }
    return this.#sql.run(sql, ...args);
  }

  /** The lookup hash of a text id (kept: see {@link #cache}). Not to be changed. */
  #lookup(label: ClientLabel, text: string): Uint8Array {
    const key = `${label}\n${text}`;
    let h = this.#cache.lookups.get(key);
    if (h === undefined) {
      h = this.#keys.lookup(label, utf8(text));
      this.#cache.put(this.#cache.lookups, key, h);
    }
    return h;
  }

  /** The lookup hash of a byte id made of text (kept as {@link #lookup} does). */
  #lookupBytes(label: ClientLabel, bytes: Uint8Array): Uint8Array {
    return this.#lookup(label, fromUtf8(bytes));
  }

  #open(label: ClientLabel, sealed: unknown, ...rowKey: Uint8Array[]): Uint8Array {
    if (!(sealed instanceof Uint8Array)) throw damagedRecord();
    try {
      return this.#keys.open(label, sealed, ...rowKey);
    } catch (e) {
      throw damagedRecord(e);
    }
  }

  #json(
    label: ClientLabel,
    sealed: unknown,
    ...rowKey: Uint8Array[]
  ): Record<string, unknown> {
    const plain = this.#open(label, sealed, ...rowKey);
    try {
      const v: unknown = JSON.parse(fromUtf8(plain));
      if (typeof v !== "object" || v === null) throw damagedRecord();
      return v as Record<string, unknown>;
    } catch (e) {
      throw e instanceof StorageError ? e : damagedRecord(e);
    } finally {
      zeroize(plain);
    }
  }

  #group(r: Row, idH: Uint8Array): GroupRecord {
    const { stateTag: _, ...meta } = this.#groupMeta(r, idH);
    const secrets = this.#secrets(idH);
    return {
      ...meta,
      state: this.#open("group-state", r.state, idH),
      ...(secrets.length > 0 ? { secrets } : {}),
    };
  }

  #groupMeta(r: Row, idH: Uint8Array): GroupMeta {
    const v = this.#json("group", r.data, idH);
    if (!Array.isArray(v.leaves)) throw damagedRecord();
    const g: GroupMeta = {
      channelId: str(v.channelId),
      lastUpdateMs: num(v.lastUpdateMs),
      leaves: v.leaves.map(str),
      stateTag: typeof r.tag === "string" ? r.tag : "",
    };
    if (r.pending !== null) g.pendingCommit = this.#open("group-commit", r.pending, idH);
    if (v.broken !== undefined) g.broken = str(v.broken);
    if (v.rejoinRequestedMs !== undefined) g.rejoinRequestedMs = num(v.rejoinRequestedMs);
    if (v.leavingEpoch !== undefined) g.leavingEpoch = num(v.leavingEpoch);
    if (v.recentCommits !== undefined) {
      if (!Array.isArray(v.recentCommits)) throw damagedRecord();
      g.recentCommits = v.recentCommits.map(str);
    }
    if (v.summary !== undefined) g.summary = summaryOf(v.summary);
    if (v.narrowSends !== undefined) {
      const n = v.narrowSends as Record<string, unknown>;
      if (typeof n !== "object" || n === null) throw damagedRecord();
      g.narrowSends = { epoch: num(n.epoch), count: num(n.count) };
    }
    return g;
  }

  /** A record read with its row's tag, given the tag this handle moved it to, if any. */
  #withTag(g: GroupMeta): GroupMeta {
    g.stateTag = this.#tags.tagOf(g.channelId, g.stateTag);
    return g;
  }

  #keyPackage(r: Row, refH: Uint8Array): KeyPackageRecord {
    const v = this.#json("key-package", r.data, refH);
    if (typeof v.lastResort !== "boolean") throw damagedRecord();
    return {
      ref: str(v.ref),
      suite: str(v.suite),
      lastResort: v.lastResort,
      privatePackage: this.#open("key-package-private", r.private, refH),
    };
  }

  #conversation(sealed: unknown, idH: Uint8Array): Conversation {
    const v = this.#json("conversation", sealed, idH);
    const c: Conversation = {
      id: str(v.id),
      kind: oneOf(v.kind, KINDS),
      name: str(v.name),
      createdAt: num(v.createdAt),
    };
    if (v.peer !== undefined) c.peer = str(v.peer);
    if (v.channelId !== undefined) c.channelId = str(v.channelId);
    if (v.groupId !== undefined) c.groupId = fromBase64(str(v.groupId));
    if (v.requestFrom !== undefined) c.requestFrom = str(v.requestFrom);
    if (v.readSeq !== undefined) c.readSeq = num(v.readSeq);
    return c;
  }

  #message(sealed: unknown, idH: Uint8Array, convH: Uint8Array): StoredMessage {
    const v = this.#json("message", sealed, idH, convH);
    const m: StoredMessage = {
      conversationId: str(v.conversationId),
      messageId: str(v.messageId),
      sender: str(v.sender),
      body: str(v.body),
      sentAt: num(v.sentAt),
      receivedAt: num(v.receivedAt),
      direction: oneOf(v.direction, DIRECTIONS),
    };
    if (v.status !== undefined) m.status = oneOf(v.status, STATUSES);
    if (v.failure !== undefined) m.failure = str(v.failure);
    if (v.unreadable !== undefined) {
      if (typeof v.unreadable !== "boolean") throw damagedRecord();
      m.unreadable = v.unreadable;
    }
    if (v.replyTo !== undefined) m.replyTo = str(v.replyTo);
    if (v.editedAt !== undefined) m.editedAt = num(v.editedAt);
    if (v.deleted !== undefined) {
      if (typeof v.deleted !== "boolean") throw damagedRecord();
      m.deleted = v.deleted;
    }
    if (v.reactions !== undefined) {
      if (!Array.isArray(v.reactions)) throw damagedRecord();
      m.reactions = v.reactions.map((r: Record<string, unknown>) => ({
        user: str(r?.user),
        emoji: str(r?.emoji),
        at: num(r?.at),
      }));
    }
    if (v.receipts !== undefined) {
      if (!Array.isArray(v.receipts)) throw damagedRecord();
      m.receipts = v.receipts.map((r: Record<string, unknown>) => ({
        user: str(r?.user),
        ...(r?.deliveredAt !== undefined ? { deliveredAt: num(r.deliveredAt) } : {}),
        ...(r?.readAt !== undefined ? { readAt: num(r.readAt) } : {}),
      }));
    }
    return m;
  }

  /** An outbox row (`id_h`, `conv_h`, `data`) opened; its hash must be its conversation's. */
  #outboxRow(r: Row): OutboxEntry {
    const idH = r.id_h;
    const convH = r.conv_h;
    if (!(idH instanceof Uint8Array) || !(convH instanceof Uint8Array)) throw damagedRecord();
    const v = this.#json("outbox", r.data, idH, convH);
    return {
      messageId: str(v.messageId),
      conversationId: str(v.conversationId),
      request: fromBase64(str(v.request)),
      createdAt: num(v.createdAt),
      attempts: num(v.attempts),
      ...(v.sentAt !== undefined ? { sentAt: num(v.sentAt) } : {}),
      ...(v.resend === true ? { resend: true } : {}),
      ...(v.content !== undefined ? { content: fromBase64(str(v.content)) } : {}),
    };
  }
}

// ---- helpers ----

/** Entries of each map of a {@link RowCache}: past it the map starts again empty. */
const ROW_CACHE_ENTRIES = 4096;
/** What the message copies of a {@link RowCache} may hold, about (UTF-16 text and fields). */
const MESSAGE_CACHE_BYTES = 512 * 1024;

/** What a {@link ClientStore} handle keeps of its rows (null: known to be absent). */
class RowCache {
  readonly groups = new Map<string, GroupMeta | null>();
  readonly conversations = new Map<string, Conversation | null>();
  readonly consent = new Map<string, ConsentStatus | null>();
  /** Messages by id (a receipt names several), up to {@link MESSAGE_CACHE_BYTES} of text. */
  readonly messages = new Map<string, StoredMessage | null>();
  #messageBytes = 0;
  /** Lookup hashes by label and id: deterministic, so kept across a rollback. */
  readonly lookups = new Map<string, Uint8Array>();
  cursor: number | undefined;
  /** The kept sent requests' count and bytes (see `ClientStore.keepSent`). */
  kept: { count: number; bytes: number } | undefined;

  /** Keep `value` under `key`, starting `map` afresh when it is full. */
  put<V>(map: Map<string, V>, key: string, value: V): void {
    if (map.size >= ROW_CACHE_ENTRIES) map.clear();
    map.set(key, value);
  }

  /** Keep a message read (null: not stored). */
  keepMessage(id: string, m: StoredMessage | null): void {
    const size = 256 + (m === null ? 0 : m.body.length * 2);
    if (
      this.messages.size >= ROW_CACHE_ENTRIES || this.#messageBytes + size > MESSAGE_CACHE_BYTES
    ) {
      this.messages.clear();
      this.#messageBytes = 0;
    }
    this.messages.set(id, m);
    this.#messageBytes += size;
  }

  /** Forget a message about to be written. */
  dropMessage(id: string): void {
    this.messages.delete(id);
  }

  /** Forget every row (a transaction was rolled back). */
  clear(): void {
    this.messages.clear();
    this.#messageBytes = 0;
    this.groups.clear();
    this.conversations.clear();
    this.consent.clear();
    this.cursor = undefined;
    this.kept = undefined;
  }
}

function copyGroupMeta(g: GroupMeta): GroupMeta {
  const c: GroupMeta = { ...g, leaves: [...g.leaves] };
  if (g.pendingCommit !== undefined) c.pendingCommit = g.pendingCommit.slice();
  if (g.recentCommits !== undefined) c.recentCommits = [...g.recentCommits];
  if (g.summary !== undefined) c.summary = { ...g.summary, members: [...g.summary.members] };
  return c;
}

function copyMessage(m: StoredMessage): StoredMessage {
  const c: StoredMessage = { ...m };
  if (m.reactions !== undefined) c.reactions = m.reactions.map((r) => ({ ...r }));
  if (m.receipts !== undefined) c.receipts = m.receipts.map((r) => ({ ...r }));
  return c;
}

/** A message as {@link ClientStore.getMessage} reads it back once stored (encodeMessage's fields). */
function storedForm(m: StoredMessage): StoredMessage {
  const c: StoredMessage = {
    conversationId: m.conversationId,
    messageId: m.messageId,
    sender: m.sender,
    body: m.body,
    sentAt: m.sentAt,
    receivedAt: m.receivedAt,
    direction: m.direction,
  };
  if (m.status !== undefined) c.status = m.status;
  if (m.failure !== undefined) c.failure = m.failure;
  if (m.unreadable !== undefined) c.unreadable = m.unreadable;
  if (m.replyTo !== undefined) c.replyTo = m.replyTo;
  if (m.editedAt !== undefined) c.editedAt = m.editedAt;
  if (m.deleted !== undefined) c.deleted = m.deleted;
  if (m.reactions !== undefined) {
    c.reactions = m.reactions.map((r) => ({ user: r.user, emoji: r.emoji, at: r.at }));
  }
  if (m.receipts !== undefined) {
    c.receipts = m.receipts.map((r) => ({
      user: r.user,
      ...(r.deliveredAt !== undefined ? { deliveredAt: r.deliveredAt } : {}),
      ...(r.readAt !== undefined ? { readAt: r.readAt } : {}),
    }));
  }
  return c;
}

function copyConversation(c: Conversation): Conversation {
  return c.groupId === undefined ? { ...c } : { ...c, groupId: c.groupId.slice() };
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw new StorageError("Cannot access local state", { cause: e });
  }
}

function noState(path: string): UsageError {
  return new UsageError(
    `No local state at ${path}: qpq register-user creates an account; for an existing one, point --state at the file it was registered with`,
    { code: "not_found" }, // not a usage mistake (exit code 1, issue 21)
  );
}

function wrap(e: unknown): QpqError {
  if (e instanceof QpqError) return e;
  return new StorageError("Local state storage failed", { cause: e });
}

/**
 * True when `b` changes none of the fields of `a` that listings derive from (see
 * {@link LocalState.recordsVersion}): only its counters (narrow sends, last update time,
 * remembered commits) may differ.
 */
function sameListedFields(a: Omit<GroupRecord, "state">, b: Omit<GroupRecord, "state">): boolean {
  const pa = a.pendingCommit, pb = b.pendingCommit;
  return a.broken === b.broken && a.leavingEpoch === b.leavingEpoch &&
    a.rejoinRequestedMs === b.rejoinRequestedMs &&
    a.leaves.length === b.leaves.length && a.leaves.every((u, i) => u === b.leaves[i]) &&
    (pa === undefined ? pb === undefined : pb !== undefined && bytesEqual(pa, pb)) &&
    JSON.stringify(a.summary) === JSON.stringify(b.summary);
}

/** True when `b` changes nothing of `a` but how far it was read (`readSeq`). */
function sameListedConversation(a: Conversation, b: Conversation): boolean {
  return a.id === b.id && a.kind === b.kind && a.name === b.name && a.peer === b.peer &&
    a.channelId === b.channelId && a.createdAt === b.createdAt &&
    a.requestFrom === b.requestFrom &&
    (a.groupId === undefined
      ? b.groupId === undefined
      : b.groupId !== undefined && bytesEqual(a.groupId, b.groupId));
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function checkKdf(kdf: Argon2idParams): void {
  try {
    parseArgon2idParams(kdf);
  } catch (e) {
    throw new UsageError("Invalid password KDF parameters", { cause: e });
  }
}

function moveOrphanDbAside(paths: ClientStatePaths, onProgress?: (m: string) => void): void {
  if (!exists(paths.db)) return;
  const suffix = `.orphan-${Date.now()}`;
  for (const p of [paths.db, paths.wal, paths.shm]) {
    if (exists(p)) Deno.renameSync(p, p.replace(/\.db(-wal|-shm)?$/, `.db${suffix}$1`));
  }
  onProgress?.(`Moved an undecryptable leftover database aside to ${paths.db}${suffix}`);
}

function sealedStateFile(keys: ClientKeys, header: Uint8Array, meta: MetaFields): Uint8Array {
  const plain = encodeMeta(meta);
  try {
    return encodeStateFile(header, keys.sealMeta(header, plain));
  } finally {
    zeroize(plain);
  }
}

/** A stored group summary, checked field by field. */
function summaryOf(v: unknown): GroupSummary {
  if (typeof v !== "object" || v === null) throw damagedRecord();
  const o = v as Record<string, unknown>;
  if (!Array.isArray(o.members) || typeof o.pendingCommit !== "boolean") throw damagedRecord();
  return {
    epoch: num(o.epoch),
    suite: str(o.suite),
    members: o.members.map(str),
    pendingCommit: o.pendingCommit,
    pendingProposals: num(o.pendingProposals),
  };
}

/** The row key of a group secret (its epoch, and its node unless a whole epoch is meant). */
function secretKey(channelId: string, epoch: number, node?: number): Uint8Array {
  return utf8(node === undefined ? `${channelId}:${epoch}` : `${channelId}:${epoch}:${node}`);
}

/** A group secret as sealed: u64 epoch, u32 node, the value. */
function encodeSecret(x: GroupSecret): Uint8Array {
  const out = new Uint8Array(12 + x.value.length);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, BigInt(x.epoch));
  v.setUint32(8, x.node);
  out.set(x.value, 12);
  return out;
}

function decodeSecret(b: Uint8Array): GroupSecret {
  if (b.length < 12) throw damagedRecord();
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const epoch = Number(v.getBigUint64(0));
  if (!Number.isSafeInteger(epoch)) throw damagedRecord();
  return { epoch, node: v.getUint32(8), value: b.slice(12) };
}

/** The small part of a group record (the state and pending commit have their own columns). */
function encodeGroup(g: Omit<GroupRecord, "state">): Uint8Array {
  return utf8(JSON.stringify({
    channelId: g.channelId,
    lastUpdateMs: g.lastUpdateMs,
    leaves: g.leaves,
    broken: g.broken,
    rejoinRequestedMs: g.rejoinRequestedMs,
    leavingEpoch: g.leavingEpoch,
    recentCommits: g.recentCommits,
    summary: g.summary,
    narrowSends: g.narrowSends,
  }));
}

/** A KeyPackage record without its private part (sealed in its own column). */
function encodeKeyPackage(k: KeyPackageRecord): Uint8Array {
  return utf8(JSON.stringify({ ref: k.ref, suite: k.suite, lastResort: k.lastResort }));
}

function encodeConversation(c: Conversation): Uint8Array {
  return utf8(JSON.stringify({
    id: c.id,
    kind: c.kind,
    name: c.name,
    peer: c.peer,
    channelId: c.channelId,
    groupId: c.groupId === undefined ? undefined : toBase64(c.groupId),
    createdAt: c.createdAt,
    requestFrom: c.requestFrom,
    readSeq: c.readSeq,
  }));
}

function encodeMessage(m: StoredMessage): Uint8Array {
  return utf8(JSON.stringify({
    conversationId: m.conversationId,
    messageId: m.messageId,
    sender: m.sender,
    body: m.body,
    sentAt: m.sentAt,
    receivedAt: m.receivedAt,
    direction: m.direction,
    status: m.status,
    failure: m.failure,
    unreadable: m.unreadable,
    replyTo: m.replyTo,
    editedAt: m.editedAt,
    deleted: m.deleted,
    reactions: m.reactions?.map((r) => ({ user: r.user, emoji: r.emoji, at: r.at })),
    receipts: m.receipts?.map((r) => ({
      user: r.user,
      deliveredAt: r.deliveredAt,
      readAt: r.readAt,
    })),
  }));
}

function encodeOutbox(e: OutboxEntry): Uint8Array {
  return utf8(JSON.stringify({
    messageId: e.messageId,
    conversationId: e.conversationId,
    request: toBase64(e.request),
    createdAt: e.createdAt,
    attempts: e.attempts,
    ...(e.sentAt !== undefined ? { sentAt: e.sentAt } : {}),
    ...(e.resend ? { resend: true } : {}),
    ...(e.content !== undefined ? { content: toBase64(e.content) } : {}),
  }));
}

function str(v: unknown): string {
  if (typeof v !== "string") throw damagedRecord();
  return v;
}

function num(v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v)) throw damagedRecord();
  return v;
}

function oneOf<T extends string>(v: unknown, allowed: readonly T[]): T {
  if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) throw damagedRecord();
  return v as T;
}
