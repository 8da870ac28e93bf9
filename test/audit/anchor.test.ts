/**
 * The audit anchor file is read from disk, where an attacker may have written anything: its
 * decoder accepts only a statement signed by this vault's audit key, and rejects every other
 * input (garbage, truncations, edited fields, another vault's anchor, oversized files) with
 * `database_rolled_back:anchor_invalid`, never another exception.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditSigner } from '../../src/audit/chain.js';
import { decodeAnchor, encodeAnchor, readAnchorFile, writeAnchorFile, type Anchor } from '../../src/audit/anchor.js';
import { CustosError } from '../../src/core/errors.js';

const signer = new AuditSigner(new Uint8Array(32).fill(3), 'vault-a');
const anchor: Anchor = {
  vaultId: 'vault-a',
  seq: 42,
  hash: new Uint8Array(32).fill(9),
  ts: '2026-12-04T12:00:00.000Z',
  clean: true,
  rows: { tables: { keys: 'a'.repeat(64), api_tokens: 'b'.repeat(64), watermarks: 'c'.repeat(64), meta: 'd'.repeat(64) }, counts: { keys: 3, api_tokens: 1, watermarks: 0, meta: 4 } },
};
const text = encodeAnchor(anchor, signer);
const isInvalid = (e: unknown) => e instanceof CustosError && e.fullCode === 'database_rolled_back:anchor_invalid';

test('an anchor round-trips, and only under its own vault id and audit key', () => {
  const back = decodeAnchor(text, 'vault-a', signer.publicKey, 'x');
  assert.equal(back.seq, 42);
  assert.deepEqual(back.hash, anchor.hash);
  assert.deepEqual(back.rows, anchor.rows);
  assert.throws(() => decodeAnchor(text, 'vault-b', signer.publicKey, 'x'), isInvalid);
  const other = new AuditSigner(new Uint8Array(32).fill(4), 'vault-a');
  assert.throws(() => decodeAnchor(text, 'vault-a', other.publicKey, 'x'), isInvalid);
});

test('every edited field breaks the signature', () => {
  const o = JSON.parse(text) as Record<string, unknown>;
  const edits: Array<Record<string, unknown>> = [
    { seq: 41 },
    { hash: 'e'.repeat(64) },
    { ts: '2030-01-01T00:00:00.000Z' },
    { clean: false },
    { rows: { ...anchor.rows, counts: { ...anchor.rows!.counts, keys: 4 } } },
    { rows: undefined },
  ];
  for (const e of edits) assert.throws(() => decodeAnchor(JSON.stringify({ ...o, ...e }), 'vault-a', signer.publicKey, 'x'), isInvalid, JSON.stringify(e));
});

test('garbage, truncations and mutations are refused with a typed error, never a crash', () => {
  for (let i = 0; i < text.trimEnd().length; i++) {
    try {
      decodeAnchor(text.slice(0, i), 'vault-a', signer.publicKey, 'x');
      assert.fail(`a truncation at ${i} was accepted`);
    } catch (e) {
      assert.ok(isInvalid(e), String(e));
    }
  }
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json(), fc.tuple(fc.nat(text.length - 1), fc.string({ minLength: 1, maxLength: 4 })).map(([at, s]) => text.slice(0, at) + s + text.slice(at + 1))), (input) => {
      try {
        // Accepted only when it is the same signed statement (a change of whitespace, say).
        const back = decodeAnchor(input, 'vault-a', signer.publicKey, 'x');
        return back.seq === anchor.seq && back.ts === anchor.ts && back.clean === anchor.clean;
      } catch (e) {
        return isInvalid(e);
      }
    }),
    { numRuns: 2000 },
  );
});

test('the file is written 0600, never moves backwards, and an oversized file is refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'custos-anchor-'));
  try {
    const path = join(dir, 'custos.anchor');
    writeAnchorFile(path, anchor, signer, signer.publicKey);
    writeAnchorFile(path, { ...anchor, seq: 40, clean: false }, signer, signer.publicKey);
    assert.equal(readAnchorFile(path, 'vault-a', signer.publicKey)!.seq, 42, 'an older head does not replace a newer anchor');
    writeAnchorFile(path, { ...anchor, seq: 50, clean: false }, signer, signer.publicKey);
    assert.equal(readAnchorFile(path, 'vault-a', signer.publicKey)!.seq, 50);
    writeFileSync(path, 'x'.repeat(70_000));
    assert.throws(() => readAnchorFile(path, 'vault-a', signer.publicKey), isInvalid);
    assert.equal(readAnchorFile(join(dir, 'absent'), 'vault-a', signer.publicKey), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
