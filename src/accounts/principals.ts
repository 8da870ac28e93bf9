/**
 * Principals and what they may do: a role bounds the operations, scopes narrow them to some
 * operations and some keys (label globs, tags). Every API token and every client certificate
 * is one such principal; the vault asks `authorize` before it touches a key for one, and the
 * HTTP front end before it runs a route. Internal principals (an ssh-agent socket, a privval
 * connection, the system) carry no scope: their configuration is their scope.
 *
 * Deny by default: a token principal without a scope, an operation its role does not allow,
 * or a key outside its globs and tags is refused with `forbidden`.
 */
import { CustosError } from '../core/errors.js';
import type { KeyRecord, Principal, Role, Scope } from '../core/types.js';

export const ROLES = ['admin', 'operator', 'signer', 'approver', 'auditor'] as const satisfies readonly Role[];

/**
 * What a request does, as scopes name it. `read` (list and show keys, public keys, watermarks)
 * comes with every key operation; `manage` is a key's lifecycle short of destroying it
 * (enable, disable, purpose, imported watermarks, agent restore).
 */
/**
 * `state`, `ecdh`, `decrypt`: a Lightning node's use of its key (state records and
 * reconciliation; key agreement; ECIES decryption), each given by name.
 */
export const OPERATIONS = ['read', 'sign', 'verify', 'export', 'create', 'destroy', 'manage', 'policy', 'approve', 'audit', 'state', 'ecdh', 'decrypt'] as const;
export type Operation = (typeof OPERATIONS)[number];

export function isOperation(s: string): s is Operation {
  return (OPERATIONS as readonly string[]).includes(s);
}

/** The most each role may be given. Only an admin manages principals, reloads, or sees HSM objects. */
export const ROLE_OPERATIONS: Record<Role, readonly Operation[]> = {
  admin: OPERATIONS,
  operator: ['read', 'create', 'destroy', 'manage', 'policy', 'verify', 'audit'],
  // Export is the one a signer is given only by name: a signer that can export is a key holder.
  signer: ['read', 'sign', 'verify', 'export', 'state', 'ecdh', 'decrypt'],
  approver: ['approve'],
  auditor: ['read', 'audit', 'verify'],
};

/** What a role gets when its scope names no operations. */
export const ROLE_DEFAULTS: Record<Role, readonly Operation[]> = { ...ROLE_OPERATIONS, signer: ['read', 'sign', 'verify'] };

/** Operations that act on one key: their scope includes the key's label and tags. */
const KEY_OPERATIONS: ReadonlySet<Operation> = new Set(['read', 'sign', 'verify', 'export', 'create', 'destroy', 'manage', 'state', 'ecdh', 'decrypt']);

/** A label glob: label characters, `*` (any run) and `?` (one character). */
export const KEY_GLOB_RE = /^[A-Za-z0-9._:@*?-]{1,64}$/;
export const TAG_RE = /^[A-Za-z0-9._:@-]{1,64}$/;

/**
 * The scope of a new or changed principal, checked: operations within the role (read added
 * to any key operation), globs and tags well formed. Admins take no scope: they can mint any
 * principal, so narrowing one would only look like a boundary.
 */
export function scopeFor(role: Role, given: { operations?: string[]; keys?: string[]; tags?: string[] } = {}): Scope {
  const bad = (m: string) => new CustosError('bad_request', m);
  if (role === 'admin' && (given.operations?.length || given.keys?.length || given.tags?.length)) {
    throw bad('An admin principal takes no scope (it could create an unscoped one); give the role operator, signer, approver or auditor.');
  }
  const ops = new Set<Operation>();
  for (const o of given.operations ?? ROLE_DEFAULTS[role]) {
    if (!isOperation(o)) throw bad(`Unknown operation "${o.slice(0, 32)}": one of ${OPERATIONS.join(', ')}.`);
    if (!ROLE_OPERATIONS[role].includes(o)) throw bad(`The role ${role} may not be given "${o}" (it may have ${ROLE_OPERATIONS[role].join(', ')}).`);
    ops.add(o);
  }
  const keys = [...new Set(given.keys ?? [])];
  const tags = [...new Set(given.tags ?? [])];
  // Policies, agent hiding and the principals' own records span every key: only a principal
  // without a key scope may hold them (a policy written by one scoped to app-* could retire
  // the approvals that guard treasury).
  if (keys.length > 0 || tags.length > 0) {
    if (given.operations?.includes('policy')) throw bad('"policy" spans every key: a principal that manages policies takes no key scope (--keys, --tags).');
    ops.delete('policy');
  }
  if (ops.size === 0) throw bad('A principal needs at least one operation.');
  if ([...ops].some((o) => KEY_OPERATIONS.has(o)) && ROLE_OPERATIONS[role].includes('read')) ops.add('read');
  if (keys.length > 32 || tags.length > 32) throw bad('At most 32 key globs and 32 tags.');
  for (const k of keys) if (!KEY_GLOB_RE.test(k)) throw bad(`"${k.slice(0, 64)}" is not a key glob: label characters with * and ?, 1–64 long.`);
  for (const t of tags) if (!TAG_RE.test(t)) throw bad(`"${t.slice(0, 64)}" is not a tag: letters, digits and . _ : @ -, 1–64 long.`);
  return { operations: OPERATIONS.filter((o) => ops.has(o)), keys: keys.sort(), tags: tags.sort() };
}

