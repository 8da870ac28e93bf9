/**
 * SecretConnection key schedule against CometBFT's golden KDF file, tmkms-p2p's handshake
 * vectors, and the derived byte-exact session in the shared vector folder (see its PROVENANCE.md).
 * The vectors are read from the shared folder next to the repository, never copied in.
 *
 * Sealed frames are opened here only to prove the key *direction*: a key that opens the frames
 * a side sent is that side's send key. Frame parsing itself belongs to the transport's tests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { isCustosError } from '../../src/core/errors.js';
import {
  computeDhSecret,
  deriveSecrets,
  deriveSessionSecrets,
  makeTranscriptChallenge,
  sortEphemeralKeys,
} from '../../src/crypto/secret-connection-kdf.js';

const REPO_ROOT = new URL('../../', import.meta.url);
const VECTOR_DIR = new URL('../shared/vectors/cometbft/secret_connection/', REPO_ROOT);
const vectorsSkip = existsSync(fileURLToPath(VECTOR_DIR))
  ? false
  : `the CometBFT vectors come from the shared folder ${fileURLToPath(VECTOR_DIR)}, which is absent`;

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const readVector = (name: string) => readFileSync(new URL(name, VECTOR_DIR), 'utf8');
const readJson = <T>(name: string) => JSON.parse(readVector(name)) as T;

/** Opens one 1044-byte SecretConnection frame: nonce = 4 zero bytes ‖ u64 LE counter, no AAD. */
function openFrame(key: Uint8Array, counter: number, sealed: Uint8Array): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, BigInt(counter), true);
  const frame = chacha20poly1305(key, nonce).decrypt(sealed);
  const length = new DataView(frame.buffer, frame.byteOffset).getUint32(0, true);
  return frame.subarray(4, 4 + length);
}

/** AuthSigMessage for Ed25519, length-delimited: 66 0a 22 0a 20 <pub32> 12 40 <sig64>. */
function parseAuthSig(bytes: Uint8Array): { pub: Uint8Array; sig: Uint8Array } {
  assert.equal(bytes.length, 103);
  assert.equal(toHex(bytes.subarray(0, 5)), '660a220a20');
  assert.equal(toHex(bytes.subarray(37, 39)), '1240');
  return { pub: bytes.subarray(5, 37), sig: bytes.subarray(39, 103) };
}

function assertKeyError(fn: () => unknown, tag: string): void {
  assert.throws(fn, (e: unknown) => isCustosError(e) && e.code === 'bad_request' && e.tag === tag);
}

// ---------------------------------------------------------------------------------------------
// CometBFT p2p/conn/testdata/TestDeriveSecretsAndChallengeGolden.golden

interface GoldenCase {
  line: number;
  dh_secret: string;
  loc_is_least: boolean;
  expected_recv_secret: string;
  expected_send_secret: string;
  legacy_challenge_hkdf_64_96: string;
}

test('derives the recv/send keys of every line of CometBFT’s golden KDF file', { skip: vectorsSkip }, () => {
  const lines = readVector('TestDeriveSecretsAndChallengeGolden.golden').split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 32);
  for (const [i, line] of lines.entries()) {
    // Columns: dh, locIsLeast, recv, send, legacy HKDF challenge (ignored by CometBFT's own test too).
    const [dh, least, recv, send] = line.split(',');
    assert.ok(least === 'true' || least === 'false', `line ${i + 1}: locIsLeast column`);
    const got = deriveSecrets(hex(dh!), least === 'true');
    assert.equal(toHex(got.recvSecret), recv, `line ${i + 1} recv`);
    assert.equal(toHex(got.sendSecret), send, `line ${i + 1} send`);
  }
});

test('derives the recv/send keys of every case in derive_secrets_golden.json, which mirrors the golden file', { skip: vectorsSkip }, () => {
  const { cases } = readJson<{ cases: GoldenCase[] }>('derive_secrets_golden.json');
  const goldenLines = readVector('TestDeriveSecretsAndChallengeGolden.golden').split('\n').filter((l) => l.trim() !== '');
  assert.equal(cases.length, 32);
  for (const c of cases) {
    const got = deriveSecrets(hex(c.dh_secret), c.loc_is_least);
    assert.equal(toHex(got.recvSecret), c.expected_recv_secret, `line ${c.line} recv`);
    assert.equal(toHex(got.sendSecret), c.expected_send_secret, `line ${c.line} send`);
    const row = [c.dh_secret, String(c.loc_is_least), c.expected_recv_secret, c.expected_send_secret, c.legacy_challenge_hkdf_64_96];
    assert.equal(row.join(','), goldenLines[c.line - 1], `line ${c.line} matches the .golden file`);
  }
  // Both orderings occur, so both branches of the direction rule are covered.
  assert.ok(cases.some((c) => c.loc_is_least) && cases.some((c) => !c.loc_is_least));
});

