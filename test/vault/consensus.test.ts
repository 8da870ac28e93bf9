/**
 * Double-sign protection in the vault's consensus sign path, against the shared
 * double-sign scenarios (all starting from one last-signed precommit) with CometBFT FilePV
 * semantics, and two vault processes racing on one database.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeVault, PASS } from '../helpers/tmpvault.js';
import { ROOT } from '../helpers/process.js';
import { CustosError } from '../../src/core/errors.js';
import { chainHash } from '../../src/audit/chain.js';
import { onlyTimestampDiffers } from '../../src/crypto/cometbft/compare.js';
import { openVault } from '../../src/vault/open.js';
import type { ConsensusSignRequest } from '../../src/vault/vault.js';

const FILE = join(ROOT, '..', 'shared', 'vectors', 'cometbft', 'double_sign', 'derived_double_sign_scenarios.json');
const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const ADMIN = { id: 'privval:test', kind: 'privval' as const };

interface Req {
  kind: 'vote' | 'proposal';
  type: number;
  height: number;
  round: number;
  sign_bytes_hex: string;
}

const stepOf = (r: Req) => (r.kind === 'proposal' ? 1 : r.type === 1 ? 2 : 3);

function request(key: string, chainId: string, r: Req, n: number): ConsensusSignRequest {
  return {
    requestId: `c${n}`,
    principal: ADMIN,
    key,
    chainId,
    position: { height: BigInt(r.height), round: r.round, step: stepOf(r) },
    signBytes: hex(r.sign_bytes_hex),
    onlyTimestampDiffers,
    context: { protocol: 'privval' },
  };
}

function verifies(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]);
  return nodeVerify(null, msg, createPublicKey({ key: spki, format: 'der', type: 'spki' }), sig);
}

test('FilePV double-sign scenarios: reuse, timestamp-only reuse, conflicts and regressions refused, progress signed', async (t) => {
  if (!existsSync(FILE)) return t.skip('the double-sign scenarios come from ../shared/vectors/cometbft (absent here)');
  const d = JSON.parse(readFileSync(FILE, 'utf8')) as { last_signed: Req & { filepv_step: number; signature_hex: string }; scenarios: Array<{ id: string; request: Req; expected: { filepv: string } }> };
  const v = await makeVault();
  try {
    const seed = createHash('sha256').update("it's a secret").digest('hex');
    const key = await v.vault.importKey(v.ctx(), { label: 'consensus', algorithm: 'ed25519', format: 'hex', material: new TextEncoder().encode(seed), exportable: false, purpose: 'consensus' });
    const last = d.last_signed;
    assert.ok(verifies(key.publicKey, hex(last.sign_bytes_hex), hex(last.signature_hex)), 'the vector key is the one that signed last_signed');
    let n = 0;
    for (const sc of d.scenarios) {
      // Each scenario starts from the same last-signed state: its own watermark (chain) slot.
      const chain = `scenario-${sc.id}`;
      const seeded = await v.store.commit(
        [{ mutations: [{ kind: 'advanceWatermark', keyId: key.id, chainId: chain, expected: null, next: { height: BigInt(last.height), round: last.round, step: last.filepv_step, signBytes: hex(last.sign_bytes_hex), signature: hex(last.signature_hex) } }], audit: [] }],
        chainHash,
        new Date().toISOString(),
      );
      assert.deepEqual(seeded, [null]);
      const expected = sc.expected.filepv;
      const run = v.vault.signConsensus(request(key.id, chain, sc.request, n++));
      if (expected.startsWith('reuse')) {
        const r = await run;
        assert.equal(r.reused, true, sc.id);
        assert.deepEqual(r.signature, hex(last.signature_hex), `${sc.id}: the stored signature`);
        assert.deepEqual(r.signBytes, hex(last.sign_bytes_hex), `${sc.id}: the stored sign bytes (and so the stored timestamp)`);
      } else if (expected.startsWith('error')) {
        await assert.rejects(run, (e: unknown) => e instanceof CustosError && e.fullCode === 'policy_denied:double_sign', sc.id);
      } else {
        const r = await run;
        assert.equal(r.reused, false, sc.id);
        assert.ok(verifies(key.publicKey, hex(sc.request.sign_bytes_hex), r.signature), `${sc.id}: a valid new signature`);
        const wm = await v.store.getWatermark(key.id, chain);
        assert.equal(wm!.height, BigInt(sc.request.height));
        assert.deepEqual(wm!.signature, r.signature, `${sc.id}: the signature is stored with the watermark`);
      }
    }
    const denied = (await v.store.auditTail(200)).filter((e) => e.reason === 'policy_denied:double_sign');
    assert.equal(denied.length, d.scenarios.filter((s) => s.expected.filepv.startsWith('error')).length, 'every refusal is audited');
  } finally {
    await v.dispose();
  }
});

test('two vault processes on one database, asked for conflicting messages at the same height: exactly one signs', async () => {
  const v = await makeVault();
  const other = await openVault({ dataDir: v.dataDir, passphrase: PASS });
  try {
    const key = await v.vault.createKey(v.ctx(), { label: 'val', algorithm: 'ed25519', exportable: false, purpose: 'consensus' });
    // Two different prevotes (different block hashes) for the same height/round/step.
    const bytes = (tag: number) => new Uint8Array([0x20, 0x08, 0x01, 0x11, 0x05, 0, 0, 0, 0, 0, 0, 0, 0x22, 0x02, 0x0a, tag, 0x2a, 0x00, 0x32, 0x01, 0x63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 32));
    const reqA = { requestId: 'a', principal: ADMIN, key: key.id, chainId: 'c', position: { height: 5n, round: 0, step: 2 }, signBytes: bytes(1), onlyTimestampDiffers: () => false, context: {} };
    const reqB = { ...reqA, requestId: 'b', signBytes: bytes(2) };
    const results = await Promise.allSettled([v.vault.signConsensus(reqA), other.vault.signConsensus(reqB)]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected' && r.reason instanceof CustosError && r.reason.fullCode === 'policy_denied:double_sign');
    assert.equal(ok.length, 1, JSON.stringify(results.map((r) => r.status)));
    assert.equal(refused.length, 1);
  } finally {
    await other.close();
    await v.dispose();
  }
});

test('FilePV migration: priv_validator_key.json imports, priv_validator_state.json seeds the watermark, never backwards', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  const v = await makeVault();
  try {
    const kp = generateKeyPairSync('ed25519');
    const der = kp.privateKey.export({ format: 'der', type: 'pkcs8' });
    const seed = der.subarray(der.length - 32);
    const spki = kp.publicKey.export({ format: 'der', type: 'spki' });
    const pub = spki.subarray(spki.length - 32);
    const file = (p: Buffer) =>
      new TextEncoder().encode(
        JSON.stringify({
          address: 'ignored',
          pub_key: { type: 'tendermint/PubKeyEd25519', value: p.toString('base64') },
          priv_key: { type: 'tendermint/PrivKeyEd25519', value: Buffer.concat([seed, pub]).toString('base64') },
        }),
      );
    const key = await v.vault.importKey(v.ctx(), { label: 'validator', format: 'cometbft', material: file(Buffer.from(pub)), exportable: false });
    assert.deepEqual(Buffer.from(key.publicKey), Buffer.from(pub));
    await assert.rejects(
      v.vault.importKey(v.ctx(), { label: 'validator-bad', format: 'cometbft', material: file(Buffer.alloc(32, 1)), exportable: false }),
      (e: unknown) => e instanceof CustosError && e.code === 'invalid_key_material',
    );
    await v.vault.importWatermark(v.ctx(), 'validator', 'chain-x', { height: 1000n, round: 2, step: 3 });
    const below = { requestId: 'r', principal: ADMIN, key: 'validator', chainId: 'chain-x', position: { height: 999n, round: 0, step: 2 }, signBytes: new Uint8Array([1, 2]), onlyTimestampDiffers: () => false, context: {} };
    await assert.rejects(v.vault.signConsensus(below), (e: unknown) => e instanceof CustosError && e.fullCode === 'policy_denied:double_sign');
    // At the imported position with no sign bytes stored, nothing may be signed again there.
    await assert.rejects(v.vault.signConsensus({ ...below, position: { height: 1000n, round: 2, step: 3 } }), (e: unknown) => e instanceof CustosError && e.fullCode === 'policy_denied:double_sign');
    const next = await v.vault.signConsensus({ ...below, position: { height: 1001n, round: 0, step: 1 } });
    assert.equal(next.reused, false);
    await assert.rejects(v.vault.importWatermark(v.ctx(), 'validator', 'chain-x', { height: 5n, round: 0, step: 1 }), (e: unknown) => e instanceof CustosError && e.fullCode === 'policy_denied:double_sign');
  } finally {
    await v.dispose();
  }
});
