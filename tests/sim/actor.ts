/**
 * One simulated user: a QpqClient over a state file in a temp dir, behind the fault seams,
 * plus what the user saw (message events) across crashes and restarts.
 *
 * ```
 * create ─► register ─► subscribe ─┬─► ops … ─► crash ─► reopen same files ─► new instance
 *                                  ├─► offline (no network) ─► back: session, flush, sync
 *                                  └─► close
 * ```
 *
 * @module
 */
import { QpqClient } from "../../src/client/client.ts";
import { openLocalStore } from "../../src/client/open_store.ts";
import { DEFAULT_ARGON2ID_PARAMS, IdentityKeyPair } from "../../src/crypto/mod.ts";
import { type ClientStore, type LocalState, MemoryLocalState } from "../../src/store/client/mod.ts";
import { SimDisk } from "./disk.ts";
import { FaultySeams } from "./faults.ts";
import type { KeyStretching } from "../../src/auth/mod.ts";
import type { Connector } from "../../src/client/connection.ts";
import type { VirtualClock } from "./vclock.ts";

/** Cheap Argon2id parameters (tests only). */
export const FAST_KDF = { ...DEFAULT_ARGON2ID_PARAMS, memoryKiB: 256, iterations: 1 };

/**
 * Cheap OPAQUE key stretching (tests only): every registration and login runs the same
 * OPAQUE code, without the ~0.25 s of argon2id each costs at the default parameters.
 */
export const FAST_KSF: KeyStretching = {
  argon2id: { memoryKiB: 256, iterations: 1, parallelism: 1 },
};

/** A message as stored in a client's history (the fields the checker reads). */
export interface SeenMessage {
  sender: string;
  body: string;
  direction: string;
  status?: string;
  /** Why a "failed" message was not sent. */
  failure?: string;
  /** A placeholder for a message the client could not decrypt. */
  unreadable?: boolean;
  messageId?: string;
  /** Deleted for everyone by its author (body empty). */
  deleted?: boolean;
  editedAt?: number;
  reactions?: { user: string; emoji: string }[];
  /** Of own messages: members' delivered and read receipts. */
  receipts?: { user: string; deliveredAt?: number; readAt?: number }[];
}

/** Where the server is. */
export interface ServerAddress {
  addr: string;
  certPem: string;
}

type AnyEvent = { kind: string } & Record<string, unknown>;

/** One simulated user. */
export class Actor {
  readonly name: string;
  readonly password: string;
  readonly statePath: string;
  #server: ServerAddress;
  #timeoutMs: number;
  #connector: Connector | undefined;
  #clock: VirtualClock | undefined;
  client!: QpqClient;
  seams!: FaultySeams;
  /** Instance number (0 = the first process; +1 per crash). */
  instance = -1;
  /** Network down for this user. */
  offline = false;
  /** This client's clock minus the server's (ms): skew, suspends (virtual time only). */
  skewMs = 0;
  /** Steps at which this user crashed. */
  readonly crashSteps: number[] = [];
  /** Incoming message events per body, over all instances (what the user was shown). */
  readonly shown = new Map<string, number>();
  /** The last events (all kinds), for a violation report. */
  readonly recent: string[] = [];
  /** Events of kinds the simulation does not know (the client grew new ones). */
  readonly otherKinds = new Map<string, number>();
  /** Warnings seen, by text prefix (for the report). */
  readonly warnings: string[] = [];

  /**
   * Where the state lives: files (encrypted SQLite: a crash reopens the same files) or
   * memory ({@link MemoryLocalState}: a crash reopens the same data; much faster).
   */
  readonly storeKind: "file" | "memory";
  #memory: MemoryLocalState | undefined;
  /**
   * A file store's disk: imaged at each commit that waited for it, so a power cut
   * ({@link crashAndRestart} with `power`) loses exactly the commits that did not
   * (`{ durable: false }`: "sent" and read marks).
   */
  #disk: SimDisk | undefined;

  constructor(
    name: string,
    dir: string,
    server: ServerAddress,
    options: {
      timeoutMs: number;
      store: "file" | "memory";
      /** The simulated network's connector (default QUIC). */
      connector?: Connector;
      /** Virtual time for the client's clock and timers (default real). */
      clock?: VirtualClock;
    },
  ) {
    this.#connector = options.connector;
    this.#clock = options.clock;
    this.storeKind = options.store;
    this.name = name;
    this.password = `pw-${name}`;
    this.statePath = `${dir}/${name}.bin`;
    if (options.store === "file") this.#disk = new SimDisk(dir, `${name}.bin.db`);
    this.#server = server;
    this.#timeoutMs = options.timeoutMs;
  }