// ---------------------------------------------------------------------------------------------
// tmkms-p2p test_vectors.rs / encryption.rs

interface TmkmsVectors {
  upstream: Record<string, string>;
  upstream_frames: { send_key: string; frames: { nonce_counter: number; plaintext_ascii: string; ciphertext_hex: string }[] };
  derived_by_us: Record<string, string>;
}

test('matches tmkms-p2p’s KDF keys and opens its upstream frames with the derived send key', { skip: vectorsSkip }, () => {
  const { upstream, upstream_frames, derived_by_us } = readJson<TmkmsVectors>('tmkms_p2p_handshake.json');
  const shared = hex(upstream.HANDSHAKE_SHARED_SECRET!);
  // tmkms encrypts its frame vectors with derive_secrets_and_challenge(shared, loc_is_least = false).send_secret.
  const notLeast = deriveSecrets(shared, false);
  assert.equal(toHex(notLeast.sendSecret), upstream.ENCRYPTION_KEY2);
  assert.equal(toHex(notLeast.recvSecret), upstream.ENCRYPTION_KEY1);
  assert.equal(toHex(notLeast.sendSecret), upstream_frames.send_key);
  const least = deriveSecrets(shared, true);
  assert.equal(toHex(least.recvSecret), upstream.ENCRYPTION_KEY2);
  assert.equal(toHex(least.sendSecret), upstream.ENCRYPTION_KEY1);
  const okm = derived_by_us.hkdf_okm_for_HANDSHAKE_SHARED_SECRET!;
  assert.equal(toHex(least.recvSecret) + toHex(least.sendSecret), okm.slice(0, 128));
  for (const f of upstream_frames.frames) {
    const data = openFrame(notLeast.sendSecret, f.nonce_counter, hex(f.ciphertext_hex));
    assert.equal(Buffer.from(data).toString('ascii'), f.plaintext_ascii);
  }
});

test('runs the tmkms-p2p Alice/Bob handshake: same challenge, mirrored keys, upstream signatures verify', { skip: vectorsSkip }, () => {
  const { upstream: u, derived_by_us: d } = readJson<TmkmsVectors>('tmkms_p2p_handshake.json');
  const aliceEph = { secret: hex(u.ALICE_X25519_SK!), public: hex(u.ALICE_X25519_PK!) };
  const bobEph = { secret: hex(u.BOB_X25519_SK!), public: hex(u.BOB_X25519_PK!) };
  assert.equal(toHex(x25519.getPublicKey(aliceEph.secret)), u.ALICE_X25519_PK);
  assert.equal(toHex(x25519.getPublicKey(bobEph.secret)), u.BOB_X25519_PK);
  // The plaintext first message carries the ephemeral key as a length-delimited BytesValue.
  assert.equal(u.ALICE_HANDSHAKE_INITIAL_MSG, '220a20' + u.ALICE_X25519_PK);

  assert.equal(toHex(computeDhSecret(aliceEph.secret, bobEph.public)), d.x25519_dh_alice_bob);
  assert.equal(toHex(computeDhSecret(bobEph.secret, aliceEph.public)), d.x25519_dh_alice_bob);

  const alice = deriveSessionSecrets({
    localEphemeralSecret: aliceEph.secret,
    localEphemeralPublic: aliceEph.public,
    remoteEphemeralPublic: bobEph.public,
  });
  const bob = deriveSessionSecrets({
    localEphemeralSecret: bobEph.secret,
    localEphemeralPublic: bobEph.public,
    remoteEphemeralPublic: aliceEph.public,
  });
  assert.equal(alice.locIsLeast, true);
  assert.equal(bob.locIsLeast, false);
  assert.equal(toHex(alice.challenge), d.merlin_challenge_SECRET_CONNECTION_MAC);
  assert.equal(toHex(bob.challenge), d.merlin_challenge_SECRET_CONNECTION_MAC);
  assert.equal(toHex(alice.sendSecret), d.alice_send_key);
  assert.equal(toHex(alice.recvSecret), d.alice_recv_key);
  assert.equal(toHex(bob.sendSecret), d.bob_send_key);
  assert.equal(toHex(bob.recvSecret), d.bob_recv_key);
  // Alice holds the lower key, so she receives with okm[0:32] and sends with okm[32:64].
  assert.equal(toHex(alice.recvSecret) + toHex(alice.sendSecret), d.hkdf_okm_for_dh_alice_bob!.slice(0, 128));

  // The upstream AuthSig messages (not derived by anyone here) sign exactly our challenge.
  for (const [who, msg, pk] of [
    ['Alice', u.ALICE_HANDSHAKE_SIG_MSG!, u.ALICE_ED25519_PK!],
    ['Bob', u.BOB_HANDSHAKE_SIG_MSG!, u.BOB_ED25519_PK!],
  ] as const) {
    const { pub, sig } = parseAuthSig(hex(msg));
    assert.equal(toHex(pub), pk);
    assert.ok(ed25519.verify(sig, alice.challenge, pub), `${who}'s upstream signature verifies over the Merlin challenge`);
  }
  assert.equal(toHex(ed25519.sign(alice.challenge, hex(u.ALICE_ED25519_SK!))), d.alice_signature_over_challenge);
  assert.equal(toHex(ed25519.sign(alice.challenge, hex(u.BOB_ED25519_SK!))), d.bob_signature_over_challenge);
});

