/**
 * The outside review's attacks on the record, replayed against the real `custos` executable:
 * someone with write access to the data directory edits the database with SQL (cuts the log,
 * rewrites its history, deletes a policy or a budget, re-enables a key, inserts an admin token,
 * puts an older copy back), and both `custos audit verify --audit-key` and `custos serve` must
 * refuse what they find, with a sentence. A running vault must refuse the same rows when they
 * change under it. Each case failed on the code before the audit anchor and row MACs.
 */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, custos, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';
import { chainHash } from '../../src/audit/chain.js';
import type { AuditDraft } from '../../src/core/types.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'tamper test passphrase' };
const { dir, cleanup } = tempDir();
let base = '';
let auditKey = '';
let token = '';
let copies = 0;

/** A copy of the base vault (as a backup or an attacker's working copy would be), modes kept strict. */
function copyVault(from = base): string {
  const to = join(dir, `copy-${++copies}`);
  cpSync(from, to, { recursive: true });
  chmodSync(to, 0o700);
  for (const f of readdirSync(to)) chmodSync(join(to, f), 0o600);
  return to;
}

function sql(dataDir: string, f: (db: Database.Database) => void): void {
  const db = new Database(join(dataDir, 'custos.db'));
  try {
    f(db);
  } finally {
    db.close();
  }
}

