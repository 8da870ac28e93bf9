/**
 * The statements a SQL store runs, as values. The store's logic (row MACs, counts, the state
 * row, units and their savepoints: engine.ts) is written once, as generators that yield each
 * statement and receive its result; a driver runs them. SQLite's driver answers at once and
 * synchronously, so a SQLite transaction stays one uninterrupted piece of JavaScript; the
 * PostgreSQL driver awaits each answer from the server. Same logic, same bytes, two engines.
 *
 * Statements use `?` placeholders; a driver translates them for its database.
 */
export type Param = string | number | Buffer | null;

export interface Statement {
  op: 'get' | 'all' | 'run';
  sql: string;
  params: Param[];
}

/** A piece of store logic that runs statements and ends with a `T`. */
export type Q<T> = Generator<Statement, T, unknown>;

/** The first row, or undefined. */
export function* get<T>(sql: string, ...params: Param[]): Q<T | undefined> {
  return (yield { op: 'get', sql, params }) as T | undefined;
}

export function* all<T>(sql: string, ...params: Param[]): Q<T[]> {
  return (yield { op: 'all', sql, params }) as T[];
}

/** Returns the number of rows changed. */
export function* run(sql: string, ...params: Param[]): Q<number> {
  return (yield { op: 'run', sql, params }) as number;
}

/**
 * Runs a piece of logic synchronously with `exec` answering each statement; a statement's
 * failure is thrown into the logic at the statement, so its own try/catch (a unit's savepoint)
 * sees it.
 */
export function runSync<T>(q: Q<T>, exec: (s: Statement) => unknown): T {
  let step = q.next();
  while (!step.done) {
    let out: unknown;
    let failed = false;
    try {
      out = exec(step.value);
    } catch (e) {
      failed = true;
      out = e;
    }
    step = failed ? q.throw(out) : q.next(out);
  }
  return step.value;
}

/** The same, awaiting each answer (a database server). */
export async function runAsync<T>(q: Q<T>, exec: (s: Statement) => Promise<unknown>): Promise<T> {
  let step = q.next();
  while (!step.done) {
    let out: unknown;
    let failed = false;
    try {
      out = await exec(step.value);
    } catch (e) {
      failed = true;
      out = e;
    }
    step = failed ? q.throw(out) : q.next(out);
  }
  return step.value;
}
