/**
 * Published test vectors, checked through the vault's own path: the secret is imported
 * into a real vault, signed with `vault.sign`, and verified with `vault.verify`.
 * Sources: RFC 8032 §7.1 (Ed25519), BIP340 test-vectors.csv (bitcoin/bips), RFC 6979 §A.2.5
 * (P-256, SHA-256), and the secp256k1 RFC 6979 vectors widely used by Bitcoin libraries
 * (private key 1, messages from python-ecdsa / Trezor test suites).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { makeVault, type TestVault } from '../helpers/tmpvault.js';
import { verifySignature } from '../../src/crypto/algorithms.js';
import type { Algorithm, SignOptions, SignPayload } from '../../src/core/types.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const ascii = (s: string) => new TextEncoder().encode(s);

let v: TestVault;
before(async () => {
  v = await makeVault();
});
after(async () => {
  await v.dispose();
});

async function importRaw(alg: Algorithm, secretHex: string): Promise<string> {
  const label = `vec-${randomUUID().slice(0, 8)}`;
  await v.vault.importKey(v.ctx(), { label, algorithm: alg, format: 'hex', material: ascii(secretHex), exportable: false });
  return label;
}

async function signThroughVault(label: string, payload: SignPayload, options: SignOptions = {}): Promise<Uint8Array> {
  const r = await v.vault.sign({ ...v.ctx(), key: label, payload, options, context: { protocol: 'test' } });
  return r.signature;
}

const RFC8032 = [
  {
    secret: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    public: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    secret: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    public: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    secret: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    public: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    signature: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
];

test('Ed25519: RFC 8032 §7.1 vectors sign and verify through the vault', async () => {
  for (const t of RFC8032) {
    const label = await importRaw('ed25519', t.secret);
    const key = await v.vault.getKey(label);
    assert.equal(toHex(key.publicKey), t.public);
    const payload: SignPayload = { kind: 'message', bytes: hex(t.message) };
    assert.equal(toHex(await signThroughVault(label, payload)), t.signature);
    assert.equal((await v.vault.verify(v.ctx(), label, payload, hex(t.signature), {})).valid, true);
    const bad = hex(t.signature);
    bad[0]! ^= 1;
    assert.equal((await v.vault.verify(v.ctx(), label, payload, bad, {})).valid, false);
  }
});

// RFC 6979 §A.2.5: P-256, private key x, SHA-256, messages "sample" and "test".
const P256_X = 'c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721';
const P256_VECTORS = [
  { message: 'sample', r: 'efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716', s: 'f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8' },
  { message: 'test', r: 'f1abb023518351cd71d881567b1ea663ed3efcf6c5132b354f28d3b0b7d38367', s: '019f4113742a2b14bd25926b49c649155f267e60d3814b4c0cc84250e46f0083' },
];

test('P-256: RFC 6979 §A.2.5 deterministic signatures, message and digest, raw and DER', async () => {
  const label = await importRaw('p256', P256_X);
  const key = await v.vault.getKey(label);
  assert.equal(toHex(key.publicKey).slice(2, 66), '60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6');
  for (const t of P256_VECTORS) {
    const msg: SignPayload = { kind: 'message', bytes: ascii(t.message) };
    const raw = await signThroughVault(label, msg, { encoding: 'raw' });
    assert.equal(toHex(raw), t.r + t.s);
    const digest: SignPayload = { kind: 'digest', bytes: new Uint8Array(await crypto.subtle.digest('SHA-256', ascii(t.message))) };
    assert.equal(toHex(await signThroughVault(label, digest, { encoding: 'raw' })), t.r + t.s);
    const der = await signThroughVault(label, msg, { encoding: 'der' });
    assert.equal(der[0], 0x30);
    assert.equal((await v.vault.verify(v.ctx(), label, msg, der, { encoding: 'der' })).valid, true);
    assert.equal((await v.vault.verify(v.ctx(), label, msg, raw, { encoding: 'raw' })).valid, true);
  }
});

// secp256k1, RFC 6979 nonces with SHA-256, low-S: private key 1 and n-1.
const K1_VECTORS = [
  { secret: '0000000000000000000000000000000000000000000000000000000000000001', message: 'Satoshi Nakamoto', sig: '934b1ea10a4b3c1757e2b0c017d0b6143ce3c9a7e6a4a49860d7a6ab210ee3d82442ce9d2b916064108014783e923ec36b49743e2ffa1c4496f01a512aafd9e5' },
  { secret: '0000000000000000000000000000000000000000000000000000000000000001', message: 'All those moments will be lost in time, like tears in rain. Time to die...', sig: '8600dbd41e348fe5c9465ab92d23e3db8b98b873beecd930736488696438cb6b547fe64427496db33bf66019dacbf0039c04199abb0122918601db38a72cfc21' },
  { secret: 'fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140', message: 'Satoshi Nakamoto', sig: 'fd567d121db66e382991534ada77a6bd3106f0a1098c231e47993447cd6af2d06b39cd0eb1bc8603e159ef5c20a5c8ad685a45b06ce9bebed3f153d10d93bed5' },
  { secret: 'f8b8af8ce3c7cca5e300d33939540c10d45ce001b8f252bfbc57ba0342904181', message: 'Alan Turing', sig: '7063ae83e7f62bbb171798131b4a0564b956930092b33b07b395615d9ec7e15c58dfcc1e00a35e1572f366ffe34ba0fc47db1e7189759b9fb233c5b05ab388ea' },
];

test('secp256k1 ECDSA: RFC 6979 nonces and low-S match published vectors', async () => {
  for (const t of K1_VECTORS) {
    const label = await importRaw('secp256k1', t.secret);
    const payload: SignPayload = { kind: 'message', bytes: ascii(t.message) };
    const sig = await signThroughVault(label, payload, { encoding: 'raw' });
    assert.equal(toHex(sig), t.sig, t.message);
    // low-S: s ≤ n/2
    assert.ok(BigInt('0x' + toHex(sig.subarray(32))) <= BigInt('0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0'));
    assert.equal((await v.vault.verify(v.ctx(), label, payload, sig, { encoding: 'raw' })).valid, true);
  }
});

interface Bip340Row {
  index: number;
  secret: string;
  publicKey: string;
  auxRand: string;
  message: string;
  signature: string;
  valid: boolean;
}

// BIP340 test-vectors.csv, rows 0–8 (bitcoin/bips, bip-0340/test-vectors.csv, current revision).
const BIP340: Bip340Row[] = `0,0000000000000000000000000000000000000000000000000000000000000003,F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9,0000000000000000000000000000000000000000000000000000000000000000,0000000000000000000000000000000000000000000000000000000000000000,E907831F80848D1069A5371B402410364BDF1C5F8307B0084C55F1CE2DCA821525F66A4A85EA8B71E482A74F382D2CE5EBEEE8FDB2172F477DF4900D310536C0,TRUE
1,B7E151628AED2A6ABF7158809CF4F3C762E7160F38B4DA56A784D9045190CFEF,DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659,0000000000000000000000000000000000000000000000000000000000000001,243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89,6896BD60EEAE296DB48A229FF71DFE071BDE413E6D43F917DC8DCF8C78DE33418906D11AC976ABCCB20B091292BFF4EA897EFCB639EA871CFA95F6DE339E4B0A,TRUE
2,C90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B14E5C9,DD308AFEC5777E13121FA72B9CC1B7CC0139715309B086C960E18FD969774EB8,C87AA53824B4D7AE2EB035A2B5BBBCCC080E76CDC6D1692C4B0B62D798E6D906,7E2D58D8B3BCDF1ABADEC7829054F90DDA9805AAB56C77333024B9D0A508B75C,5831AAEED7B44BB74E5EAB94BA9D4294C49BCF2A60728D8B4C200F50DD313C1BAB745879A5AD954A72C45A91C3A51D3C7ADEA98D82F8481E0E1E03674A6F3FB7,TRUE
3,0B432B2677937381AEF05BB02A66ECD012773062CF3FA2549E44F58ED2401710,25D1DFF95105F5253C4022F628A996AD3A0D95FBF21D468A1B33F8C160D8F517,FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,7EB0509757E246F19449885651611CB965ECC1A187DD51B64FDA1EDC9637D5EC97582B9CB13DB3933705B32BA982AF5AF25FD78881EBB32771FC5922EFC66EA3,TRUE
4,,D69C3509BB99E412E68B0FE8544E72837DFA30746D8BE2AA65975F29D22DC7B9,,4DF3C3F68FCC83B27E9D42C90431A72499F17875C81A599B566C9889B9696703,00000000000000000000003B78CE563F89A0ED9414F5AA28AD0D96D6795F9C6376AFB1548AF603B3EB45C9F8207DEE1060CB71C04E80F593060B07D28308D7F4,TRUE
5,,EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34,,243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89,6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E17776969E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B,FALSE
6,,DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659,,243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89,FFF97BD5755EEEA420453A14355235D382F6472F8568A18B2F057A14602975563CC27944640AC607CD107AE10923D9EF7A73C643E166BE5EBEAFA34B1AC553E2,FALSE
7,,DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659,,243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89,1FA62E331EDBC21C394792D2AB1100A7B432B013DF3F6FF4F99FCB33E0E1515F28890B3EDB6E7189B630448B515CE4F8622A954CFE545735AAEA5134FCCDB2BD,FALSE
8,,DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659,,243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89,6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E554C17F2A8A3E7B65B0E7AC0FB6A1EBE49DBB3B60D4A2376AEE2F4F18A4F45B74F2B0A0BD55,FALSE`
  .split('\n')
  .map((line) => {
    const [index, secret, publicKey, auxRand, message, signature, valid] = line.split(',') as string[];
    return { index: Number(index), secret: secret!, publicKey: publicKey!, auxRand: auxRand!, message: message!, signature: signature!, valid: valid === 'TRUE' };
  });

test('BIP340 Schnorr: the BIP test vectors sign (with their aux_rand) and verify through the vault', async () => {
  for (const t of BIP340) {
    const payload: SignPayload = { kind: 'message', bytes: hex(t.message) };
    if (t.secret) {
      const label = await importRaw('secp256k1-bip340', t.secret);
      const key = await v.vault.getKey(label);
      assert.equal(toHex(key.publicKey), t.publicKey.toLowerCase(), `row ${t.index} public key`);
      const sig = await signThroughVault(label, payload, { auxRand: hex(t.auxRand) });
      assert.equal(toHex(sig), t.signature.toLowerCase(), `row ${t.index} signature`);
      assert.equal((await v.vault.verify(v.ctx(), label, payload, sig, {})).valid, true);
    }
    // Rows without a secret key are verification-only: the same function vault.verify uses.
    assert.equal(verifySignature('secp256k1-bip340', hex(t.publicKey), payload, hex(t.signature), {}), t.valid, `row ${t.index} verification`);
  }
});