// ---------------------------------------------------------------------------------------------
// derived_session_transcript.json (signer = Alice, node = Bob)

interface SessionVectors {
  keys: Record<string, string | boolean>;
  steps: { dir: string; what: string; bytes_hex: string; plaintext_hex?: string }[];
}

test('derives the recorded session’s keys from its plaintext ephemeral messages and opens both AuthSig frames', { skip: vectorsSkip }, () => {
  const { keys, steps } = readJson<SessionVectors>('derived_session_transcript.json');
  const ephemeralFrom = (bytesHex: string) => {
    assert.equal(bytesHex.slice(0, 6), '220a20');
    return hex(bytesHex.slice(6));
  };
  const signerPub = ephemeralFrom(steps[0]!.bytes_hex);
  const nodePub = ephemeralFrom(steps[1]!.bytes_hex);
  const signerSecret = hex(keys.signer_ephemeral_x25519_sk as string);
  const nodeSecret = hex(keys.node_ephemeral_x25519_sk as string);

  const signer = deriveSessionSecrets({ localEphemeralSecret: signerSecret, localEphemeralPublic: signerPub, remoteEphemeralPublic: nodePub });
  const node = deriveSessionSecrets({ localEphemeralSecret: nodeSecret, localEphemeralPublic: nodePub, remoteEphemeralPublic: signerPub });
  assert.equal(toHex(computeDhSecret(signerSecret, nodePub)), keys.dh_secret);
  assert.equal(signer.locIsLeast, keys.signer_is_loc_is_least);
  assert.equal(toHex(signer.sendSecret), keys.signer_send_key);
  assert.equal(toHex(signer.recvSecret), keys.node_send_key);
  assert.equal(toHex(node.sendSecret), keys.node_send_key);
  assert.equal(toHex(node.recvSecret), keys.signer_send_key);
  assert.deepEqual(signer.challenge, node.challenge);

  // Frame #0 in each direction is the AuthSigMessage; each opens only with the sender's send key
  // (which is the receiver's recv key) and carries a valid signature over the challenge.
  for (const [step, sendKey, recvKey] of [
    [steps[2]!, signer.sendSecret, node.recvSecret],
    [steps[3]!, node.sendSecret, signer.recvSecret],
  ] as const) {
    const sealed = hex(step.bytes_hex);
    assert.equal(sealed.length, 1044);
    const data = openFrame(recvKey, 0, sealed);
    assert.deepEqual(openFrame(sendKey, 0, sealed), data);
    assert.equal(toHex(data), step.plaintext_hex);
    const { pub, sig } = parseAuthSig(data);
    assert.ok(ed25519.verify(sig, signer.challenge, pub), `${step.dir} AuthSig verifies`);
  }
  assert.throws(() => openFrame(signer.recvSecret, 0, hex(steps[2]!.bytes_hex)), 'the wrong direction’s key does not open the frame');
});

