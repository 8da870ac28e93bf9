/**
 * Ed25519 with expanded secrets (Tor key files and blinded onion keys, no seed), through the
 * vault's own sign/verify path, against the vectors in ../shared/vectors/tor-keyblind
 * (C tor's ed25519_vectors.inc and test_hs_common.c, identical in Arti).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { makeVault, type TestVault } from '../helpers/tmpvault.js';
import { ROOT } from '../helpers/process.js';

const FILE = join(ROOT, '..', 'shared', 'vectors', 'tor-keyblind', 'keyblind-vectors.json');
const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

let v: TestVault;
before(async () => {
  v = await makeVault();
});
after(async () => {
  await v.dispose();
});

async function importExpanded(secretHex: string) {
  const label = `tor-${randomUUID().slice(0, 8)}`;
  await v.vault.importKey(v.ctx(), { label, algorithm: 'ed25519-expanded', format: 'hex', material: new TextEncoder().encode(secretHex), exportable: false });
  return v.vault.getKey(label);
}

test('C tor ed25519 vectors: expanded and blinded keys give the published public keys and signatures', async (t) => {
  if (!existsSync(FILE)) return t.skip('Tor vectors come from ../shared/vectors/tor-keyblind (absent here)');
  const d = JSON.parse(readFileSync(FILE, 'utf8'));
  for (const vec of d.ctor_ed25519_vectors_inc.vectors as Array<Record<string, string>>) {
    const k = await importExpanded(vec.expanded_secret_key!);
    assert.equal(toHex(k.publicKey), vec.public_key);
    const msg = { kind: 'message' as const, bytes: hex(vec.public_key!) };
    const sig = await v.vault.sign({ ...v.ctx(), key: k.id, payload: msg, options: {}, context: {} });
    assert.equal(toHex(sig.signature), vec.self_signature_msg_is_public_key, 'signature over the public key');
    const blinded = await importExpanded(vec.blinded_expanded_secret_key!);
    assert.equal(toHex(blinded.publicKey), vec.blinded_public_key);
    const bs = await v.vault.sign({ ...v.ctx(), key: blinded.id, payload: msg, options: {}, context: {} });
    assert.equal((await v.vault.verify(v.ctx(), blinded.id, msg, bs.signature, {})).valid, true);
  }
});

test('onion-service blinding end-to-end vector: the blinded key signs as the published signature', async (t) => {
  if (!existsSync(FILE)) return t.skip('Tor vectors come from ../shared/vectors/tor-keyblind (absent here)');
  const e = JSON.parse(readFileSync(FILE, 'utf8')).ctor_hs_blinding_end_to_end;
  const id = await importExpanded(e.expanded_secret_key_a_RH);
  assert.equal(toHex(id.publicKey), e.public_key_A);
  const b = await importExpanded(e.blinded_expanded_secret_key);
  assert.equal(toHex(b.publicKey), e.blinded_public_key);
  const msg = { kind: 'message' as const, bytes: new TextEncoder().encode(e.derived_by_this_research.message_ascii) };
  const sig = await v.vault.sign({ ...v.ctx(), key: b.id, payload: msg, options: {}, context: {} });
  assert.equal(toHex(sig.signature), e.derived_by_this_research.signature);
});

test('a generated expanded key signs signatures that node:crypto verifies', async () => {
  const k = await v.vault.createKey(v.ctx(), { label: `tor-gen-${randomUUID().slice(0, 6)}`, algorithm: 'ed25519-expanded', exportable: false });
  const msg = { kind: 'message' as const, bytes: new TextEncoder().encode('relay descriptor') };
  const sig = await v.vault.sign({ ...v.ctx(), key: k.id, payload: msg, options: {}, context: {} });
  assert.equal((await v.vault.verify(v.ctx(), k.id, msg, sig.signature, {})).valid, true);
});