/** `audit verify` with the key `init` printed: must exit 1 and say why. */
function verifyRefuses(dataDir: string, why: RegExp): void {
  const r = custos(['audit', 'verify', '--data-dir', dataDir, '--audit-key', auditKey]);
  assert.equal(r.status, 1, `audit verify should fail:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, why);
}

function verifyPasses(dataDir: string, extra: string[] = []): string {
  const r = custos(['audit', 'verify', '--data-dir', dataDir, '--audit-key', auditKey, ...extra]);
  assert.equal(r.status, 0, `audit verify should pass:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** `serve` must stop before listening, exit 5 (corrupt or rolled back), and say why. */
function serveRefuses(dataDir: string, why: RegExp): void {
  const r = spawnSync(process.execPath, [BIN, 'serve', '--data-dir', dataDir, '--port', '0'], { env: { ...process.env, ...PASSENV }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 5, `serve should refuse:\n${r.stdout}${r.stderr}`);
  assert.match(r.stderr, why);
  assert.doesNotMatch(r.stdout + r.stderr, /"msg":"listening"/);
}

/** Rewrites the hash chain from `fromSeq` on, as an attacker can with only the public algorithm. */
function rechain(db: Database.Database, fromSeq: number): void {
  const rows = db.prepare('SELECT * FROM audit WHERE seq >= ? ORDER BY seq').all(fromSeq) as Array<Record<string, unknown>>;
  const prev = db.prepare('SELECT seq, hash FROM audit WHERE seq = ?').get(fromSeq - 1) as { seq: number; hash: Buffer } | undefined;
  let head: { seq: number; hash: Uint8Array } = prev ? { seq: prev.seq, hash: new Uint8Array(prev.hash) } : { seq: 0, hash: new Uint8Array(32) };
  for (const r of rows) {
    const d: AuditDraft = { requestId: r.request_id as string, principal: r.principal as string, operation: r.operation as string, keyId: r.key_id as string | null, keyLabel: r.key_label as string | null, outcome: r.outcome as AuditDraft['outcome'], reason: r.reason as string | null, details: JSON.parse(r.details as string) };
    const h = chainHash(head, r.seq as number, r.ts as string, d);
    db.prepare('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?').run(Buffer.from(head.hash), Buffer.from(h), r.seq);
    head = { seq: r.seq as number, hash: h };
  }
}

before(async () => {
  base = join(dir, 'vault');
  const init = custos(['init', '--data-dir', base, '--scrypt-log-n', '10'], PASSENV);
  assert.equal(init.status, 0, init.stderr);
  token = /Admin API token[^\n]*\n\s+(\S+)/.exec(init.stdout)![1]!;
  auditKey = /Audit public key[^\n]*\n\s+([0-9a-f]{64})/.exec(init.stdout)![1]!;
  const s = await serve(['--data-dir', base], PASSENV);
  try {
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    const ok = (args: string[]) => {
      const r = custos(args, api);
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
      return r;
    };
    for (const k of ['hot', 'gated', 'off']) ok(['keys', 'create', '--label', k, '--algorithm', 'ed25519']);
    ok(['keys', 'create', '--label', 'val', '--algorithm', 'ed25519', '--purpose', 'consensus']);
    const gate = join(dir, 'gate.json');
    writeFileSync(gate, JSON.stringify({ id: 'gate', applies_to: { keys: ['gated'] }, rules: [{ type: 'approval', approvers: ['token:alice'], required: 1 }] }));
    ok(['policy', 'upload', gate]);
    const limit = join(dir, 'limit.json');
    writeFileSync(limit, JSON.stringify({ id: 'limit', applies_to: { keys: ['hot'] }, rules: [{ id: 'rl', type: 'rate_limit', limit: 2, window: '1h' }] }));
    ok(['policy', 'upload', limit]);
    const msg = join(dir, 'msg');
    writeFileSync(msg, 'hello');
    ok(['sign', '--key', 'hot', '--in', msg]);
    ok(['sign', '--key', 'hot', '--in', msg]);
    assert.equal(custos(['sign', '--key', 'hot', '--in', msg], api).status, 4, 'the third signature is over the rate limit');
    ok(['keys', 'disable', 'off']);
    const state = join(dir, 'state.json');
    writeFileSync(state, JSON.stringify({ height: '100', round: 0, step: 2 }));
    ok(['privval', 'import-state', '--key', 'val', '--chain-id', 'test-chain', '--in', state]);
  } finally {
    assert.equal(await s.stop('SIGTERM'), 0);
  }
  // The untouched vault verifies, and its rows match the clean stop's anchor.
  assert.match(verifyPasses(base), /every protected row matches it/);
});

after(() => cleanup());

test('entries cut from the end, with the checkpoints that cover them, are refused (finding 1)', () => {
  const v = copyVault();
  sql(v, (db) => {
    const { n } = db.prepare('SELECT max(seq) AS n FROM audit').get() as { n: number };
    db.prepare('DELETE FROM audit WHERE seq > ?').run(n - 6);
    db.prepare('DELETE FROM audit_checkpoints WHERE seq > ?').run(n - 6);
  });
  verifyRefuses(v, /ends at entry \d+, but the audit anchor .* vouches for entry \d+/);
  serveRefuses(v, /older or shorter than the one this vault wrote/);
});

test('a log cut down to its first entry is refused (finding 1)', () => {
  const v = copyVault();
  sql(v, (db) => {
    db.exec('DELETE FROM audit WHERE seq > 1; DELETE FROM audit_checkpoints WHERE seq > 1;');
  });
  verifyRefuses(v, /ends at entry 1/);
  serveRefuses(v, /ends at entry 1/);
});

test('an edited entry with the chain recomputed and every checkpoint deleted is refused (finding 2)', () => {
  const v = copyVault();
  sql(v, (db) => {
    db.prepare("UPDATE audit SET outcome = 'denied', reason = 'policy_denied' WHERE seq = (SELECT min(seq) FROM audit WHERE operation = 'sign' AND outcome = 'ok')").run();
    rechain(db, 2);
    db.exec('DELETE FROM audit_checkpoints');
  });
  verifyRefuses(v, /no signed checkpoint/);
  serveRefuses(v, /not the one the audit anchor .* vouches for|no signed checkpoint/);
});

test('a rewritten history that keeps the first checkpoint still differs from the anchor (finding 2)', () => {
  const v = copyVault();
  sql(v, (db) => {
    db.prepare("UPDATE audit SET key_label = 'someone-else' WHERE seq = (SELECT min(seq) FROM audit WHERE operation = 'sign')").run();
    rechain(db, 2);
    db.exec('DELETE FROM audit_checkpoints WHERE seq > 1');
  });
  verifyRefuses(v, /not the one the audit anchor .* vouches for/);
  serveRefuses(v, /not the one the audit anchor .* vouches for/);
});

test('a deleted approval policy, a refilled budget, a re-enabled key and an inserted admin token are refused at rest (finding 3)', () => {
  const cases: Array<[string, (db: Database.Database) => void]> = [
    ['approval policy deleted', (db) => db.exec("DELETE FROM meta WHERE name LIKE 'policy.gate.%'")],
    ['rate-limit state deleted', (db) => db.exec("DELETE FROM meta WHERE name LIKE 'policy_state.%'")],
    ['disabled key set active', (db) => db.exec("UPDATE keys SET state = 'active' WHERE label = 'off'")],
    ['watermark deleted', (db) => db.exec('DELETE FROM watermarks')],
    [
      'admin token inserted',
      (db) =>
        db.prepare("INSERT INTO api_tokens (id, name, hash, role, created_at) VALUES ('tok_evil', 'evil', ?, 'admin', '2026-12-01T00:00:00Z')").run(createHash('sha256').update('custos_chosen_by_attacker').digest()),
    ],
  ];
  for (const [what, edit] of cases) {
    const v = copyVault();
    sql(v, edit);
    // After a clean stop nothing may differ from the anchor's digest of the rows...
    verifyRefuses(v, /protected rows differ from that stop's signed anchor/);
    // ...and serve checks every row's MAC and every table's count as well.
    serveRefuses(v, /edited outside Custos|changed outside Custos|rows were (deleted|inserted)/);
    rmSync(v, { recursive: true, force: true });
    void what;
  }
});

test('rows changed under a running vault are refused and raise the alarm metric, never obeyed (finding 3)', async () => {
  const v = copyVault();
  const s = await serve(['--data-dir', v], PASSENV);
  try {
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    const msg = join(dir, 'msg');
    // An admin token inserted with SQL is not an admin: the request fails closed.
    sql(v, (db) =>
      db.prepare("INSERT INTO api_tokens (id, name, hash, role, created_at) VALUES ('tok_evil', 'evil', ?, 'admin', '2026-12-01T00:00:00Z')").run(createHash('sha256').update('custos_chosen_by_attacker').digest()),
    );
    const evil = await fetch(`${s.url}/v1/keys`, { headers: { authorization: 'Bearer custos_chosen_by_attacker' } });
    assert.equal(evil.status, 500);
    assert.equal(((await evil.json()) as { code: string }).code, 'database_corrupt:row_mac');
    // A disabled key set back to active does not sign.
    sql(v, (db) => db.exec("UPDATE keys SET state = 'active' WHERE label = 'off'"));
    const off = custos(['sign', '--key', 'off', '--in', msg], api);
    assert.equal(off.status, 5, off.stderr);
    assert.match(off.stderr, /does not match its MAC/);
    // A budget deleted to refill it: the count of rows says one is missing.
    sql(v, (db) => db.exec("DELETE FROM meta WHERE name LIKE 'policy_state.%'"));
    const hot = custos(['sign', '--key', 'hot', '--in', msg], api);
    assert.equal(hot.status, 5, hot.stderr);
    assert.match(hot.stderr, /rows were deleted outside Custos/);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(metrics, /custos_integrity_alarms_total\{table="api_tokens",problem="mac_missing"\} [1-9]/);
    assert.match(metrics, /custos_integrity_alarms_total\{table="keys",problem="mac_mismatch"\} [1-9]/);
    assert.match(s.output(), /a protected row failed its integrity check/);
  } finally {
    await s.stop('SIGKILL');
  }
});

test('an older copy of the database is refused; with its older anchor too, an off-host anchor still catches it', async () => {
  const v = copyVault();
  const older = copyVault(v);
  const s = await serve(['--data-dir', v], PASSENV);
  try {
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    for (const k of ['later-1', 'later-2']) assert.equal(custos(['keys', 'create', '--label', k, '--algorithm', 'ed25519'], api).status, 0);
  } finally {
    assert.equal(await s.stop('SIGTERM'), 0);
  }
  const anchor = custos(['audit', 'anchor', '--data-dir', v]);
  assert.equal(anchor.status, 0, anchor.stderr);
  const offHost = join(dir, 'anchor-offhost.json');
  writeFileSync(offHost, anchor.stdout);
  // The database put back from the older copy, the anchor left as it is.
  for (const f of ['custos.db', 'custos.db-wal', 'custos.db-shm']) rmSync(join(v, f), { force: true });
  cpSync(join(older, 'custos.db'), join(v, 'custos.db'));
  chmodSync(join(v, 'custos.db'), 0o600);
  verifyRefuses(v, /ends at entry \d+, but the audit anchor/);
  serveRefuses(v, /older or shorter/);
  // An operator who restored that backup on purpose accepts it, on the record.
  const accepted = copyVault(v);
  const acc = custos(['audit', 'accept-database', '--data-dir', accepted], PASSENV);
  assert.equal(acc.status, 0, acc.stderr);
  assert.match(acc.stderr, /import the\s+newest watermark/);
  const again = await serve(['--data-dir', accepted], PASSENV);
  assert.equal(await again.stop('SIGTERM'), 0);
  assert.match(custos(['audit', 'tail', '--data-dir', accepted, '-n', '10']).stdout, /anchor_replaced\s.*ok \(database_rolled_back:truncated\)/);
  verifyPasses(accepted);
  // Database and anchor put back together: the host alone cannot tell (README), an
  // off-host copy of the newer anchor can.
  cpSync(join(older, 'custos.anchor'), join(v, 'custos.anchor'));
  chmodSync(join(v, 'custos.anchor'), 0o600);
  verifyPasses(v);
  const r = custos(['audit', 'verify', '--data-dir', v, '--audit-key', auditKey, '--anchor', offHost]);
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stdout, /anchor-offhost\.json .* vouches for entry/);
});

test('a missing anchor file is refused by serve and by audit verify', () => {
  const v = copyVault();
  rmSync(join(v, 'custos.anchor'));
  verifyRefuses(v, /anchor .* is missing/);
  serveRefuses(v, /anchor .* is missing/);
});

test('a consensus key with a watermark refuses raw signing over the API (finding 4)', async () => {
  const v = copyVault();
  const s = await serve(['--data-dir', v], PASSENV);
  try {
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    const msg = join(dir, 'prevote');
    writeFileSync(msg, 'a conflicting prevote at height 100, round 0');
    const r = custos(['sign', '--key', 'val', '--in', msg], api);
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /val is a consensus key: it does not sign raw payloads/);
    const tail = custos(['audit', 'tail', '--data-dir', v, '--json', '-n', '5']);
    assert.match(tail.stdout, /"operation":"sign","key_id":"key_\w+","key_label":"val","outcome":"denied","reason":"key_purpose"/);
  } finally {
    await s.stop('SIGTERM');
  }
});

test('a key whose only rule is an amount limit signs no digest or message; upload warns (finding 7)', async () => {
  const v = copyVault();
  const s = await serve(['--data-dir', v], PASSENV);
  try {
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    assert.equal(custos(['keys', 'create', '--label', 'amt', '--algorithm', 'secp256k1'], api).status, 0);
    const doc = join(dir, 'amount.json');
    writeFileSync(doc, JSON.stringify({ id: 'amount', applies_to: { keys: ['amt'] }, rules: [{ type: 'amount_limit', limit: 100000 }] }));
    const up = custos(['policy', 'upload', doc], api);
    assert.equal(up.status, 0, up.stderr);
    assert.match(up.stderr, /warning: No rule of policy amount judges raw signatures, digest signatures, .* they are DENIED/);
    const digest = join(dir, 'digest');
    writeFileSync(digest, createHash('sha256').update('x').digest());
    const d = custos(['sign', '--key', 'amt', '--digest', '--in', digest], api);
    assert.equal(d.status, 4, d.stderr);
    assert.match(d.stderr, /cannot judge a digest request/);
    const m = custos(['sign', '--key', 'amt', '--in', digest], api);
    assert.equal(m.status, 4, m.stderr);
  } finally {
    await s.stop('SIGTERM');
  }
});

/** The values of one row, as an attacker saves them to put back later. */
function saveRow(dataDir: string, table: string, where: string): Record<string, unknown> {
  let row: Record<string, unknown> | undefined;
  sql(dataDir, (db) => (row = db.prepare(`SELECT * FROM ${table} WHERE ${where}`).get() as Record<string, unknown>));
  assert.ok(row, `${table} ${where}`);
  return row!;
}

function putBack(dataDir: string, table: string, row: Record<string, unknown>, where: string): void {
  const cols = Object.keys(row);
  sql(dataDir, (db) => {
    db.prepare(`DELETE FROM ${table} WHERE ${where}`).run();
    db.prepare(`INSERT INTO ${table} (${cols.join(',')}) VALUES (${cols.map(() => '?').join(',')})`).run(...cols.map((c) => row[c] as never));
  });
}

test('row MACs cannot be stripped: a downgraded database is refused, with or without its anchor (review finding: integrity downgrade)', () => {
  const strip = (db: Database.Database) => {
    db.exec("UPDATE meta SET value = '2' WHERE name = 'schema_version'");
    for (const t of ['keys', 'api_tokens', 'watermarks', 'meta', 'audit']) db.exec(`UPDATE ${t} SET mac = NULL`);
    db.exec("DELETE FROM meta WHERE name LIKE 'integrity.%'");
    db.prepare("INSERT INTO api_tokens (id, name, hash, role, created_at) VALUES ('tok_evil', 'evil', ?, 'admin', '2026-12-01T00:00:00Z')").run(createHash('sha256').update('custos_chosen_by_attacker').digest());
  };
  const kept = copyVault();
  sql(kept, strip);
  serveRefuses(kept, /carries no row MACs, yet an audit anchor beside it says this vault had them: they were stripped/);
  const up = custos(['upgrade', '--data-dir', kept], PASSENV);
  assert.equal(up.status, 5, up.stdout + up.stderr);
  assert.match(up.stderr, /stripped outside Custos. Do not upgrade it/);
  const gone = copyVault();
  sql(gone, strip);
  rmSync(join(gone, 'custos.anchor'));
  serveRefuses(gone, /carries no row MACs: .*custos upgrade/);
  // A deleted schema_version row is an edit too, never a new database.
  const noVersion = copyVault();
  sql(noVersion, (db) => db.exec("DELETE FROM meta WHERE name = 'schema_version'"));
  serveRefuses(noVersion, /no schema_version row/);
});

test('a row put back from an older copy is refused, while running and at the next start (review finding: no freshness)', async () => {
  const v = copyVault();
  const old = saveRow(v, 'watermarks', "chain_id = 'test-chain'");
  const s = await serve(['--data-dir', v], PASSENV);
  try {
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    const state = join(dir, 'state-200.json');
    writeFileSync(state, JSON.stringify({ height: '200', round: 0, step: 2 }));
    assert.equal(custos(['privval', 'import-state', '--key', 'val', '--chain-id', 'test-chain', '--in', state], api).status, 0);
    // The watermark at 100, with its genuine MAC, put back under the running vault.
    putBack(v, 'watermarks', old, "chain_id = 'test-chain'");
    const lower = join(dir, 'state-150.json');
    writeFileSync(lower, JSON.stringify({ height: '150', round: 0, step: 2 }));
    const r = custos(['privval', 'import-state', '--key', 'val', '--chain-id', 'test-chain', '--in', lower], api);
    assert.equal(r.status, 5, r.stdout + r.stderr);
    assert.match(r.stderr, /is an older copy of itself/);
    assert.match(await (await fetch(`${s.url}/metrics`)).text(), /custos_integrity_alarms_total\{table="watermarks",problem="replayed"\} [1-9]/);
  } finally {
    await s.stop('SIGKILL');
  }
  // After a crash (no clean anchor): the keyed digest of the rows tells at the next start.
  serveRefuses(v, /not the ones this vault last wrote/);
});

/** Appends `n` chain-valid entries shaped like those of a sealed daemon, as an attacker can. */
function forgeSealedEntries(dataDir: string, n: number): void {
  sql(dataDir, (db) => {
    const insert = db.prepare('INSERT INTO audit (seq, ts, request_id, principal, operation, key_id, key_label, outcome, reason, details, prev_hash, hash, mac) VALUES (?,?,?,?,?,NULL,NULL,?,?,?,?,?,NULL)');
    const top = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: Buffer };
    let h: { seq: number; hash: Uint8Array } = { seq: top.seq, hash: new Uint8Array(top.hash) };
    for (let i = 0; i < n; i++) {
      const d: AuditDraft = { requestId: `f${i}`, principal: 'unauthenticated', operation: 'unseal', keyId: null, keyLabel: null, outcome: 'denied', reason: 'invalid_share', details: {} };
      const seq = h.seq + 1;
      const ts = new Date().toISOString();
      const hash = chainHash(h, seq, ts, d);
      insert.run(seq, ts, d.requestId, d.principal, d.operation, d.outcome, d.reason, '{}', Buffer.from(h.hash), Buffer.from(hash));
      h = { seq, hash };
    }
  });
}

test('a deleted budget with its count row, and an older row hidden behind a flood of forged unseal entries, are refused (review findings: counts, unseal flood)', async () => {
  const noCount = copyVault();
  sql(noCount, (db) => db.exec("DELETE FROM meta WHERE name LIKE 'policy_state.%'; DELETE FROM meta WHERE name = 'integrity.count.meta'"));
  serveRefuses(noCount, /count of meta rows is missing|changed outside Custos|protected rows differ/);
  // Entries shaped like a sealed daemon's change no row: alone they do not stop the vault,
  // and `audit tail` shows them as unauthenticated.
  const flood = copyVault();
  forgeSealedEntries(flood, 1001);
  const started = await serve(['--data-dir', flood], PASSENV);
  await started.stop('SIGTERM');
  assert.match(custos(['audit', 'tail', '--data-dir', flood, '-n', '1', '--json']).stdout, /"principal":"unauthenticated","operation":"unseal".*"authenticated":false/);
  // An attacker saves the key row while it is active, the operator disables the key again,
  // and the old row is put back behind 1,001 forged entries.
  const v = copyVault();
  const s = await serve(['--data-dir', v], PASSENV);
  let active: Record<string, unknown>;
  try {
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    assert.equal(custos(['keys', 'enable', 'off'], api).status, 0);
    active = saveRow(v, 'keys', "label = 'off'");
    assert.equal(custos(['keys', 'disable', 'off'], api).status, 0);
  } finally {
    assert.equal(await s.stop('SIGTERM'), 0);
  }
  putBack(v, 'keys', active, "label = 'off'");
  forgeSealedEntries(v, 1001);
  serveRefuses(v, /not the ones this vault last wrote|differ from that stop's signed anchor/);
});

test('an audit entry appended with SQL under a running vault is refused, never chained onto or checkpointed (review finding: forged entries)', async () => {
  const v = copyVault();
  const s = await serve(['--data-dir', v], PASSENV);
  try {
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    sql(v, (db) => {
      const head = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: Buffer };
      const d: AuditDraft = { requestId: 'forged', principal: 'token:cfo', operation: 'approve', keyId: null, keyLabel: null, outcome: 'ok', reason: null, details: {} };
      const ts = new Date().toISOString();
      const hash = chainHash({ seq: head.seq, hash: new Uint8Array(head.hash) }, head.seq + 1, ts, d);
      db.prepare('INSERT INTO audit (seq, ts, request_id, principal, operation, key_id, key_label, outcome, reason, details, prev_hash, hash, mac) VALUES (?,?,?,?,?,NULL,NULL,?,NULL,?,?,?,NULL)').run(
        head.seq + 1, ts, d.requestId, d.principal, d.operation, d.outcome, '{}', head.hash, Buffer.from(hash),
      );
    });
    const r = custos(['keys', 'create', '--label', 'after-forgery', '--algorithm', 'ed25519'], api);
    assert.equal(r.status, 5, r.stdout + r.stderr);
    assert.match(r.stderr, /appended outside Custos/);
  } finally {
    await s.stop('SIGTERM');
  }
  // The stop's checkpoint did not sign it: the next start refuses the log.
  serveRefuses(v, /appended outside Custos|broken at entry/);
});

test('custos upgrade adds row MACs to a database from before them, once, on the operator\'s word', async () => {
  // A database as a Custos from before row MACs left it: no MACs, no counts, no state row,
  // schema 2, no anchor.
  const v = copyVault();
  sql(v, (db) => {
    // The schema-2 layout itself: no mac or wseq columns at all.
    db.exec("UPDATE meta SET value = '2' WHERE name = 'schema_version'");
    db.exec("DELETE FROM meta WHERE name LIKE 'integrity.%' OR name = 'policy_generation'");
    db.exec('DROP INDEX IF EXISTS keys_wseq');
    db.exec('DROP INDEX IF EXISTS api_tokens_wseq');
    db.exec('ALTER TABLE api_tokens DROP COLUMN terms');
    for (const t of ['keys', 'api_tokens', 'watermarks', 'meta', 'audit']) db.exec(`ALTER TABLE ${t} DROP COLUMN mac`);
    for (const t of ['keys', 'api_tokens', 'watermarks', 'meta']) db.exec(`ALTER TABLE ${t} DROP COLUMN wseq`);
  });
  rmSync(join(v, 'custos.anchor'));
  serveRefuses(v, /custos upgrade --data-dir/);
  const up = custos(['upgrade', '--data-dir', v], PASSENV);
  assert.equal(up.status, 0, up.stdout + up.stderr);
  assert.match(up.stderr, /on your word/);
  assert.equal(custos(['upgrade', '--data-dir', v], PASSENV).status, 64, 'a second upgrade has nothing to do');
  const s = await serve(['--data-dir', v], PASSENV);
  assert.equal(await s.stop('SIGTERM'), 0);
  assert.match(custos(['audit', 'tail', '--data-dir', v, '-n', '30']).stdout, /operator\s+integrity_enabled/);
  assert.match(verifyPasses(v), /every protected row matches it/);
});

test('a copy of the database taken right after init, put back without its anchor, is refused (review finding: init-time rollback)', async () => {
  const { dir: d, cleanup: c } = tempDir();
  try {
    const v = join(d, 'vault');
    assert.equal(custos(['init', '--data-dir', v, '--scrypt-log-n', '10'], PASSENV).status, 0);
    const atInit = join(d, 'at-init.db');
    cpSync(join(v, 'custos.db'), atInit);
    const s = await serve(['--data-dir', v], PASSENV);
    await s.stop('SIGTERM');
    rmSync(join(v, 'custos.db'));
    cpSync(atInit, join(v, 'custos.db'));
    chmodSync(join(v, 'custos.db'), 0o600);
    rmSync(join(v, 'custos.anchor'));
    serveRefuses(v, /audit anchor .* is missing/);
  } finally {
    c();
  }
});

test('policies dropped with their generation under a running vault are refused, not bypassed (review finding: generation)', async () => {
  const v = copyVault();
  const s = await serve(['--data-dir', v], PASSENV);
  try {
    const api = { ...PASSENV, CUSTOS_ADDR: s.url, CUSTOS_TOKEN: token };
    sql(v, (db) => db.exec("DELETE FROM meta WHERE name LIKE 'policy.%' OR name = 'policy_generation'"));
    const r = custos(['sign', '--key', 'gated', '--in', join(dir, 'msg')], api);
    assert.equal(r.status, 5, r.stdout + r.stderr);
    assert.match(r.stderr, /rows were deleted outside Custos/);
  } finally {
    await s.stop('SIGKILL');
  }
});
