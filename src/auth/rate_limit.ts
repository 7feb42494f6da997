/**
 * Rate limiting: logins per user and per connection, and any other per-key allowance
 * (KeyPackage fetches per requester and per target use {@link TokenBucketLimiter}).
 *
 * {@link RateLimiter} is the interface (async, so a limiter shared by several server
 * nodes, e.g. on the database, can replace the in-memory one); {@link SlidingWindowLimiter}
 * is an exact sliding-window log kept in memory: a key may make `limit` attempts in any
 * `windowMs` interval. Memory is bounded: at most `limit` timestamps per key and at most
 * `maxKeys` keys. A key is forgotten only once all its attempts have left the window, so
 * no flood of fresh keys can reset a lockout; when all `maxKeys` keys are still inside
 * their window, a new key is refused until the oldest one expires (fail closed).
 *
 * Unknown usernames are limited exactly like known ones, so the limiter reveals nothing
 * about which users exist.
 *
 * @module
 */

import { AuthError } from "../errors.ts";
import {
  LOGIN_ATTEMPTS_PER_CONNECTION,
  LOGIN_ATTEMPTS_PER_USER,
  LOGIN_WINDOW_MS,
  MAX_RATE_LIMIT_KEYS,
} from "../limits.ts";

/** The outcome of one attempt. */
export interface RateDecision {
  /** True when the attempt may go ahead (it has been counted). */
  allowed: boolean;
  /** Attempts left in the current window after this one. */
  remaining: number;
  /** When refused: how long until the next attempt would be allowed (ms); else 0. */
  retryAfterMs: number;
}

/** Counts attempts per key. */
export interface RateLimiter {
  /** Count one attempt for `key` (only if allowed) and say whether it is allowed. */
  hit(key: string): Promise<RateDecision>;
  /** Forget `key` (e.g. after a successful login). */
  reset(key: string): Promise<void>;
}

/** Options of {@link SlidingWindowLimiter}. */
export interface SlidingWindowOptions {
  /** Attempts allowed per window. */
  limit: number;
  /** Window length (ms). */
  windowMs: number;
  /** Current time (ms, default `Date.now`). */
  clock?: () => number;
  /** Most keys tracked (default {@link MAX_RATE_LIMIT_KEYS}); new keys are refused past it. */
  maxKeys?: number;
}

/** In-memory exact sliding-window limiter. */
export class SlidingWindowLimiter implements RateLimiter {
  readonly #limit: number;
  readonly #window: number;
  readonly #clock: () => number;
  readonly #maxKeys: number;
  /** key -> attempt times, oldest first; Map order = by last counted attempt, oldest first. */
  #hits = new Map<string, number[]>();

  constructor(options: SlidingWindowOptions) {
    if (!Number.isSafeInteger(options.limit) || options.limit < 1) {
      throw new RangeError("limit must be a positive integer");
    }
    if (!(options.windowMs > 0)) throw new RangeError("windowMs must be positive");
    this.#limit = options.limit;
    this.#window = options.windowMs;
    this.#clock = options.clock ?? Date.now;
    this.#maxKeys = options.maxKeys ?? MAX_RATE_LIMIT_KEYS;
  }

  hit(key: string): Promise<RateDecision> {
    const now = this.#clock();
    const since = now - this.#window;
    const known = this.#hits.get(key);
    if (known === undefined && this.#hits.size >= this.#maxKeys) {
      this.#dropExpired(since);
      if (this.#hits.size >= this.#maxKeys) {
        // Full of keys still inside their window: evicting one would reset its count (a
        // locked-out victim's, say), so the new key waits until the oldest one expires.
        const oldest = this.#hits.values().next().value!;
        return Promise.resolve({
          allowed: false,
          remaining: 0,
          retryAfterMs: Math.max(1, oldest[oldest.length - 1]! + this.#window - now),
        });
      }
    }
    const times = (known ?? []).filter((t) => t > since);
    if (times.length >= this.#limit) {
      this.#hits.set(key, times); // keeps its place: order is by last counted attempt
      return Promise.resolve({
        allowed: false,
        remaining: 0,
        retryAfterMs: times[0]! + this.#window - now,
      });
    }
    times.push(now);
    this.#hits.delete(key); // re-inserted: the most recent attempt is last
    this.#hits.set(key, times);
    return Promise.resolve({
      allowed: true,
      remaining: this.#limit - times.length,
      retryAfterMs: 0,
    });
  }

  /**
   * Forget keys whose every attempt has left the window (their state equals a fresh key's).
   * Keys are ordered by their last counted attempt, so the expired ones are at the front.
   */
  #dropExpired(since: number): void {
    for (const [k, times] of this.#hits) {
      if (times.length > 0 && times[times.length - 1]! > since) break;
      this.#hits.delete(k);
    }
  }

  reset(key: string): Promise<void> {
    this.#hits.delete(key);
    return Promise.resolve();
  }

  /** Keys currently tracked (for tests and health). */
  get size(): number {
    return this.#hits.size;
  }
}

