/**
 * The Tor agent extensions (src/frontends/ssh-agent/tor-extensions.ts) on a live agent socket:
 * a period's blinded key and subcredential, and a signature by it, for an onion-service key the
 * socket's `tor_keys` names (an allow-list: another Tor key is refused); the codec's round trip
 * and typed errors (fast-check); and 100,000 mutated extension frames that the agent answers
 * one by one while it keeps serving.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, publicDecrypt, constants, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { ROOT } from '../../helpers/process.js';
import { encodeTagged } from '../../../src/crypto/tor-cert.js';
import { requireTool } from '../../helpers/require.js';
import fc from 'fast-check';
import { ed25519 } from '@noble/curves/ed25519.js';
import { makeVault, tempDir, type TestVault } from '../../helpers/tmpvault.js';
import { SshAgent } from '../../../src/frontends/ssh-agent/agent.js';
import { encodeRequest, decodeResponse, frame, FrameReader, encodePublicKeyBlob, AgentCodecError, type AgentResponse } from '../../../src/frontends/ssh-agent/codec.js';
import { decodeTorExtension, decodeTorReply, encodeTorExtension, x25519Blob, EXT_TOR_BLIND_SIGN, EXT_TOR_BLINDED_KEY, EXT_TOR_RSA_SIGN, EXT_TOR_SIGN, EXT_TOR_X25519, type TorExtensionRequest } from '../../../src/frontends/ssh-agent/tor-extensions.js';
import { periodAt } from '../../../src/crypto/tor-blind.js';
import { fuzzAgent } from '../../../scripts/fuzz-agent.js';

let v: TestVault;
let agent: SshAgent;
let dir: string;
let cleanup: () => void;

before(async () => {
  v = await makeVault();
  ({ dir, cleanup } = tempDir());
  agent = new SshAgent(v.vault, { name: 'tor', socketPath: join(dir, 'sock', 'agent.sock'), keys: [], torKeys: ['hs-*'], allowSha1: false, maxConnections: 64 });
  await agent.listen();
});
after(async () => {
  await agent.close();
  await v.dispose();
  cleanup();
});

function talk(reqs: Uint8Array[]): Promise<AgentResponse[]> {
  return new Promise((resolve, reject) => {
    const s = connect(agent.config.socketPath);
    const reader = new FrameReader();
    const out: AgentResponse[] = [];
    s.on('data', (d) => {
      for (const b of reader.push(d)) out.push(decodeResponse(b));
      if (out.length === reqs.length) s.end();
    });
    s.on('close', () => resolve(out));
    s.on('error', reject);
    s.on('connect', () => s.write(Buffer.concat(reqs.map((r) => frame(r)))));
  });
}

const ext = (req: TorExtensionRequest) => encodeRequest({ type: 'extension', name: req.name, data: encodeTorExtension(req) });
const blobOf = (publicKey: Uint8Array) => encodePublicKeyBlob({ keyType: 'ssh-ed25519', publicKey });

test('blinded key and blinded signature over the agent, for the onion-service keys tor_keys names only', async () => {
  const hs = await v.vault.tor.createOnionService(v.ctx(), { label: 'hs-one' });
  const other = await v.vault.tor.createOnionService(v.ctx(), { label: 'web-onion' });
  const period = periodAt(new Date());
  const msg = new TextEncoder().encode('hs descriptor signing key cert');
  const [key, sig, refused, query] = await talk([
    ext({ name: EXT_TOR_BLINDED_KEY, keyBlob: blobOf(hs.publicKey), period }),
    ext({ name: EXT_TOR_BLIND_SIGN, keyBlob: blobOf(hs.publicKey), period, data: msg }),
    ext({ name: EXT_TOR_BLIND_SIGN, keyBlob: blobOf(other.publicKey), period, data: msg }),
    encodeRequest({ type: 'extension_query' }),
  ]);
  assert.ok(key!.type === 'extension_response' && key!.name === EXT_TOR_BLINDED_KEY, JSON.stringify(key));
  const [blinded, subcred] = decodeTorReply((key as { data: Uint8Array }).data, 2);
  const info = await v.vault.tor.onionInfo(v.ctx(), 'hs-one', period);
  assert.deepEqual(blinded, info.blindedPublicKey);
  assert.deepEqual(subcred, info.subcredential);
  assert.ok(sig!.type === 'extension_response', JSON.stringify(sig));
  const [signature] = decodeTorReply((sig as { data: Uint8Array }).data, 1);
  assert.ok(ed25519.verify(signature!, msg, blinded!), 'the blinded signature verifies under the blinded key');
  assert.equal(refused!.type, 'extension_failure', 'a Tor key tor_keys does not name is refused');
  assert.ok(query!.type === 'query_response' && [EXT_TOR_SIGN, EXT_TOR_BLINDED_KEY, EXT_TOR_BLIND_SIGN].every((n) => query!.extensions.includes(n)));
  // Not a plain sign request either: an onion key is never offered.
  const [plain] = await talk([encodeRequest({ type: 'sign_request', keyBlob: blobOf(hs.publicKey), data: msg, flags: 0 })]);
  assert.equal(plain!.type, 'failure');
  const audit = await v.vault.auditTail(50);
  assert.ok(audit.some((e) => e.operation === 'tor_blind_sign' && e.outcome === 'ok' && e.principal === 'ssh-agent:tor'), 'audited under the agent');
});

test('the tor-keyblind vectors through the agent: the blinded keys and subcredential of their periods', async (t) => {
  const file = join(ROOT, '..', 'shared', 'vectors', 'tor-keyblind', 'keyblind-vectors.json');
  if (!existsSync(file)) return t.skip('Tor vectors come from ../shared/vectors/tor-keyblind (absent here)');
  const d = JSON.parse(readFileSync(file, 'utf8'));
  const hex = (x: string) => new Uint8Array(Buffer.from(x, 'hex'));
  const cases: Array<{ label: string; secret: string; pub: string; periods: Array<{ num: number; length: number; blinded: string; subcredential?: string }> }> = [
    { label: 'hs-vector-e2e', secret: d.ctor_hs_blinding_end_to_end.expanded_secret_key_a_RH, pub: d.ctor_hs_blinding_end_to_end.public_key_A, periods: [{ num: d.ctor_hs_blinding_end_to_end.period_num, length: d.ctor_hs_blinding_end_to_end.period_length_minutes, blinded: d.ctor_hs_blinding_end_to_end.blinded_public_key, subcredential: d.ctor_hs_blinding_end_to_end.subcredential }] },
    { label: 'hs-vector-allium', secret: d.arti_keystore_allium_cepa.identity.expanded_secret_key_a_RH, pub: d.arti_keystore_allium_cepa.identity.public_key_A, periods: (d.arti_keystore_allium_cepa.blinded as Array<Record<string, string | number>>).map((b) => ({ num: Number(b.period_num), length: Number(b.period_length_minutes), blinded: String(b.blinded_public_key) })) },
  ];
  for (const c of cases) {
    await v.vault.tor.importOnionService(v.ctx(), { label: c.label, file: encodeTagged('ed25519v1-secret', 'type0', hex(c.secret)) });
    const answers = await talk(c.periods.map((p) => ext({ name: EXT_TOR_BLINDED_KEY, keyBlob: blobOf(hex(c.pub)), period: { num: p.num, length: p.length } })));
    c.periods.forEach((p, i) => {
      const a = answers[i]!;
      assert.ok(a.type === 'extension_response', JSON.stringify(a));
      const [blinded, subcred] = decodeTorReply((a as { data: Uint8Array }).data, 2);
      assert.equal(Buffer.from(blinded!).toString('hex'), p.blinded, `${c.label} period ${p.num}`);
      if (p.subcredential) assert.equal(Buffer.from(subcred!).toString('hex'), p.subcredential);
    });
  }
});

test("RSA: tor's raw PKCS#1 v1.5 over a digest, verified by openssl pkeyutl without DigestInfo; X25519 agreeing with node:crypto", async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  // tor's secret_id_key is a PKCS#1 PEM RSA-1024 key: one made the same way.
  const pemFile = join(dir, 'secret_id_key');
  const gen = spawnSync('openssl', ['genrsa', '-traditional', '-out', pemFile, '1024'], { encoding: 'utf8' });
  assert.equal(gen.status, 0, gen.stderr);
  const pem = new Uint8Array(spawnSync('cat', [pemFile]).stdout);
  assert.match(Buffer.from(pem).toString(), /BEGIN RSA PRIVATE KEY/);
  const rsa = await v.vault.tor.importRsaIdentity(v.ctx(), { label: 'hs-relay-rsa', pem });
  const pub = createPublicKey(createPrivateKey(Buffer.from(pem)));
  const jwk = pub.export({ format: 'jwk' }) as { n: string; e: string };
  const mpint = (b64: string) => { const b = Buffer.from(b64, 'base64url'); return b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b; };
  const rsaBlob = encodePublicKeyBlob({ keyType: 'ssh-rsa', e: mpint(jwk.e), n: mpint(jwk.n) });
  const digest = createHash('sha1').update('router descriptor').digest();
  const [signed, tooLong] = await talk([
    ext({ name: EXT_TOR_RSA_SIGN, keyBlob: rsaBlob, data: digest }),
    encodeRequest({ type: 'extension', name: EXT_TOR_RSA_SIGN, data: encodeTorExtension({ name: EXT_TOR_SIGN, keyBlob: rsaBlob, data: new Uint8Array(35) }) }),
  ]);
  assert.ok(signed!.type === 'extension_response', JSON.stringify(signed));
  const [sig] = decodeTorReply((signed as { data: Uint8Array }).data, 1);
  assert.deepEqual(publicDecrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, sig!), digest, 'the signature opens to the digest itself (no DigestInfo)');
  writeFileSync(join(dir, 'pub.pem'), pub.export({ format: 'pem', type: 'spki' }));
  writeFileSync(join(dir, 'digest.bin'), digest);
  writeFileSync(join(dir, 'sig.bin'), sig!);
  const check = spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', join(dir, 'pub.pem'), '-in', join(dir, 'digest.bin'), '-sigfile', join(dir, 'sig.bin'), '-pkeyopt', 'rsa_padding_mode:pkcs1'], { encoding: 'utf8' });
  assert.equal(check.status, 0, `${check.stdout}${check.stderr}`);
  assert.match(check.stdout, /Signature Verified Successfully/);
  assert.equal(tooLong!.type, 'failure', 'a 35-byte input (a DigestInfo the caller built) is refused');
  await assert.rejects(v.vault.sign({ ...v.ctx(), key: rsa.id, payload: { kind: 'message', bytes: digest }, options: {}, context: {} }), (e: unknown) => (e as { code?: string }).code === 'key_purpose');

  const x = await v.vault.tor.createX25519(v.ctx(), { label: 'hs-ntor' });
  const peer = generateKeyPairSync('x25519');
  const peerRaw = new Uint8Array((peer.publicKey.export({ format: 'der', type: 'spki' }) as Buffer).subarray(12));
  const [agreed, small] = await talk([ext({ name: EXT_TOR_X25519, keyBlob: x25519Blob(x.publicKey), data: peerRaw }), ext({ name: EXT_TOR_X25519, keyBlob: x25519Blob(x.publicKey), data: new Uint8Array(32) })]);
  assert.ok(agreed!.type === 'extension_response', JSON.stringify(agreed));
  const [shared] = decodeTorReply((agreed as { data: Uint8Array }).data, 1);
  const vaultPub = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), x.publicKey]), format: 'der', type: 'spki' });
  assert.deepEqual(Buffer.from(shared!), diffieHellman({ privateKey: peer.privateKey, publicKey: vaultPub }), "the same secret node:crypto's diffieHellman gets");
  assert.equal(small!.type, 'extension_failure', 'a small-order peer key is refused');
});

test('the Tor extension codec round-trips, and anything else is a typed error', () => {
  const req = fc.oneof(
    fc.record({ name: fc.constant(EXT_TOR_SIGN), keyBlob: fc.uint8Array({ maxLength: 200 }), data: fc.uint8Array({ maxLength: 500 }) }),
    fc.record({ name: fc.constant(EXT_TOR_BLINDED_KEY), keyBlob: fc.uint8Array({ maxLength: 200 }), period: fc.record({ num: fc.integer({ min: 0, max: 2 ** 40 }), length: fc.integer({ min: 1, max: 527040 }) }) }),
    fc.record({ name: fc.constant(EXT_TOR_RSA_SIGN), keyBlob: fc.uint8Array({ maxLength: 200 }), data: fc.oneof(fc.uint8Array({ minLength: 20, maxLength: 20 }), fc.uint8Array({ minLength: 32, maxLength: 32 })) }),
    fc.record({ name: fc.constant(EXT_TOR_X25519), keyBlob: fc.uint8Array({ maxLength: 200 }), data: fc.uint8Array({ minLength: 32, maxLength: 32 }) }),
    fc.record({ name: fc.constant(EXT_TOR_BLIND_SIGN), keyBlob: fc.uint8Array({ maxLength: 200 }), period: fc.record({ num: fc.integer({ min: 0, max: 2 ** 40 }), length: fc.integer({ min: 1, max: 527040 }) }), data: fc.uint8Array({ maxLength: 500 }) }),
  ) as fc.Arbitrary<TorExtensionRequest>;
  fc.assert(fc.property(req, (r) => assert.deepEqual(JSON.parse(JSON.stringify(decodeTorExtension(r.name, encodeTorExtension(r)), (_k, x) => (x instanceof Uint8Array ? [...x] : x))), JSON.parse(JSON.stringify(r, (_k, x) => (x instanceof Uint8Array ? [...x] : x))))));
  fc.assert(
    fc.property(fc.constantFrom(EXT_TOR_SIGN, EXT_TOR_BLINDED_KEY, EXT_TOR_BLIND_SIGN, EXT_TOR_RSA_SIGN, EXT_TOR_X25519), fc.uint8Array({ maxLength: 300 }), (name, junk) => {
      try {
        decodeTorExtension(name, junk);
      } catch (e) {
        assert.ok(e instanceof AgentCodecError, String(e));
      }
    }),
    { numRuns: 3000 },
  );
  assert.throws(() => decodeTorExtension(EXT_TOR_SIGN, encodeTorExtension({ name: EXT_TOR_SIGN, keyBlob: new Uint8Array(1), data: new Uint8Array(70_000) })), AgentCodecError);
});

test('100,000 mutated Tor extension frames: the agent answers each and keeps serving', async (t) => {
  const stranger = blobOf(ed25519.getPublicKey(randomBytes(32)));
  const period = periodAt(new Date());
  const hsKey = await v.vault.getKey('hs-one');
  const seeds = [
    // A key tor_keys names, so that mutated frames reach the vault's Tor operations (read-only: no commit per frame).
    ext({ name: EXT_TOR_BLINDED_KEY, keyBlob: blobOf(hsKey.publicKey), period }),
    ext({ name: EXT_TOR_SIGN, keyBlob: stranger, data: randomBytes(40) }),
    ext({ name: EXT_TOR_BLINDED_KEY, keyBlob: stranger, period }),
    ext({ name: EXT_TOR_BLIND_SIGN, keyBlob: stranger, period, data: randomBytes(40) }),
    ext({ name: EXT_TOR_RSA_SIGN, keyBlob: stranger, data: randomBytes(20) }),
    ext({ name: EXT_TOR_X25519, keyBlob: x25519Blob(randomBytes(32)), data: randomBytes(32) }),
  ];
  const r = await fuzzAgent(agent.config.socketPath, Number(process.env.CUSTOS_AGENT_FUZZ_FRAMES ?? 100_000), 7, seeds);
  t.diagnostic(JSON.stringify(r));
  assert.ok(r.answered > 0.8 * r.sent, `only ${r.answered} of ${r.sent} frames were answered`);
  const [still] = await talk([ext({ name: EXT_TOR_BLINDED_KEY, keyBlob: blobOf(hsKey.publicKey), period })]);
  assert.equal(still!.type, 'extension_response', 'the agent still serves');
  assert.equal((await v.store.integrityCheck()).length, 0);
});