/**
 * Whether a label matches a glob: `*` any run, `?` one character, everything else literal.
 * Linear in practice, O(glob × label) at worst (the classic single-backtrack matcher), so no
 * glob an admin writes can stall the process as a backtracking regex would.
 */
export function matchesGlob(glob: string, label: string): boolean {
  let g = 0;
  let l = 0;
  let star = -1;
  let mark = 0;
  while (l < label.length) {
    if (g < glob.length && (glob[g] === '?' || glob[g] === label[l])) {
      g++;
      l++;
    } else if (g < glob.length && glob[g] === '*') {
      star = g++;
      mark = l;
    } else if (star >= 0) {
      g = star + 1;
      l = ++mark;
    } else return false;
  }
  while (g < glob.length && glob[g] === '*') g++;
  return g === glob.length;
}

/** A key's tags: its `tags` attribute, comma-separated (as policies read them). */
export function keyTags(key: Pick<KeyRecord, 'attributes'>): string[] {
  const t = key.attributes.tags;
  return typeof t === 'string' ? t.split(',').map((s) => s.trim()).filter((s) => s.length > 0) : [];
}

/** Unscoped: internal principals and admins (an account's session is scoped to its own keys). */
const unscoped = (p: Principal): boolean => (p.kind !== 'token' && p.kind !== 'account') || p.role === 'admin';

/** The account a key belongs to, if any (its `account` attribute, bound into its envelope). */
export const keyOwner = (key: Pick<KeyRecord, 'attributes'>): string | undefined => (typeof key.attributes.account === 'string' ? key.attributes.account : undefined);

/** A principal confined to some keys (by globs or tags): it may not act on what spans every key. */
export function hasKeyScope(p: Principal): boolean {
  return !unscoped(p) && (p.kind === 'account' || p.scope === undefined || p.scope.keys.length > 0 || p.scope.tags.length > 0);
}

/**
 * Refuses a new key outside the creator's own namespace: a scoped creator names keys within its
 * globs (so it needs some) and may tag them only with its own tags, so that it cannot plant a
 * key where another principal's globs or tags would pick it up (a verify-only `partner-acme`
 * that a wallet's signer then trusts).
 */
export function authorizeNewKey(p: Principal, key: Pick<KeyRecord, 'label' | 'attributes'>): void {
  authorize(p, 'create');
  // Only an account makes keys of its own (an admin importing a key it knows into an account
  // would hold the user's key), and an account makes no other keys.
  // Labels under `acc_` are the accounts' (`<account id>.<name>`): no one else squats them.
  if (keyOwner(key) !== undefined || p.kind === 'account' || key.label.startsWith('acc_')) {
    if (p.kind === 'account' && keyOwner(key) === p.account && key.label.startsWith(`${p.account}.`)) return;
    throw forbidden(p, p.kind === 'account' ? `create ${key.label}: an account makes keys of its own only` : `create ${key.label} for an account: only the account itself does`);
  }
  if (unscoped(p)) return;
  const s = p.scope!;
  if (s.keys.length === 0) throw forbidden(p, 'create keys: a scoped creator needs label globs (--keys) to name them within');
  if (!s.keys.some((g) => matchesGlob(g, key.label))) throw forbidden(p, `create ${key.label}: outside its label globs`);
  const extra = keyTags(key).filter((t) => !s.tags.includes(t));
  if (extra.length > 0) throw forbidden(p, `tag keys with ${extra.join(', ')}: only with its own tags`);
  if (s.tags.length > 0 && !keyInScope(p, key)) throw forbidden(p, `create keys without one of its tags (${s.tags.join(', ')})`);
}

/** Whether the principal may perform this kind of operation at all. */
export function permits(p: Principal, op: Operation): boolean {
  if (unscoped(p)) return true;
  return p.scope?.operations.includes(op) ?? false;
}

/** Whether a key (by its label and tags) is within the principal's scope. */
export function keyInScope(p: Principal, key: Pick<KeyRecord, 'label' | 'attributes'>): boolean {
  // An account's keys are its own: no admin, token or internal principal reads or uses them,
  // and an account's session has no other keys.
  const owner = keyOwner(key);
  if (owner !== undefined || p.kind === 'account') return owner !== undefined && p.kind === 'account' && p.account === owner;
  if (unscoped(p)) return true;
  const s = p.scope;
  if (!s) return false;
  if (s.keys.length > 0 && !s.keys.some((g) => matchesGlob(g, key.label))) return false;
  if (s.tags.length > 0) {
    const tags = keyTags(key);
    if (!s.tags.some((t) => tags.includes(t))) return false;
  }
  return true;
}

export function forbidden(p: Principal, what: string): CustosError {
  return new CustosError('forbidden', `${p.id} (${p.role ?? p.kind}) may not ${what}.`, { tag: 'scope' });
}

/** Refuses an operation the principal's role or scope does not include. */
export function authorize(p: Principal, op: Operation): void {
  if (!permits(p, op)) throw forbidden(p, op === 'audit' ? 'read the audit log' : op === 'policy' ? 'read or change policies' : op === 'approve' ? 'see or decide approvals' : op);
}


/**
 * For a reference that matched no key: a scoped principal is told `forbidden` unless the
 * reference is a label its globs allow, so that not-found never reveals which labels exist
 * outside its scope (the answer depends only on the keys it may see).
 */
export function refInScope(p: Principal, ref: string): boolean {
  if (unscoped(p)) return true;
  const s = p.scope;
  if (!s) return false;
  if (s.tags.length > 0) return false;
  return s.keys.length === 0 || s.keys.some((g) => matchesGlob(g, ref));
}

