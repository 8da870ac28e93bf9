/**
 * The audit log a page at a time, newest first, as a principal may read it: whole for one that
 * spans every key, and for one confined to some keys only the entries about those keys, read
 * in fixed windows so that nothing it gets depends on a row its scope hides.
 */
import type { AuditEntry, Principal } from '../core/types.js';
import type { AuditQuery, Store } from '../store/store.js';
import { authorize, hasKeyScope, keyInScope } from '../accounts/principals.js';

/** A key-scoped principal's audit page reads the log in windows of this many entries, at most this many windows. */
const SCOPED_AUDIT_WINDOW = 500;
const SCOPED_AUDIT_WINDOWS = 20;

/**
 * The newest entries, or those matching a filter, newest first, a page at a time (`next` is
 * the cursor for older ones). A principal confined to some keys sees only entries about
 * those keys (not refusals of references outside them, not principals' records), and what
 * it gets must not tell it what its scope hides: its filters are applied to what it may see
 * only, over fixed windows of the log, so neither the entries, their count nor `next`
 * depends on a hidden row.
 */
export async function auditPageFor(store: Store, q: AuditQuery, p?: Principal): Promise<{ entries: AuditEntry[]; next: number | null }> {
  if (p !== undefined) authorize(p, 'audit');
  if (p === undefined || !hasKeyScope(p)) {
    const entries = await store.auditQuery(q);
    return { entries, next: entries.length === q.limit ? entries[entries.length - 1]!.seq : null };
  }
  const keys = new Map<string, boolean>();
  const visible = async (e: AuditEntry) => {
    if (e.keyId === null) return false;
    if (!keys.has(e.keyId)) {
      const k = await store.findKey(e.keyId).catch(() => null);
      keys.set(e.keyId, k !== null && keyInScope(p, k));
    }
    return keys.get(e.keyId) === true;
  };
  const matches = (e: AuditEntry) =>
    (q.key === undefined || e.keyId === q.key || e.keyLabel === q.key) &&
    (q.principal === undefined || e.principal === q.principal) &&
    (q.operation === undefined || e.operation === q.operation) &&
    (q.outcome === undefined || e.outcome === q.outcome);
  const out: AuditEntry[] = [];
  let before = q.before;
  for (let window = 0; window < SCOPED_AUDIT_WINDOWS; window++) {
    const rows = await store.auditQuery({ limit: SCOPED_AUDIT_WINDOW, ...(before !== undefined ? { before } : {}) });
    for (const e of rows) {
      if (!(await visible(e)) || !matches(e)) continue;
      out.push(e);
      if (out.length === q.limit) return { entries: out, next: e.seq };
    }
    if (rows.length < SCOPED_AUDIT_WINDOW) return { entries: out, next: null };
    before = rows[rows.length - 1]!.seq;
    // Other requests go on between windows (a synchronous store would otherwise hold them).
    await new Promise((r) => setImmediate(r));
  }
  // Not filled: the cursor is where the windows stopped, which only the log's length decides.
  return { entries: out, next: before ?? null };
}