  /** Open (or create) the state and a client instance over it. */
  async open(create: boolean): Promise<void> {
    const seams = new FaultySeams(() => this.offline, this.#connector);
    let store: LocalState;
    if (this.storeKind === "memory") {
      if (create) {
        const id = IdentityKeyPair.generate();
        this.#memory = new MemoryLocalState({
          username: this.name,
          server: this.#server.addr,
          identitySeed: id.exportPrivateKey(),
          identityPublic: id.publicKey,
        });
        id.destroy();
      } else {
        this.#memory = this.#memory!.reopen();
      }
      store = this.#memory;
    } else {
      // real file I/O and key stretching: virtual time stands still meanwhile (no frame
      // moves), so the other clients' background work cannot interleave differently
      if (this.#clock) {
        await this.#clock.idle();
        this.#clock.busy++;
      }
      try {
        store = await openLocalStore(this.statePath, this.password, {
          create,
          username: this.name,
          server: this.#server.addr,
          kdf: FAST_KDF,
        });
      } finally {
        if (this.#clock) this.#clock.busy--;
      }
      const disk = this.#disk!;
      (store as ClientStore).onDurableCommit = () => disk.image();
      disk.image(true); // opening (creating, migrating) commits durably
    }
    const instance = ++this.instance;
    const wrapped = seams.wrapStore(store);
    this.seams = seams;
    this.client = QpqClient.create({
      store: wrapped,
      password: this.password,
      caCertPem: this.#server.certPem,
      server: this.#server.addr,
      timeoutMs: this.#timeoutMs,
      connect: seams.connect,
      keyStretching: FAST_KSF,
      ...(this.#clock ? { now: () => this.#clock!.now() + this.skewMs, timers: this.#clock } : {}),
      // the simulation checks MLS and delivery invariants; consent only hides what a
      // request holds (the same receive path runs), so its clients accept every Welcome
      acceptFrom: "anyone",
      onEvent: (e) => this.#onEvent(instance, seams, e as unknown as AnyEvent),
    });
  }

  #onEvent(instance: number, seams: FaultySeams, e: AnyEvent): void {
    // a dead instance shows nothing any more (its process is gone)
    if (seams.dead || instance !== this.instance) return;
    const conv = (e.conversation as { name?: string } | undefined)?.name ?? "";
    if (e.kind === "message") {
      const m = e.message as SeenMessage;
      if (m.direction === "in") this.shown.set(m.body, (this.shown.get(m.body) ?? 0) + 1);
      this.#remember(`message ${conv} ${m.sender}: ${m.body}`);
    } else if (e.kind === "warning" || e.kind === "progress") {
      const text = String(e.text ?? "");
      if (e.kind === "warning") {
        this.warnings.push(text);
        if (this.warnings.length > 200) this.warnings.shift();
      }
      this.#remember(`${e.kind} ${text}`);
    } else if (e.kind === "joined") {
      this.#remember(`joined ${conv} (by ${String(e.inviter)})`);
    } else if (e.kind === "members") {
      this.#remember(
        `members ${conv} +[${String(e.added)}] -[${String(e.removed)}] by ${String(e.by)}`,
      );
    } else if (e.kind === "removed") {
      this.#remember(`removed from ${conv} by ${String(e.by)}`);
    } else {
      this.otherKinds.set(e.kind, (this.otherKinds.get(e.kind) ?? 0) + 1);
      const fields = Object.entries(e)
        .filter(([k, v]) => k !== "kind" && k !== "conversation" && typeof v !== "object")
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(" ");
      this.#remember(`${e.kind} ${conv} ${fields}`);
    }
  }

  #remember(line: string): void {
    this.recent.push(`[i${this.instance}] ${line}`);
    if (this.recent.length > 60) this.recent.shift();
  }

  /** Register the account (first instance only) and subscribe to push. */
  async register(): Promise<void> {
    await this.client.register({ authToken: "devtoken" });
    await this.client.subscribe();
  }

  /**
   * Crash (if the armed fault did not already) and start a new instance from the same
   * files, then do what a starting client does: session, flush the outbox, subscribe, sync.
   * `power` (a file store): the power failed at that moment, so the files are what the
   * last durable commit left (commits made `{ durable: false }` since then are lost).
   */
  async crashAndRestart(step: number, power = false): Promise<void> {
    const old = this.client;
    if (power) this.#disk?.cut();
    if (!this.seams.dead) this.seams.crash(power ? "power cut" : "at rest");
    this.crashSteps.push(step);
    // the old object may still have timers (reconnect back-off): stop them; its store is
    // closed already, so nothing it does reaches the disk
    await old.close().catch(() => {});
    // a power cut: the files are what the last durable commit left
    if (power) this.#disk?.restore();
    await this.open(false);
    await this.startUp();
  }

  /** What a (re)started client does before anything else. */
  async startUp(): Promise<void> {
    if (this.offline) return;
    await this.client.ensureSession();
    await this.client.flushOutbox();
    await this.client.subscribe();
    await this.client.sync();
  }

  /** Network down: connections drop, connects fail. */
  goOffline(): void {
    this.offline = true;
    this.seams.dropLinks();
  }

  /** Network back: catch up like a client that regained its connection. */
  async comeBack(): Promise<void> {
    this.offline = false;
    await this.startUp();
  }

  /**
   * The history of a conversation (empty when this client has no such conversation): all of
   * it, or its newest `count` messages.
   */
  history(ref: string, count = 1_000_000): SeenMessage[] {
    try {
      return this.client.history(ref, count) as SeenMessage[];
    } catch (e) {
      if ((e as { code?: string }).code === "not_found") return [];
      throw e;
    }
  }

  /** Close for good. */
  async close(): Promise<void> {
    // an actor whose setup failed has no client yet
    await this.client?.close().catch(() => {});
  }
}
