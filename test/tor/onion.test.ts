/**
 * Onion-service key blinding inside the vault (src/crypto/tor-blind.ts, vault/tor.ts), against
 * every vector in ../shared/vectors/tor-keyblind: C tor's ed25519 vectors (a given blinding
 * parameter), the end-to-end vector of C tor and Arti (h, A', a'‖RH', subcredential, a
 * signature), Arti's test keystore (the address and two periods' stored blinded keys), and tor's
 * own key files. Signatures by blinded keys verify under the blinded key with node:crypto. The
 * `tor_periods` policy rule limits which periods are signed; the key's purpose keeps it off
 * every other path.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPublicKey, verify as nodeVerify, randomBytes } from 'node:crypto';
import { makeVault, type TestVault } from '../helpers/tmpvault.js';
import { ROOT } from '../helpers/process.js';
import { blindPublicKeyWith, blindSecretWith, blindingParam, onionAddress, periodAt, subcredential } from '../../src/crypto/tor-blind.js';
import { encodeTagged } from '../../src/crypto/tor-cert.js';
import { prepareSigner } from '../../src/crypto/algorithms.js';
import { isCustosError } from '../../src/core/errors.js';

const FILE = join(ROOT, '..', 'shared', 'vectors', 'tor-keyblind', 'keyblind-vectors.json');
const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const verifies = (sig: Uint8Array, msg: Uint8Array, pub: Uint8Array) =>
  nodeVerify(null, msg, createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]), format: 'der', type: 'spki' }), sig);
const code = (c: string) => (e: unknown) => isCustosError(e) && (e.fullCode === c || e.code === c);

let v: TestVault;
before(async () => {
  v = await makeVault();
});
after(async () => {
  await v.dispose();
});

const vectors = () => JSON.parse(readFileSync(FILE, 'utf8'));
const hsFile = (expanded: string) => encodeTagged('ed25519v1-secret', 'type0', hex(expanded));

test("C tor's ed25519 vectors: a given blinding parameter gives the published blinded keys", (t) => {
  if (!existsSync(FILE)) return t.skip('Tor vectors come from ../shared/vectors/tor-keyblind (absent here)');
  for (const vec of vectors().ctor_ed25519_vectors_inc.vectors as Array<Record<string, string>>) {
    const h = hex(vec.blinding_param_h_unclamped!);
    assert.equal(toHex(blindPublicKeyWith(hex(vec.public_key!), h)), vec.blinded_public_key);
    assert.equal(toHex(blindSecretWith(hex(vec.expanded_secret_key!), h)), vec.blinded_expanded_secret_key);
  }
});

test('the end-to-end vector through the vault: h, the blinded key, the subcredential and the signature', async (t) => {
  if (!existsSync(FILE)) return t.skip('Tor vectors come from ../shared/vectors/tor-keyblind (absent here)');
  const e = vectors().ctor_hs_blinding_end_to_end;
  const period = { num: e.period_num, length: e.period_length_minutes };
  assert.equal(toHex(blindingParam(hex(e.public_key_A), period)), e.h_unclamped);
  assert.notEqual(e.derived_by_this_research.h_if_trailing_nul_is_omitted_WRONG, e.h_unclamped);
  assert.equal(periodAt(new Date('1973-05-20T01:50:33Z')).num, 1234, 'the time period of the vector');
  await v.vault.tor.importOnionService(v.ctx(), { label: 'hs-vector', file: hsFile(e.expanded_secret_key_a_RH) });
  const info = await v.vault.tor.onionInfo(v.ctx(), 'hs-vector', period);
  assert.equal(toHex(info.key.publicKey), e.public_key_A);
  assert.equal(toHex(info.blindedPublicKey), e.blinded_public_key);
  assert.equal(toHex(info.subcredential), e.subcredential);
  const msg = new TextEncoder().encode(e.derived_by_this_research.message_ascii);
  // The blinded expanded secret is the vector's, and signs as its signature (the spec's nonce key RH').
  const blindedSecret = blindSecretWith(hex(e.expanded_secret_key_a_RH), hex(e.h_unclamped));
  assert.equal(toHex(blindedSecret), e.blinded_expanded_secret_key);
  const s = prepareSigner('ed25519-expanded', blindedSecret);
  assert.equal(toHex(s.sign({ kind: 'message', bytes: msg }, {}).signature), e.derived_by_this_research.signature);
  s.destroy();
  // The vault signs only for the current and next periods: 1973's is refused.
  await assert.rejects(v.vault.tor.blindSign(v.ctx(), 'hs-vector', { period, message: msg }), code('policy_denied:tor_periods'));
});

test("Arti's test keystore: the onion address and the stored blinded keys of two periods", async (t) => {
  if (!existsSync(FILE)) return t.skip('Tor vectors come from ../shared/vectors/tor-keyblind (absent here)');
  const a = vectors().arti_keystore_allium_cepa;
  await v.vault.tor.importOnionService(v.ctx(), { label: 'allium-cepa', file: hsFile(a.identity.expanded_secret_key_a_RH) });
  for (const b of a.blinded as Array<Record<string, string | number>>) {
    const period = { num: Number(b.period_num), length: Number(b.period_length_minutes) };
    const info = await v.vault.tor.onionInfo(v.ctx(), 'allium-cepa', period);
    assert.equal(info.address, a.onion_address);
    assert.equal(toHex(info.blindedPublicKey), b.blinded_public_key);
    assert.equal(toHex(blindSecretWith(hex(a.identity.expanded_secret_key_a_RH), blindingParam(hex(a.identity.public_key_A), period))), b.blinded_expanded_secret_key);
  }
  // Today's period: the vault's blinded signature verifies under the blinded key it reports.
  const today = await v.vault.tor.onionInfo(v.ctx(), 'allium-cepa');
  const msg = randomBytes(100);
  const sig = (await v.vault.tor.blindSign(v.ctx(), 'allium-cepa', { period: today.period, message: msg })).signature;
  assert.ok(verifies(sig, msg, today.blindedPublicKey));
  // tor's own key files: the hostname is the vault's address for that key.
  const files = vectors().ctor_key_files;
  await v.vault.tor.importOnionService(v.ctx(), { label: 'ctor-files', file: hex(files.hs_ed25519_secret_key_file_hex) });
  const info = await v.vault.tor.onionInfo(v.ctx(), 'ctor-files');
  assert.equal(info.address, String(files.hostname).trim());
  assert.equal(toHex(info.key.publicKey), toHex(hex(files.hs_ed25519_public_key_file_hex).subarray(32)));
});

test('a key made in the vault signs as its blinded keys; tor_periods limits the periods; the key signs nothing else', async () => {
  const k = await v.vault.tor.createOnionService(v.ctx(), { label: 'hs-new' });
  const now = periodAt(new Date());
  const info = await v.vault.tor.onionInfo(v.ctx(), 'hs-new');
  assert.deepEqual(info.period, now, 'the current period by default');
  assert.equal(info.address, onionAddress(k.publicKey));
  assert.equal(toHex(info.subcredential), toHex(subcredential(k.publicKey, info.blindedPublicKey)));
  const msg = randomBytes(64);
  const r = await v.vault.tor.blindSign(v.ctx(), 'hs-new', { period: now, message: msg });
  assert.ok(verifies(r.signature, msg, info.blindedPublicKey), 'node:crypto verifies the blinded signature');
  assert.ok(!verifies(r.signature, msg, k.publicKey), 'not a signature by K_hs_id itself');

  // The same message for two periods: different nonces (a shared one would give away K_hs_id's scalar).
  const next = await v.vault.tor.blindSign(v.ctx(), 'hs-new', { period: { num: now.num + 1, length: 1440 }, message: msg });
  assert.notEqual(toHex(next.signature.subarray(0, 32)), toHex(r.signature.subarray(0, 32)), 'each period signs with its own nonce');
  assert.ok(verifies(next.signature, msg, next.blindedPublicKey));
  // Only the current and next periods, with or without a policy; a policy narrows it.
  for (const off of [-1, 2, 3650]) await assert.rejects(v.vault.tor.blindSign(v.ctx(), 'hs-new', { period: { num: now.num + off, length: 1440 }, message: msg }), code('policy_denied:tor_periods'));
  await v.vault.uploadPolicy(v.ctx(), JSON.stringify({ id: 'hs-periods', applies_to: { keys: ['hs-new'] }, rules: [{ type: 'tor_periods', allow: ['current'] }] }), 'json');
  await v.vault.tor.blindSign(v.ctx(), 'hs-new', { period: now, message: msg });
  await assert.rejects(v.vault.tor.blindSign(v.ctx(), 'hs-new', { period: { num: now.num + 1, length: 1440 }, message: msg }), code('policy_denied:tor_periods'));

  // Purpose tor: no raw signature, no relay certificate from an onion key, no blinding of a relay key.
  await assert.rejects(v.vault.sign({ ...v.ctx(), key: k.id, payload: { kind: 'message', bytes: msg }, options: {}, context: {} }), code('key_purpose'));
  await assert.rejects(v.vault.tor.relayCert(v.ctx(), 'hs-new', { signingPublicKey: randomBytes(32), lifetimeHours: 24 }), code('bad_request'));
  await v.vault.tor.createRelayMaster(v.ctx(), { label: 'relay-x' });
  await assert.rejects(v.vault.tor.blindSign(v.ctx(), 'relay-x', { period: now, message: msg }), code('bad_request'));
  // Malformed: typed errors.
  await assert.rejects(v.vault.tor.importOnionService(v.ctx(), { label: 'bad', file: randomBytes(96) }), code('bad_request'));
  await assert.rejects(v.vault.tor.blindSign(v.ctx(), 'hs-new', { period: { num: -1, length: 1440 }, message: msg }), code('bad_request'));
});
