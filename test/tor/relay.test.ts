/**
 * A relay's offline master key in Custos, against the real `tor` (test/helpers/tor.ts: loopback
 * only, a fake directory authority). A master made by `tor --keygen` is imported from its
 * `ed25519_master_id_secret_key`; another is made in the vault. For each, `custos tor
 * relay-keys` writes the signing key and the certificate the vault signed, and tor, run with
 * `OfflineMasterKey 1` and no master secret anywhere near it, accepts them: it reports the
 * vault key's ed25519 identity, and the descriptor it builds names that master and carries our
 * certificate. A certificate with a bad signature or past its expiry makes tor refuse to start.
 * The key's lifetime bound, the renewal timer's no-op, and the key's purpose (no raw signing)
 * are refused or kept as they should be.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, writeFileSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { custos, custosAsync, serve } from '../helpers/process.js';
import { tempDir } from '../helpers/tmpvault.js';
import { requireTool } from '../helpers/require.js';
import { relayDataDir, startRelay, torKeygen } from '../helpers/tor.js';
import { decodeCert, decodeTagged, encodeTagged, relayCertBody, hoursOf } from '../../src/crypto/tor-cert.js';
import { prepareSigner } from '../../src/crypto/algorithms.js';
import { CustosClient } from '../../src/client/client.js';
import { CustosApiError } from '../../src/client/transport.js';

const PASSENV = { CUSTOS_PASSPHRASE: 'tor relay test passphrase' };
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64').replace(/=+$/, '');

function init(dataDir: string): string {
  const r = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12'], PASSENV);
  assert.equal(r.status, 0, r.stderr);
  return /custos_[A-Za-z0-9_-]{43}/.exec(r.stdout)![0];
}

test('a relay with OfflineMasterKey 1 runs on the signing key and certificate Custos issues from a master held in the vault', { timeout: 240_000 }, async (t) => {
  if (!requireTool(t, 'tor', 'tor')) return;
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const token = init(join(dir, 'vault'));
  const vault = await serve(['--data-dir', join(dir, 'vault')], PASSENV);
  t.after(() => vault.stop());
  const api = { CUSTOS_ADDR: vault.url, CUSTOS_TOKEN: token };
  const client = new CustosClient({ addr: vault.url, token });
  t.after(() => client.close());

  // ---- an existing relay's master key, made by tor itself, imported; its secret then leaves the relay
  const { data, keys } = relayDataDir(join(dir, 'relay'));
  torKeygen(data);
  const torMasterFile = join(keys, 'ed25519_master_id_secret_key');
  const masterPub = decodeTagged(readFileSync(join(keys, 'ed25519_master_id_public_key')), 'ed25519v1-public', 'type0').body;
  // tor's own certificate is what ours must look like, byte for byte (but the keys and the date).
  const torCert = decodeCert(decodeTagged(readFileSync(join(keys, 'ed25519_signing_cert')), 'ed25519v1-cert', 'type4').body);
  assert.deepEqual(Buffer.from(relayCertBody(torCert.certifiedKey, masterPub, torCert.expiresHours)), Buffer.from(torCert.signed), "our certificate layout is tor's");
  assert.ok(ed25519.verify(torCert.signature, torCert.signed, masterPub), "tor's certificate verifies under the master");

  let r = await custosAsync(['tor', 'relay-master', '--import', torMasterFile, '--label', 'relay-imported', '--max-lifetime', '30d'], api);
  assert.equal(r.status, 0, r.stderr);
  const offline = join(dir, 'offline-master');
  renameSync(torMasterFile, offline); // the master secret goes offline: tor never sees it again
  const imported = await client.getKey('relay-imported');
  assert.equal(imported.public_key.raw_hex, Buffer.from(masterPub).toString('hex'), 'the vault holds the relay master');
  assert.equal(imported.purpose, 'tor');

  r = await custosAsync(['tor', 'relay-keys', '--key', 'relay-imported', '--out', keys, '--lifetime', '2d', '--json'], api);
  assert.equal(r.status, 0, r.stderr);
  const issued = JSON.parse(r.stdout) as { expires_at: string; signing_public_key: string };
  for (const f of ['ed25519_master_id_public_key', 'ed25519_signing_secret_key', 'ed25519_signing_cert']) assert.equal(statSync(join(keys, f)).mode & 0o777, 0o600, `${f} is 0600`);
  assert.equal(statSync(keys).mode & 0o777, 0o700);
  const ours = decodeCert(decodeTagged(readFileSync(join(keys, 'ed25519_signing_cert')), 'ed25519v1-cert', 'type4').body);
  assert.equal(Buffer.from(ours.certifiedKey).toString('hex'), issued.signing_public_key);
  assert.ok(Math.abs(ours.expiresHours - hoursOf(Date.now() + 48 * 3_600_000)) <= 1, 'valid for the 2 days asked');

  const relay = await startRelay(data, { offlineMasterKey: true });
  t.after(() => relay.stop());
  const line = await relay.waitFor(/Your Tor server's identity key ed25519 fingerprint is '\S+ (\S+)'/);
  assert.ok(line.includes(b64(masterPub)), `tor reports the vault's master as its identity: ${line}`);
  // The descriptor tor builds names that master and carries the certificate Custos issued.
  const descs = await relay.control('GETINFO status/fresh-relay-descs');
  assert.match(descs, new RegExp(`master-key-ed25519 ${b64(masterPub).replace(/[+/]/g, (c) => `\\${c}`)}`), descs.slice(0, 800));
  const certB64 = Buffer.from(decodeTagged(readFileSync(join(keys, 'ed25519_signing_cert')), 'ed25519v1-cert').body).toString('base64');
  assert.ok(descs.replace(/\r?\n/g, '').includes(certB64.replace(/=+$/, '').slice(0, 60)), 'the descriptor carries our signing certificate');
  await relay.stop();
  assert.equal(existsSync(torMasterFile), false, 'tor did not make a new master');

  // ---- a certificate with a bad signature, or past its expiry, makes tor refuse to start
  const good = readFileSync(join(keys, 'ed25519_signing_cert'));
  const bad = Buffer.from(good);
  bad[bad.length - 1]! ^= 1;
  writeFileSync(join(keys, 'ed25519_signing_cert'), bad, { mode: 0o600 });
  let refused = await startRelay(data, { offlineMasterKey: true });
  await refused.waitFor(/signing cert we loaded was not signed correctly|Error initializing keys/);
  assert.notEqual(await refused.exited, 0, 'tor exits on a mis-signed certificate');
  // An expired one, signed by the real master (its offline copy; the vault never issues one).
  const expandedMaster = decodeTagged(readFileSync(offline), 'ed25519v1-secret', 'type0').body;
  const body = relayCertBody(ours.certifiedKey, masterPub, hoursOf(Date.now()) - 48);
  const signer = prepareSigner('ed25519-expanded', expandedMaster);
  const sig = signer.sign({ kind: 'message', bytes: body }, {}).signature;
  signer.destroy();
  writeFileSync(join(keys, 'ed25519_signing_cert'), encodeTagged('ed25519v1-cert', 'type4', Buffer.concat([body, sig])), { mode: 0o600 });
  refused = await startRelay(data, { offlineMasterKey: true });
  await refused.waitFor(/expired|Error initializing keys/);
  assert.notEqual(await refused.exited, 0, 'tor exits on an expired certificate');
  writeFileSync(join(keys, 'ed25519_signing_cert'), good, { mode: 0o600 });

  // ---- the renewal timer: nothing while the certificate has long to run, a new key when it does not
  r = await custosAsync(['tor', 'relay-keys', '--key', 'relay-imported', '--out', keys, '--lifetime', '2d', '--renew-before', '1d', '--json'], api);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { renewed: boolean }).renewed, false);
  r = await custosAsync(['tor', 'relay-keys', '--key', 'relay-imported', '--out', keys, '--lifetime', '2d', '--renew-before', '3d', '--json'], api);
  assert.equal(r.status, 0, r.stderr);
  const renewed = JSON.parse(r.stdout) as { renewed: boolean; signing_public_key: string };
  assert.equal(renewed.renewed, true);
  assert.notEqual(renewed.signing_public_key, issued.signing_public_key, 'a fresh signing key');

  // A run stopped between the files leaves a secret the certificate does not certify: the timer renews then.
  const secretFile = join(keys, 'ed25519_signing_secret_key');
  const savedSecret = readFileSync(secretFile);
  writeFileSync(secretFile, encodeTagged('ed25519v1-secret', 'type4', new Uint8Array(64).fill(5)), { mode: 0o600 });
  r = await custosAsync(['tor', 'relay-keys', '--key', 'relay-imported', '--out', keys, '--lifetime', '2d', '--renew-before', '1d', '--json'], api);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { renewed: boolean }).renewed, true, 'a certificate for another key on disk is renewed');
  assert.notDeepEqual(readFileSync(secretFile), savedSecret);
  // A symbolic link as the keys directory is refused (give the real path).
  symlinkSync(keys, join(dir, 'keys-link'));
  r = await custosAsync(['tor', 'relay-keys', '--key', 'relay-imported', '--out', join(dir, 'keys-link'), '--lifetime', '2d'], api);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /symbolic link/);

  // ---- the key's bounds: no certificate past its lifetime; no raw signatures
  r = await custosAsync(['tor', 'relay-keys', '--key', 'relay-imported', '--out', keys, '--lifetime', '31d'], api);
  assert.equal(r.status, 4, `${r.stdout}${r.stderr}`);
  assert.match(r.stderr, /at most 720 hours/);
  await assert.rejects(client.sign('relay-imported', { message: new Uint8Array([1, 2, 3]) }), (e: unknown) => e instanceof CustosApiError && e.code === 'key_purpose');

  // ---- a master made in the vault: the same, from an empty keys directory
  const fresh = relayDataDir(join(dir, 'relay2'));
  r = await custosAsync(['tor', 'relay-master', '--create', '--label', 'relay-new', '--max-lifetime', '7d'], api);
  assert.equal(r.status, 0, r.stderr);
  r = await custosAsync(['tor', 'relay-keys', '--key', 'relay-new', '--out', fresh.keys, '--lifetime', '7d'], api);
  assert.equal(r.status, 0, r.stderr);
  const newPub = Buffer.from((await client.getKey('relay-new')).public_key.raw, 'base64');
  const relay2 = await startRelay(fresh.data, { offlineMasterKey: true });
  t.after(() => relay2.stop());
  const line2 = await relay2.waitFor(/Your Tor server's identity key ed25519 fingerprint is '\S+ (\S+)'/);
  assert.ok(line2.includes(b64(newPub)), line2);
  await relay2.stop();
  assert.equal(existsSync(join(fresh.keys, 'ed25519_master_id_secret_key')), false, 'no master secret on the relay');

  // ---- an onion service over the CLI and the HTTP API: the address, a blinded signature under a scoped token
  r = await custosAsync(['tor', 'onion-service', '--create', '--label', 'hs1', '--json'], api);
  assert.equal(r.status, 0, r.stderr);
  const hs = JSON.parse(r.stdout) as { address: string; period_num: number; blinded_public_key: string };
  assert.match(hs.address, /^[a-z2-7]{56}\.onion$/);
  r = await custosAsync(['tor', 'onion-info', 'hs1', '--period', String(hs.period_num + 1), '--json'], api);
  assert.equal(r.status, 0, r.stderr);
  const next = JSON.parse(r.stdout) as { period_num: number; blinded_public_key: string };
  assert.equal(next.period_num, hs.period_num + 1);
  assert.notEqual(next.blinded_public_key, hs.blinded_public_key, 'each period has its own blinded key');
  const svc = (await client.createToken({ name: 'hs1-service', role: 'signer', operations: ['read', 'sign'], keys: ['hs1'] })).token!;
  const scoped = new CustosClient({ addr: vault.url, token: svc });
  t.after(() => scoped.close());
  const msg = new TextEncoder().encode('descriptor signing-key certificate');
  const bs = await scoped.torBlindSign('hs1', { period_num: next.period_num, message: msg });
  assert.equal(bs.blinded_public_key, next.blinded_public_key);
  assert.ok(ed25519.verify(Buffer.from(bs.signature, 'hex'), msg, Buffer.from(next.blinded_public_key, 'hex')), 'the blinded signature verifies under the blinded key');
});
