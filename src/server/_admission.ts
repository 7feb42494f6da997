/**
 * Connection admission: who gets a connection slot. Connections not logged in
 * ("strangers") are counted per source address and in total, so strangers can neither
 * take every slot nor keep logged-in users out.
 *
 * ```
 * new connection ─▶ source has max_unauthenticated_per_source strangers? ─▶ refused ("from your address")
 *                ─▶ strangers hold max_unauthenticated_connections?     ─▶ oldest stranger closed, admitted
 *                ─▶ max_connections in all?                             ─▶ refused ("Server busy")
 *                ─▶ admitted as a stranger ──login/resume──▶ logged in ──logout/expiry──▶ stranger
 * ```
 *
 * Pure bookkeeping: the server closes what {@link Admission.admit} says to evict.
 *
 * @module
 */

/** The limits {@link Admission} enforces. */
export interface AdmissionLimits {
  /** Connections in all. */
  maxConnections: number;
  /** Connections not logged in, in all. */
  maxUnauthenticated: number;
  /** Connections not logged in from one source (see {@link sourceOf}). */
  maxUnauthenticatedPerSource: number;
}

/** What {@link Admission.admit} decided. */
export type AdmitResult<T> =
  | { kind: "admitted"; evicted: T | undefined }
  | { kind: "busy" }
  | { kind: "source_full" };

/** Slot bookkeeping for connections of type `T`. */
export class Admission<T> {
  #limits: AdmissionLimits;
  /** Strangers and their sources, oldest first (Map order is insertion order). */
  #strangers = new Map<T, string>();
  #perSource = new Map<string, number>();
  #sources = new Map<T, string>();
  #loggedIn = new Set<T>();

  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
  }

  /** Connections counted (strangers and logged in). */
  get size(): number {
    return this.#strangers.size + this.#loggedIn.size;
  }

  /** Connections not logged in. */
  get strangers(): number {
    return this.#strangers.size;
  }

  /** Strangers from `source`. */
  strangersFrom(source: string): number {
    return this.#perSource.get(source) ?? 0;
  }

  /** Admit a new connection from `source` as a stranger, or say why not. */
  admit(conn: T, source: string): AdmitResult<T> {
    const l = this.#limits;
    if (this.strangersFrom(source) >= l.maxUnauthenticatedPerSource) return { kind: "source_full" };
    let evicted: T | undefined;
    if (this.#strangers.size >= l.maxUnauthenticated) {
      evicted = this.#strangers.keys().next().value;
      if (evicted !== undefined) this.remove(evicted);
    }
    if (this.size >= l.maxConnections) return { kind: "busy" };
    this.#sources.set(conn, source);
    this.#addStranger(conn, source);
    return { kind: "admitted", evicted };
  }

  /** The connection logged in (login or resume): it no longer counts as a stranger. */
  loggedIn(conn: T): void {
    if (!this.#sources.has(conn) || this.#loggedIn.has(conn)) return;
    this.#removeStranger(conn);
    this.#loggedIn.add(conn);
  }

  /** The connection logged out (or its session ended): a stranger again, the newest. */
  loggedOut(conn: T): void {
    const source = this.#sources.get(conn);
    if (source === undefined || !this.#loggedIn.delete(conn)) return;
    this.#addStranger(conn, source);
  }

  /** The connection is gone (closed or evicted). */
  remove(conn: T): void {
    this.#removeStranger(conn);
    this.#loggedIn.delete(conn);
    this.#sources.delete(conn);
  }

  #addStranger(conn: T, source: string): void {
    this.#strangers.set(conn, source);
    this.#perSource.set(source, this.strangersFrom(source) + 1);
  }

  #removeStranger(conn: T): void {
    const source = this.#strangers.get(conn);
    if (source === undefined) return;
    this.#strangers.delete(conn);
    const n = this.strangersFrom(source) - 1;
    if (n > 0) this.#perSource.set(source, n);
    else this.#perSource.delete(source);
  }
}

/**
 * The source a remote address counts against: an IPv4 address itself (also when written
 * as an IPv4-mapped IPv6 address), an IPv6 address by its /64 (one subscriber's prefix).
 */
export function sourceOf(hostname: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(hostname);
  if (mapped) return mapped[1]!;
  if (!hostname.includes(":")) return hostname;
  const bare = hostname.replace(/%.*$/, "").toLowerCase();
  const [head = "", tail = ""] = bare.split("::", 2) as [string, string?];
  const h = head === "" ? [] : head.split(":");
  const t = tail === "" ? [] : tail.split(":");
  const groups = bare.includes("::")
    ? [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t]
    : h;
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":") + "::/64";
}
