/**
 * Lightning backups end to end, with real processes: a `custos serve` streams every state
 * record to an HTTP PUT endpoint; it is killed; a fresh vault is rebuilt with `custos lightning
 * restore` from the seed and the backup alone, and every object's latest state matches. A
 * tampered, reordered or rolled-back backup is refused with a sentence naming the object and
 * the version (exit 1), and nothing is restored.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { custos, custosAsync, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';
import { CustosClient } from '../../src/client/client.js';
import { generateMnemonic, masterFromSeed, seedFromMnemonic } from '../../src/wallet/hd.js';
import { nodeKeys } from '../../src/lightning/keys.js';
import { recordName } from '../../src/lightning/backup.js';
import { recordHash, sealRecord } from '../../src/crypto/lightning-record.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'lightning test passphrase' };

function init(dataDir: string): string {
  const r = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV);
  assert.equal(r.status, 0, r.stderr);
  return /custos_[A-Za-z0-9_-]{43}/.exec(r.stdout)![0];
}

/** An endpoint that stores what is PUT to it under `root` (as an object store would). */
function putServer(root: string): Promise<{ url: string; close(): Promise<void>; puts: () => number }> {
  let puts = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'PUT' || req.headers.authorization !== 'Bearer backup-secret') return void res.writeHead(403).end();
      const path = join(root, decodeURIComponent(new URL(req.url!, 'http://x').pathname.replace(/^\/backup\//, '')));
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, Buffer.concat(chunks));
      puts++;
      res.writeHead(201, { connection: 'close' }).end();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}/backup`, close: () => new Promise((r) => (server.close(() => r()), server.closeAllConnections())), puts: () => puts })));
}

test('a node killed, restored from the seed and its HTTP backup alone: every object matches; a tampered, reordered or rolled-back backup is refused', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = tempDir();
  const store = join(dir, 'put-store');
  const endpoint = await putServer(store);
  const mnemonic = generateMnemonic();
  writeFileSync(join(dir, 'mnemonic'), mnemonic, { mode: 0o600 });
  const a = join(dir, 'a');
  const tokenA = init(a);
  writeFileSync(join(a, 'backup-auth'), 'Bearer backup-secret', { mode: 0o600 });
  appendFileSync(join(a, 'custos.toml'), `\n[lightning]\nbackup = "${endpoint.url}"\nbackup_authorization_file = "backup-auth"\n`);
  const latest = new Map<string, Buffer>();
  // A record this node's vault could have written (its record key, from the mnemonic), at
  // version `version` following the stored record at `after`: what a failed commit leaves.
  const orphan = (d: string, version: number, after: number) => {
    const prevFile = readdirSync(d).find((f) => f.startsWith(`${String(after).padStart(20, '0')}-`))!;
    const master = masterFromSeed(seedFromMnemonic(mnemonic), 'secp256k1');
    const bytes = sealRecord(nodeKeys(master).signer, { objectId: 'chan-2', version: BigInt(version), prevHash: recordHash(readFileSync(join(d, prevFile))), ciphertext: randomBytes(64) });
    return { name: recordName(BigInt(version), bytes), bytes };
  };
  const place = (d: string, o: { name: string; bytes: Uint8Array }) => writeFileSync(join(d, o.name), o.bytes);
  let s = await serve(['--data-dir', a], PASSENV);
  try {
    const r = custos(['keys', 'create-hd', '--label', 'ln', '--purpose', 'lightning', '--mnemonic-file', join(dir, 'mnemonic')], { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: tokenA });
    assert.equal(r.status, 0, r.stderr);
    const client = new CustosClient({ addr: s.url, token: tokenA });
    for (let v = 1; v <= 4; v++) {
      for (let c = 0; c < 5; c++) {
        const st = randomBytes(200 + v * 10);
        await client.lightningPut('ln', `chan-${c}`, BigInt(v), st);
        latest.set(`chan-${c}`, st);
      }
    }
    assert.equal(endpoint.puts(), 20, 'every record reached the backup endpoint');
  } finally {
    await s.stop('SIGKILL');
  }
  const nodeDirs = readdirSync(store);
  assert.equal(nodeDirs.length, 1);
  const node = nodeDirs[0]!;

  // A fresh vault, the seed, the backup: everything back.
  const b = join(dir, 'b');
  const tokenB = init(b);
  s = await serve(['--data-dir', b], PASSENV);
  try {
    const api = { CUSTOS_ADDR: s.url, CUSTOS_TOKEN: tokenB };
    const r = await custosAsync(['lightning', 'restore', '--backup', store, '--mnemonic-file', join(dir, 'mnemonic'), '--label', 'ln', '--json'], api);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { node, objects: 5, records: 20, side_branches: 0, applied: 5, kept: 0, refused: [] });
    const client = new CustosClient({ addr: s.url, token: tokenB });
    for (const [id, st] of latest) {
      const got = await client.lightningGet('ln', id);
      assert.equal(got.version, '4');
      assert.deepEqual(Buffer.from(got.state, 'base64'), st, `${id} matches`);
    }
    // Run again: nothing newer to apply.
    const again = await custosAsync(['lightning', 'restore', '--backup', store, '--mnemonic-file', join(dir, 'mnemonic'), '--label', 'ln', '--json'], api);
    assert.equal(JSON.parse(again.stdout).kept, 5);

    // Damaged copies of the backup, each refused with the object and version named.
    const files = (c: string) => join(dir, c, node, 'chan-2');
    const damaged = (name: string, f: (d: string) => void) => {
      cpSync(store, join(dir, name), { recursive: true });
      f(files(name));
      return join(dir, name);
    };
    const v = (n: number, d = files('put-store')) => readdirSync(d).find((f) => f.startsWith(`${String(n).padStart(20, '0')}-`))!;
    const cases: Array<[string, string, RegExp]> = [
      [damaged('tampered', (d) => {
        const p = join(d, v(3));
        const bytes = readFileSync(p);
        bytes[bytes.length - 80]! ^= 1;
        writeFileSync(p, bytes);
      }), 'tampered', /object chan-2, version 3: its signature does not verify/],
      [damaged('reordered', (d) => {
        const two = readFileSync(join(d, v(2)));
        writeFileSync(join(d, v(2)), readFileSync(join(d, v(3))));
        writeFileSync(join(d, v(3)), two);
      }), 'reordered', /object chan-2, version 2: the record filed there is version 3/],
      [damaged('rolled-back', (d) => writeFileSync(join(d, v(4)), readFileSync(join(d, v(2))))), 'rolled back', /object chan-2, version 4: the record filed there is version 2, older than version 3 before it \(rolled back\)/],
      [damaged('moved', (d) => writeFileSync(join(d, v(3)), readFileSync(join(dir, 'reordered', node, 'chan-1', v(3, join(dir, 'reordered', node, 'chan-1')))))), 'moved', /object chan-2, version 3: the record there is object chan-1's/],
      [damaged('gap', (d) => rmSync(join(d, v(3)))), 'a record missing', /object chan-2, version 4: it follows no record before it/],
      // Two records at the newest version, neither followed: which was committed cannot be known.
      [damaged('ambiguous', (d) => place(d, orphan(d, 4, 3))), 'ambiguous', /object chan-2, version 4: 2 records, version 4 \(record [0-9a-f]{16}\) and version 4 \(record [0-9a-f]{16}\), follow the history.s last record .* --prefer chan-2=<record>/],
    ];
    // A write whose commit failed left a record beside version 3 that nothing follows: left out.
    const sideways = damaged('side-branch', (d) => place(d, orphan(d, 3, 2)));
    const side = await custosAsync(['lightning', 'restore', '--backup', sideways, '--mnemonic-file', join(dir, 'mnemonic'), '--label', 'ln', '--check-only', '--json'], api);
    assert.equal(side.status, 0, side.stderr);
    assert.equal(JSON.parse(side.stdout).side_branches, 1);
    for (const [where, what, message] of cases) {
      const bad = await custosAsync(['lightning', 'restore', '--backup', where, '--mnemonic-file', join(dir, 'mnemonic'), '--label', 'ln2'], api);
      assert.equal(bad.status, 1, `${what}: ${bad.stderr}`);
      assert.match(bad.stderr, message, what);
      assert.match(bad.stderr, /Nothing was restored/);
    }
    // --partial: the objects whose history checks out are restored, the damaged one listed (exit 1).
    const partial = await custosAsync(['lightning', 'restore', '--backup', join(dir, 'tampered'), '--mnemonic-file', join(dir, 'mnemonic'), '--label', 'ln4', '--partial', '--json'], api);
    assert.equal(partial.status, 1, partial.stderr);
    const ps = JSON.parse(partial.stdout) as { applied: number; refused: Array<{ object: string }> };
    assert.equal(ps.applied, 4);
    assert.deepEqual(ps.refused.map((f) => f.object), ['chan-2']);
    // The operator, told by the node which state it holds, names it: the ambiguity is settled.
    const committed = v(4).slice(21, 37);
    const pick = await custosAsync(['lightning', 'restore', '--backup', join(dir, 'ambiguous'), '--mnemonic-file', join(dir, 'mnemonic'), '--label', 'ln5', '--prefer', `chan-2=${committed}`, '--check-only', '--json'], api);
    assert.equal(pick.status, 0, pick.stderr);
    assert.equal(JSON.parse(pick.stdout).objects, 5);
    // Nothing was restored by the refused runs: no ln2 key.
    const info = custos(['lightning', 'info', 'ln2'], api);
    assert.equal(info.status, 3, info.stderr);
    // Another seed finds nothing of its own in the backup.
    writeFileSync(join(dir, 'other'), generateMnemonic(), { mode: 0o600 });
    const other = await custosAsync(['lightning', 'restore', '--backup', store, '--mnemonic-file', join(dir, 'other'), '--label', 'ln3', '--check-only'], api);
    assert.equal(other.status, 3, other.stderr);
    assert.match(other.stderr, /no records of this node/);
  } finally {
    await s.stop();
    await endpoint.close();
    cleanup();
  }
});