/** Options of {@link TokenBucketLimiter}. */
export interface TokenBucketOptions {
  /** Attempts allowed at once (the bucket's size). */
  burst: number;
  /** Time to refill an empty bucket (ms): `burst` attempts per `refillMs` on average. */
  refillMs: number;
  /** Current time (ms, default `Date.now`). */
  clock?: () => number;
  /** Most keys tracked (default {@link MAX_RATE_LIMIT_KEYS}); new keys are refused past it. */
  maxKeys?: number;
}

/**
 * In-memory token bucket: up to `burst` attempts at once, refilled evenly over `refillMs`.
 * Two numbers per key, so large allowances (a member adding hundreds of people) cost no
 * more memory than small ones. Like {@link SlidingWindowLimiter}, a key is forgotten only
 * once its bucket is full again (its state equals a fresh key's), and when all `maxKeys`
 * keys are still refilling a new key is refused until the oldest one is full.
 */
export class TokenBucketLimiter implements RateLimiter {
  readonly #burst: number;
  readonly #perMs: number;
  readonly #clock: () => number;
  readonly #maxKeys: number;
  /** key -> tokens at `at`; Map order = by last counted attempt, oldest first. */
  #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: TokenBucketOptions) {
    if (!Number.isSafeInteger(options.burst) || options.burst < 1) {
      throw new RangeError("burst must be a positive integer");
    }
    if (!(options.refillMs > 0)) throw new RangeError("refillMs must be positive");
    this.#burst = options.burst;
    this.#perMs = options.burst / options.refillMs;
    this.#clock = options.clock ?? Date.now;
    this.#maxKeys = options.maxKeys ?? MAX_RATE_LIMIT_KEYS;
  }

  #tokens(b: { tokens: number; at: number }, now: number): number {
    return Math.min(this.#burst, b.tokens + (now - b.at) * this.#perMs);
  }

  hit(key: string): Promise<RateDecision> {
    const now = this.#clock();
    let b = this.#buckets.get(key);
    if (b === undefined && this.#buckets.size >= this.#maxKeys) {
      for (const [k, old] of this.#buckets) {
        if (this.#tokens(old, now) < this.#burst) break;
        this.#buckets.delete(k);
      }
      if (this.#buckets.size >= this.#maxKeys) {
        const oldest = this.#buckets.values().next().value!;
        const wait = (this.#burst - this.#tokens(oldest, now)) / this.#perMs;
        return Promise.resolve({ allowed: false, remaining: 0, retryAfterMs: Math.ceil(wait) });
      }
    }
    const tokens = b === undefined ? this.#burst : this.#tokens(b, now);
    if (tokens < 1) {
      const wait = Math.max(1, Math.ceil((1 - tokens) / this.#perMs));
      return Promise.resolve({ allowed: false, remaining: 0, retryAfterMs: wait });
    }
    b = { tokens: tokens - 1, at: now };
    this.#buckets.delete(key); // re-inserted: the most recent attempt is last
    this.#buckets.set(key, b);
    return Promise.resolve({ allowed: true, remaining: Math.floor(b.tokens), retryAfterMs: 0 });
  }

  reset(key: string): Promise<void> {
    this.#buckets.delete(key);
    return Promise.resolve();
  }

  /** Keys currently tracked (for tests). */
  get size(): number {
    return this.#buckets.size;
  }
}

/** Options of {@link LoginRateLimiter}. */
export interface LoginRateLimiterOptions {
  /** Per-username limiter (default: {@link LOGIN_ATTEMPTS_PER_USER} per {@link LOGIN_WINDOW_MS}). */
  perUser?: RateLimiter;
  /** Per-connection limiter (default: {@link LOGIN_ATTEMPTS_PER_CONNECTION} per window). */
  perConnection?: RateLimiter;
  /** Clock for the default limiters. */
  clock?: () => number;
}

/** Applies both login limits; call {@link LoginRateLimiter.check} before each login start. */
export class LoginRateLimiter {
  readonly #user: RateLimiter;
  readonly #conn: RateLimiter;

  constructor(options: LoginRateLimiterOptions = {}) {
    const clock = options.clock ?? Date.now;
    this.#user = options.perUser ??
      new SlidingWindowLimiter({
        limit: LOGIN_ATTEMPTS_PER_USER,
        windowMs: LOGIN_WINDOW_MS,
        clock,
      });
    this.#conn = options.perConnection ??
      new SlidingWindowLimiter({
        limit: LOGIN_ATTEMPTS_PER_CONNECTION,
        windowMs: LOGIN_WINDOW_MS,
        clock,
      });
  }

  /**
   * Count one login attempt for `username` from `connectionId`. The connection is checked
   * first, so a connection already refused does not use up the user's allowance.
   *
   * @throws {AuthError} code "rate_limited" when either limit is exhausted
   */
  async check(username: string, connectionId: string): Promise<void> {
    const c = await this.#conn.hit(connectionId);
    if (!c.allowed) throw limited(c.retryAfterMs);
    const u = await this.#user.hit(username);
    if (!u.allowed) throw limited(u.retryAfterMs);
  }

  /** Clear the user's count after a successful login. */
  succeeded(username: string): Promise<void> {
    return this.#user.reset(username);
  }
}

function limited(retryAfterMs: number): AuthError {
  const s = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new AuthError(`Too many login attempts: try again in ${s} s`, { code: "rate_limited" });
}
