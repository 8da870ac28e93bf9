/**
 * The Lightning state record (crypto/lightning-record.ts) and a backup's check
 * (lightning/backup.ts checkHistory): round trips, and every malformed, truncated, oversized,
 * tampered, reordered, rolled-back or forked input refused with a typed error (fast-check over
 * random histories).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { decodeRecord, encodeRecord, recordHash, sealRecord, verifyRecord, ZERO_HASH, MAX_VERSION } from '../../src/crypto/lightning-record.js';
import { checkHistory } from '../../src/lightning/backup.js';
import { isCustosError } from '../../src/core/errors.js';

const { privateKey: secret, publicKey: pub } = generateKeyPairSync('ed25519');
const { privateKey: other, publicKey: otherPub } = generateKeyPairSync('ed25519');

function history(id: string, n: number, start = 1n, signer = secret): Array<{ filedAs: bigint; bytes: Uint8Array }> {
  const out: Array<{ filedAs: bigint; bytes: Uint8Array }> = [];
  let prev: Uint8Array = ZERO_HASH;
  for (let i = 0; i < n; i++) {
    const v = start + BigInt(i);
    const bytes = sealRecord(signer, { objectId: id, version: v, prevHash: prev, ciphertext: randomBytes(40 + i) });
    out.push({ filedAs: v, bytes });
    prev = recordHash(bytes);
  }
  return out;
}

const tagOf = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    assert.ok(isCustosError(e), `a typed error, not ${String(e)}`);
    return e.tag ?? e.code;
  }
  return undefined;
};

test('a record round-trips and verifies; u64::MAX versions too', () => {
  for (const version of [0n, 1n, 2n ** 53n + 1n, MAX_VERSION]) {
    const bytes = sealRecord(secret, { objectId: 'chan:ab12_0', version, prevHash: ZERO_HASH, ciphertext: Uint8Array.of(1, 2, 3) });
    const r = decodeRecord(bytes);
    assert.equal(r.version, version);
    assert.equal(r.objectId, 'chan:ab12_0');
    assert.ok(verifyRecord(pub, r));
    assert.deepEqual(encodeRecord(r), bytes);
    assert.ok(!verifyRecord(otherPub, r), 'another key does not verify it');
  }
});

test('property: any byte flipped, any truncation, any extension is refused or fails verification; never a crash', () => {
  const bytes = sealRecord(secret, { objectId: 'o1', version: 7n, prevHash: randomBytes(32), ciphertext: randomBytes(100) });
  fc.assert(
    fc.property(fc.integer({ min: 0, max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
      const b = Uint8Array.from(bytes);
      b[i]! ^= x;
      let r;
      try {
        r = decodeRecord(b);
      } catch (e) {
        assert.ok(isCustosError(e) && e.tag === 'record_format');
        return;
      }
      assert.equal(verifyRecord(pub, r), false);
    }),
    { numRuns: 2000 },
  );
  for (let n = 0; n < bytes.length; n++) assert.equal(tagOf(() => decodeRecord(bytes.subarray(0, n))), 'record_format');
  assert.equal(tagOf(() => decodeRecord(Uint8Array.from([...bytes, 0]))), 'record_format');
  fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => void tagOf(() => decodeRecord(b))), { numRuns: 3000 });
  // An announced ciphertext longer than any state is refused before anything is read.
  const huge = Uint8Array.from(bytes);
  new DataView(huge.buffer).setUint32(6 + 2 + 8 + 32, 0xffffffff);
  assert.equal(tagOf(() => decodeRecord(huge)), 'record_format');
});

test('a sound history is accepted and its latest returned; it may start after version 1', () => {
  const h = history('o', 5);
  assert.equal(checkHistory(pub, 'o', h).latest.version, 5n);
  assert.equal(checkHistory(pub, 'o', h.slice(2)).latest.version, 5n);
});

test('property: tampering, reordering, rolling back, dropping a middle record or forking is refused, naming the object and version', () => {
  fc.assert(
    fc.property(fc.integer({ min: 3, max: 9 }), fc.nat(), fc.constantFrom('flip', 'swap', 'rollback', 'drop', 'fork', 'foreign', 'moved'), (n, pick, how) => {
      const h = history('obj-1', n);
      const i = 1 + (pick % (n - 2)); // a middle record
      let bad = h.map((r) => ({ ...r }));
      let want: string;
      if (how === 'flip') {
        const b = Uint8Array.from(bad[i]!.bytes);
        b[b.length - 70]! ^= 1;
        bad[i]!.bytes = b;
        want = 'backup_tampered';
      } else if (how === 'swap') {
        [bad[i]!.bytes, bad[i + 1]!.bytes] = [bad[i + 1]!.bytes, bad[i]!.bytes];
        want = 'backup_rolled_back|backup_reordered';
      } else if (how === 'rollback') {
        bad[n - 1]!.bytes = bad[i - 1]!.bytes;
        want = 'backup_rolled_back';
      } else if (how === 'drop') {
        bad = bad.filter((_, j) => j !== i);
        want = 'backup_chain';
      } else if (how === 'fork') {
        // A record at version i+1 signed by the same key but on another branch.
        const fork = sealRecord(secret, { objectId: 'obj-1', version: h[i]!.filedAs, prevHash: recordHash(h[i - 1]!.bytes), ciphertext: randomBytes(12) });
        bad[i]!.bytes = fork;
        want = 'backup_chain';
      } else if (how === 'foreign') {
        bad = history('obj-1', n, 1n, other);
        want = 'backup_tampered';
      } else {
        bad[i]!.bytes = history('obj-2', n)[i]!.bytes;
        want = 'backup_tampered';
      }
      try {
        checkHistory(pub, 'obj-1', bad);
        assert.fail(`${how} accepted`);
      } catch (e) {
        assert.ok(isCustosError(e), String(e));
        assert.match(e.tag ?? '', new RegExp(`^(${want})$`), `${how}: ${e.message}`);
        assert.match(e.message, /object obj-1, version \d+/);
      }
    }),
    { numRuns: 300 },
  );
});

test('side branches: a record nothing follows is left out (even a newer one off the history); two histories that both go on are refused', () => {
  const mk = (v: bigint, prev: Uint8Array) => sealRecord(secret, { objectId: 'o', version: v, prevHash: prev, ciphertext: randomBytes(20) });
  const r1 = mk(1n, ZERO_HASH);
  const r2 = mk(2n, recordHash(r1));
  const r3 = mk(3n, recordHash(r2));
  // A loser's version 5 built on version 1 (another writer lost the compare-and-set): left out; the latest is 3.
  const loser = mk(5n, recordHash(r1));
  const h = checkHistory(pub, 'o', [r1, r2, r3, loser].map((bytes) => ({ filedAs: decodeRecord(bytes).version, bytes })));
  assert.equal(h.latest.version, 3n);
  assert.equal(h.sideBranches, 1);
  // An orphan on top of the history's end is the newest state the node produced: taken.
  const ahead = mk(4n, recordHash(r3));
  assert.equal(checkHistory(pub, 'o', [r1, r2, r3, ahead].map((bytes) => ({ filedAs: decodeRecord(bytes).version, bytes }))).latest.version, 4n);
  // Two records on top of the history (the committed 3 and a loser's 4, both after 2): which was committed cannot be told.
  const rival = mk(4n, recordHash(r2));
  assert.equal(tagOf(() => checkHistory(pub, 'o', [r1, r2, r3, rival].map((bytes) => ({ filedAs: decodeRecord(bytes).version, bytes })))), 'backup_ambiguous');
  // Two histories from version 1, both going on: refused.
  const b2 = mk(2n, recordHash(r1));
  const b3 = mk(3n, recordHash(b2));
  assert.equal(tagOf(() => checkHistory(pub, 'o', [r1, r2, b2, r3, b3].map((bytes) => ({ filedAs: decodeRecord(bytes).version, bytes })))), 'backup_fork');
});

test('two histories are refused however far back they part (no window)', () => {
  const mk = (v: bigint, prev: Uint8Array) => sealRecord(secret, { objectId: 'o', version: v, prevHash: prev, ciphertext: randomBytes(8) });
  const main: Uint8Array[] = [mk(1n, ZERO_HASH)];
  for (let i = 2n; i <= 1500n; i++) main.push(mk(i, recordHash(main[main.length - 1]!)));
  // A branch off version 1, going on at versions 1600 and 1601.
  const b1 = mk(1600n, recordHash(main[0]!));
  const b2 = mk(1601n, recordHash(b1));
  assert.equal(tagOf(() => checkHistory(pub, 'o', [...main, b1, b2].map((bytes) => ({ filedAs: decodeRecord(bytes).version, bytes })))), 'backup_chain');
  // (Its first record's parent left the window, so it follows nothing known: refused all the same.)
  const c1 = mk(1501n, recordHash(main[1400]!));
  const c2 = mk(1502n, recordHash(c1));
  assert.equal(tagOf(() => checkHistory(pub, 'o', [...main, c1, c2].map((bytes) => ({ filedAs: decodeRecord(bytes).version, bytes })))), 'backup_fork');
});

test('a side branch beside the backup\'s first record is a sibling, not a broken chain', () => {
  const mk = (v: bigint, prev: Uint8Array) => sealRecord(secret, { objectId: 'o', version: v, prevHash: prev, ciphertext: randomBytes(8) });
  const orphan = mk(1n, ZERO_HASH);
  const first = mk(1n, ZERO_HASH);
  const second = mk(2n, recordHash(first));
  const h = checkHistory(pub, 'o', [orphan, first, second].map((bytes) => ({ filedAs: 1n + (bytes === second ? 1n : 0n), bytes })));
  assert.deepEqual([h.latest.version, h.sideBranches], [2n, 1]);
  // A target that starts mid-history, with an orphan beside its first record.
  const base = mk(7n, randomBytes(32));
  const o8 = mk(8n, recordHash(base));
  const c8 = mk(8n, recordHash(base));
  const c9 = mk(9n, recordHash(c8));
  const mid = checkHistory(pub, 'o', [o8, c8, c9].map((bytes) => ({ filedAs: decodeRecord(bytes).version, bytes })));
  assert.deepEqual([mid.latest.version, mid.sideBranches], [9n, 1]);
  // Two first records both going on: two histories.
  const d2 = mk(2n, recordHash(orphan));
  assert.equal(tagOf(() => checkHistory(pub, 'o', [orphan, first, second, d2].map((bytes) => ({ filedAs: decodeRecord(bytes).version, bytes })))), 'backup_fork');
});
