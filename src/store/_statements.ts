/**
 * Prepared-statement cache shared by the SQLite stores (server and client): one prepared
 * statement per SQL text, and typed get/all/run helpers.
 *
 * @module
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from "node:sqlite";

/** A result row. */
export type Row = Record<string, SQLInputValue>;

/** Prepared statements of one database connection, cached by SQL text. */
export class Statements {
  readonly #db: DatabaseSync;
  readonly #cache = new Map<string, StatementSync>();

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** The prepared statement for `sql` (prepared once). */
  prepare(sql: string): StatementSync {
    let s = this.#cache.get(sql);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      this.#cache.set(sql, s);
    }
    return s;
  }

  /** First row, or undefined. */
  get(sql: string, ...args: SQLInputValue[]): Row | undefined {
    return this.prepare(sql).get(...args) as Row | undefined;
  }

  /** All rows. */
  all(sql: string, ...args: SQLInputValue[]): Row[] {
    return this.prepare(sql).all(...args) as Row[];
  }

  /** Run a statement; returns the number of changed rows. */
  run(sql: string, ...args: SQLInputValue[]): number {
    return Number(this.prepare(sql).run(...args).changes);
  }

  /** Forget every prepared statement (before closing the database). */
  clear(): void {
    this.#cache.clear();
  }
}