// ---------------------------------------------------------------------------------------------
// Behaviour that needs no vectors

function ephemeral(): { secret: Uint8Array; public: Uint8Array } {
  const secret = x25519.utils.randomSecretKey();
  return { secret, public: x25519.getPublicKey(secret) };
}

test('two fresh peers agree on the challenge and on mirrored send/recv keys', () => {
  for (let i = 0; i < 8; i++) {
    const a = ephemeral();
    const b = ephemeral();
    const sa = deriveSessionSecrets({ localEphemeralSecret: a.secret, localEphemeralPublic: a.public, remoteEphemeralPublic: b.public });
    const sb = deriveSessionSecrets({ localEphemeralSecret: b.secret, localEphemeralPublic: b.public, remoteEphemeralPublic: a.public });
    assert.deepEqual(sa.challenge, sb.challenge);
    assert.deepEqual(sa.sendSecret, sb.recvSecret);
    assert.deepEqual(sa.recvSecret, sb.sendSecret);
    assert.notDeepEqual(sa.sendSecret, sa.recvSecret);
    assert.notEqual(sa.locIsLeast, sb.locIsLeast);
  }
});

test('orders ephemeral keys lexicographically, deciding on the first differing byte', () => {
  const low = new Uint8Array(32).fill(0x10);
  const high = low.slice();
  high[31] = 0x11;
  assert.deepEqual(sortEphemeralKeys(low, high), { lo: low, hi: high, locIsLeast: true });
  assert.deepEqual(sortEphemeralKeys(high, low), { lo: low, hi: high, locIsLeast: false });
  const first = new Uint8Array(32);
  first[0] = 0x01;
  const later = new Uint8Array(32).fill(0xff);
  later[0] = 0x00;
  assert.equal(sortEphemeralKeys(first, later).locIsLeast, false);
});

test('the challenge depends on the order of the ephemeral keys and on the DH secret', () => {
  const a = new Uint8Array(32).fill(1);
  const b = new Uint8Array(32).fill(2);
  const dh = new Uint8Array(32).fill(3);
  const base = makeTranscriptChallenge(a, b, dh);
  assert.equal(base.length, 32);
  assert.notDeepEqual(makeTranscriptChallenge(b, a, dh), base);
  assert.notDeepEqual(makeTranscriptChallenge(a, b, new Uint8Array(32).fill(4)), base);
});

test('refuses low-order peer keys that would force a known DH secret', () => {
  const local = ephemeral();
  // u = 0 and u = 1 are small-order points; p+0 / p+1 encodings (non-canonical) reduce to them.
  const lowOrder = [
    new Uint8Array(32),
    Uint8Array.of(1, ...new Uint8Array(31)),
    hex('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'),
    hex('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'),
    hex('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'),
  ];
  for (const remote of lowOrder) {
    assertKeyError(() => computeDhSecret(local.secret, remote), 'low_order_key');
    assertKeyError(
      () => deriveSessionSecrets({ localEphemeralSecret: local.secret, localEphemeralPublic: local.public, remoteEphemeralPublic: remote }),
      'low_order_key',
    );
  }
});

test('refuses a reflected ephemeral key, a public key not matching the secret, and wrong lengths', () => {
  const a = ephemeral();
  const b = ephemeral();
  assertKeyError(
    () => deriveSessionSecrets({ localEphemeralSecret: a.secret, localEphemeralPublic: a.public, remoteEphemeralPublic: a.public.slice() }),
    'reflected_key',
  );
  assertKeyError(
    () => deriveSessionSecrets({ localEphemeralSecret: a.secret, localEphemeralPublic: b.public, remoteEphemeralPublic: a.public }),
    'key_mismatch',
  );
  assertKeyError(() => deriveSecrets(new Uint8Array(31), true), 'bad_key_length');
  assertKeyError(() => computeDhSecret(a.secret, new Uint8Array(33)), 'bad_key_length');
  assertKeyError(() => sortEphemeralKeys(a.public, new Uint8Array(0)), 'bad_key_length');
  assertKeyError(() => makeTranscriptChallenge(a.public, b.public, new Uint8Array(16)), 'bad_key_length');
});
