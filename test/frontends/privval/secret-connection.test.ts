/**
 * SecretConnection transport: frames and handshake messages against the shared CometBFT/tmkms
 * vectors (read from the shared folder next to the repository, never copied in), then two real
 * connections over TCP on 127.0.0.1, and hostile or silent peers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync, randomBytes, sign as nodeSign } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { isCustosError } from '../../../src/core/errors.js';
import { deriveSessionSecrets } from '../../../src/crypto/secret-connection-kdf.js';
import {
  FRAME_DATA_MAX,
  FRAME_SIZE,
  FrameCipher,
  SEALED_FRAME_SIZE,
  SecretConnection,
  SecretConnectionError,
  authenticatePeer,
  decodeAuthSigMessage,
  decodeEphemeralKeyMessage,
  encodeAuthSigMessage,
  encodeEphemeralKeyMessage,
  type SecretConnectionIdentity,
} from '../../../src/frontends/privval/secret-connection.js';

const REPO_ROOT = new URL('../../../', import.meta.url);
const VECTOR_DIR = new URL('../shared/vectors/cometbft/secret_connection/', REPO_ROOT);
const vectorsSkip = existsSync(fileURLToPath(VECTOR_DIR))
  ? false
  : `the CometBFT SecretConnection vectors come from the shared folder ${fileURLToPath(VECTOR_DIR)}, which is absent`;

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const readJson = <T>(name: string) => JSON.parse(readFileSync(new URL(name, VECTOR_DIR), 'utf8')) as T;

function isSecretConnectionError(code: 'bad_request' | 'unauthorized', tag?: string) {
  return (e: unknown) => {
    assert.ok(isCustosError(e), `expected a CustosError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (tag !== undefined) assert.equal(e.tag, tag);
    return true;
  };
}

/** Strips the one-byte uvarint prefix the handshake messages carry (all are < 128 bytes). */
function body(delimited: Uint8Array): Uint8Array {
  assert.ok(delimited[0]! < 0x80);
  assert.equal(delimited[0], delimited.length - 1);
  return delimited.subarray(1);
}

// ---------------------------------------------------------------------------------------------
// Vectors

interface TranscriptStep {
  dir: 'signer->node' | 'node->signer';
  what: string;
  bytes_hex: string;
  plaintext_hex?: string;
}
interface Transcript {
  keys: Record<string, string | boolean>;
  steps: TranscriptStep[];
}

test('the derived CometBFT session transcript: ephemeral messages encode byte-exactly, every frame opens with the derived keys and re-seals identically, both AuthSigs verify', { skip: vectorsSkip }, () => {
  const t = readJson<Transcript>('derived_session_transcript.json');
  const k = (name: string) => hex(t.keys[name] as string);
  const signerEph = k('signer_ephemeral_x25519_sk');
  const nodeEph = k('node_ephemeral_x25519_sk');
  const signerEphPub = x25519.getPublicKey(signerEph);
  const nodeEphPub = x25519.getPublicKey(nodeEph);

  const [eph1, eph2] = t.steps;
  assert.equal(toHex(encodeEphemeralKeyMessage(signerEphPub)), eph1!.bytes_hex);
  assert.equal(toHex(encodeEphemeralKeyMessage(nodeEphPub)), eph2!.bytes_hex);
  assert.deepEqual(decodeEphemeralKeyMessage(body(hex(eph2!.bytes_hex))), nodeEphPub);

  const signer = deriveSessionSecrets({ localEphemeralSecret: signerEph, localEphemeralPublic: signerEphPub, remoteEphemeralPublic: nodeEphPub });
  const node = deriveSessionSecrets({ localEphemeralSecret: nodeEph, localEphemeralPublic: nodeEphPub, remoteEphemeralPublic: signerEphPub });
  assert.equal(toHex(signer.sendSecret), t.keys['signer_send_key']);
  assert.equal(toHex(node.sendSecret), t.keys['node_send_key']);

  // Receiving side of each direction, and an independent sealer to check our padding and nonces.
  const opener = { 'signer->node': new FrameCipher(node.recvSecret), 'node->signer': new FrameCipher(signer.recvSecret) };
  const sealer = { 'signer->node': new FrameCipher(signer.sendSecret), 'node->signer': new FrameCipher(node.sendSecret) };
  const identities = {
    'signer->node': ed25519.getPublicKey(k('signer_identity_ed25519_seed')),
    'node->signer': ed25519.getPublicKey(k('node_identity_ed25519_seed')),
  };

  const sealedSteps = t.steps.filter((s) => s.plaintext_hex !== undefined);
  assert.equal(sealedSteps.length, 6); // two AuthSigs, PubKey request/response, Ping request/response
  for (const step of sealedSteps) {
    const sealed = hex(step.bytes_hex);
    assert.equal(sealed.length, SEALED_FRAME_SIZE);
    const data = opener[step.dir].open(sealed);
    assert.equal(toHex(data), step.plaintext_hex, step.what);
    assert.equal(toHex(sealer[step.dir].seal(data)), step.bytes_hex, step.what);

    if (step.what.includes('AuthSigMessage')) {
      const msg = decodeAuthSigMessage(body(data));
      assert.deepEqual(msg.publicKey, identities[step.dir]);
      assert.deepEqual(authenticatePeer(msg, signer.challenge, identities[step.dir]), identities[step.dir]);
      assert.equal(toHex(encodeAuthSigMessage(msg)), step.plaintext_hex);
      // The same signature does not verify over another challenge.
      const other = signer.challenge.slice();
      other[0]! ^= 1;
      assert.throws(() => authenticatePeer(msg, other), isSecretConnectionError('unauthorized', 'bad_signature'));
    }
  }
  assert.deepEqual(signer.challenge, node.challenge);
});

test('frames from the vectors are refused when tampered with, replayed or reordered', { skip: vectorsSkip }, () => {
  const t = readJson<Transcript>('derived_session_transcript.json');
  const key = hex(t.keys['signer_send_key'] as string);
  const frames = t.steps.filter((s) => s.dir === 'signer->node' && s.plaintext_hex !== undefined).map((s) => hex(s.bytes_hex));

  for (const position of [0, 3, 4, 500, FRAME_SIZE - 1, FRAME_SIZE, SEALED_FRAME_SIZE - 1]) {
    const tampered = frames[0]!.slice();
    tampered[position]! ^= 0x80;
    assert.throws(() => new FrameCipher(key).open(tampered), isSecretConnectionError('bad_request', 'bad_frame'), `byte ${position}`);
  }
  // Frame 1 under nonce 0 (reordering or dropping a frame), frame 0 twice (replay).
  assert.throws(() => new FrameCipher(key).open(frames[1]!), isSecretConnectionError('bad_request', 'bad_frame'));
  const c = new FrameCipher(key);
  c.open(frames[0]!);
  assert.throws(() => c.open(frames[0]!), isSecretConnectionError('bad_request', 'bad_frame'));
  assert.throws(() => new FrameCipher(key).open(frames[0]!.subarray(1)), isSecretConnectionError('bad_request', 'bad_frame'));
});

interface TmkmsVectors {
  upstream: Record<string, string>;
  upstream_frames: { send_key: string; frames: Array<{ nonce_counter: number; plaintext_ascii: string; ciphertext_hex: string }> };
  derived_by_us: Record<string, string>;
}

test('tmkms-p2p vectors: the "hello"/"world" frames open under counters 0 and 1, and both AuthSigMessages encode and verify', { skip: vectorsSkip }, () => {
  const v = readJson<TmkmsVectors>('tmkms_p2p_handshake.json');
  const opener = new FrameCipher(hex(v.upstream_frames.send_key));
  const sealer = new FrameCipher(hex(v.upstream_frames.send_key));
  for (const frame of v.upstream_frames.frames) {
    assert.equal(opener.counter, BigInt(frame.nonce_counter));
    const data = opener.open(hex(frame.ciphertext_hex));
    assert.equal(Buffer.from(data).toString('ascii'), frame.plaintext_ascii);
    assert.equal(toHex(sealer.seal(data)), frame.ciphertext_hex);
  }

  assert.equal(toHex(encodeEphemeralKeyMessage(hex(v.upstream['ALICE_X25519_PK']!))), v.upstream['ALICE_HANDSHAKE_INITIAL_MSG']);
  const challenge = hex(v.derived_by_us['merlin_challenge_SECRET_CONNECTION_MAC']!);
  for (const [who, sigName] of [['ALICE', 'alice_signature_over_challenge'], ['BOB', 'bob_signature_over_challenge']] as const) {
    const wire = hex(v.upstream[`${who}_HANDSHAKE_SIG_MSG`]!);
    const publicKey = hex(v.upstream[`${who}_ED25519_PK`]!);
    const msg = decodeAuthSigMessage(body(wire));
    assert.deepEqual(msg, { publicKey, signature: hex(v.derived_by_us[sigName]!) });
    assert.equal(toHex(encodeAuthSigMessage(msg)), toHex(wire));
    assert.deepEqual(authenticatePeer(msg, challenge, publicKey), publicKey);
  }
});

// ---------------------------------------------------------------------------------------------
// Pure frame and message rules

function sealRaw(key: Uint8Array, counter: bigint, frame: Uint8Array): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, counter, true);
  return chacha20poly1305(key, nonce).encrypt(frame);
}

test('an authentic frame whose length field exceeds 1024 is refused as bad_length', () => {
  const key = randomBytes(32);
  for (const length of [FRAME_DATA_MAX + 1, FRAME_SIZE, 0xffffffff]) {
    const frame = new Uint8Array(FRAME_SIZE);
    new DataView(frame.buffer).setUint32(0, length, true);
    assert.throws(() => new FrameCipher(key).open(sealRaw(key, 0n, frame)), isSecretConnectionError('bad_request', 'bad_length'));
  }
  const ok = new Uint8Array(FRAME_SIZE);
  new DataView(ok.buffer).setUint32(0, FRAME_DATA_MAX, true);
  assert.equal(new FrameCipher(key).open(sealRaw(key, 0n, ok)).length, FRAME_DATA_MAX);
  assert.throws(() => new FrameCipher(key).seal(new Uint8Array(FRAME_DATA_MAX + 1)), isSecretConnectionError('bad_request', 'oversize'));
});

test('the nonce counter uses 2^64-1 once and then refuses to wrap, for sealing and opening', () => {
  const key = randomBytes(32);
  const last = 2n ** 64n - 1n;
  const sender = new FrameCipher(key, last);
  const receiver = new FrameCipher(key, last);
  const sealed = sender.seal(Uint8Array.of(7));
  assert.deepEqual(receiver.open(sealed), Uint8Array.of(7));
  assert.deepEqual(sealed, sealRaw(key, last, Uint8Array.from([1, 0, 0, 0, 7, ...new Uint8Array(FRAME_SIZE - 5)])));
  assert.throws(() => sender.seal(Uint8Array.of(8)), isSecretConnectionError('bad_request', 'nonce_exhausted'));
  assert.throws(() => receiver.open(sealed), isSecretConnectionError('bad_request', 'nonce_exhausted'));
});

test('every truncation and byte mutation of an AuthSigMessage is refused with a SecretConnectionError or decodes to 32+64 bytes', () => {
  const valid = body(encodeAuthSigMessage({ publicKey: randomBytes(32), signature: randomBytes(64) }));
  for (let n = 0; n < valid.length; n++) {
    assert.throws(() => decodeAuthSigMessage(valid.subarray(0, n)), (e: unknown) => e instanceof SecretConnectionError);
  }
  for (let i = 0; i < valid.length; i++) {
    for (const flip of [0x01, 0x80, 0xff]) {
      const m = valid.slice();
      m[i]! ^= flip;
      try {
        const d = decodeAuthSigMessage(m);
        assert.equal(d.publicKey.length, 32);
        assert.equal(d.signature.length, 64);
      } catch (e) {
        assert.ok(e instanceof SecretConnectionError, String(e));
      }
    }
  }
  // secp256k1 is field 2 of crypto.PublicKey: not a SecretConnection identity we accept.
  const secp = Uint8Array.from([0x0a, 0x23, 0x12, 0x21, ...randomBytes(33), 0x12, 0x40, ...randomBytes(64)]);
  assert.throws(() => decodeAuthSigMessage(secp), isSecretConnectionError('bad_request', 'unsupported_key_type'));
});

// ---------------------------------------------------------------------------------------------
// Over TCP

function makeIdentity(): SecretConnectionIdentity {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = new Uint8Array(Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url'));
  return { publicKey: raw, sign: async (msg) => new Uint8Array(nodeSign(null, msg, privateKey)) };
}

async function listen(onConnection: (socket: net.Socket) => void): Promise<{ port: number; stop: () => void }> {
  const server = net.createServer(onConnection);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, stop: () => server.close() };
}

async function tcpPair(): Promise<{ server: net.Socket; client: net.Socket; stop: () => void }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  const [[accepted]] = await Promise.all([once(server, 'connection'), once(client, 'connect')]);
  return { server: accepted as net.Socket, client, stop: () => server.close() };
}

/** Reads exact byte counts from a SecretConnection, across frame boundaries. */
class Inbox {
  private buf = new Uint8Array(0);
  constructor(private readonly conn: SecretConnection) {}
  async take(n: number): Promise<Uint8Array> {
    while (this.buf.length < n) {
      const chunk = await this.conn.read();
      if (chunk === null) throw new Error(`EOF after ${this.buf.length} of ${n} bytes`);
      assert.ok(chunk.length > 0 && chunk.length <= FRAME_DATA_MAX);
      this.buf = Buffer.concat([this.buf, chunk]);
    }
    const out = this.buf.slice(0, n);
    this.buf = this.buf.slice(n);
    return out;
  }
}

test('two SecretConnections over TCP handshake, exchange 0, 1, 1024, 1025 and 100 KiB both ways, and close cleanly', async () => {
  const { server, client, stop } = await tcpPair();
  const serverId = makeIdentity();
  const clientId = makeIdentity();
  const [s, c] = await Promise.all([
    SecretConnection.handshake(server, serverId, { timeoutMs: 5_000, expectedRemoteKey: clientId.publicKey }),
    SecretConnection.handshake(client, clientId, { timeoutMs: 5_000 }),
  ]);
  assert.deepEqual(s.remotePublicKey, clientId.publicKey);
  assert.deepEqual(c.remotePublicKey, serverId.publicKey);
  // 35-byte ephemeral message + one sealed AuthSig frame.
  assert.equal(client.bytesWritten, 35 + SEALED_FRAME_SIZE);

  const sInbox = new Inbox(s);
  const cInbox = new Inbox(c);
  for (const size of [0, 1, 1024, 1025, 100 * 1024]) {
    const toServer = randomBytes(size);
    const toClient = randomBytes(size);
    const before = client.bytesWritten;
    const [, , atServer, atClient] = await Promise.all([c.write(toServer), s.write(toClient), sInbox.take(size), cInbox.take(size)]);
    assert.deepEqual(Buffer.from(atServer), toServer, `client→server ${size}`);
    assert.deepEqual(Buffer.from(atClient), toClient, `server→client ${size}`);
    assert.equal(client.bytesWritten - before, Math.ceil(size / FRAME_DATA_MAX) * SEALED_FRAME_SIZE, `frames for ${size}`);
  }

  // The async iterator sees the same stream and ends at the peer's close.
  const collected: Uint8Array[] = [];
  const iterating = (async () => {
    for await (const chunk of s) collected.push(chunk);
  })();
  await c.write(Buffer.from('last words'));
  await c.close();
  await iterating;
  assert.equal(Buffer.concat(collected).toString(), 'last words');
  await s.close();
  assert.equal(await s.read(), null);
  assert.equal(await c.read(), null);
  await assert.rejects(c.write(Uint8Array.of(1)), isSecretConnectionError('bad_request', 'connection_closed'));
  assert.ok(client.destroyed && server.destroyed);
  stop();
});

test('pinning the wrong remote key fails the handshake as unauthorized and drops the connection', async () => {
  const { server, client, stop } = await tcpPair();
  const clientId = makeIdentity();
  const [serverResult, clientResult] = await Promise.allSettled([
    SecretConnection.handshake(server, makeIdentity(), { timeoutMs: 5_000, expectedRemoteKey: makeIdentity().publicKey }),
    SecretConnection.handshake(client, clientId, { timeoutMs: 5_000 }),
  ]);
  assert.equal(serverResult.status, 'rejected');
  isSecretConnectionError('unauthorized', 'remote_key_mismatch')(serverResult.reason);
  assert.ok(server.destroyed);
  // The client may have finished its half before the server hung up; it then sees end-of-stream.
  if (clientResult.status === 'fulfilled') {
    assert.equal(await clientResult.value.read(), null);
    await clientResult.value.close();
  } else {
    assert.ok(isCustosError(clientResult.reason), String(clientResult.reason));
  }
  client.destroy();
  stop();
});

/** Runs a server-side handshake against a raw client that sends `bytes`, and returns the error. */
async function handshakeAgainstRawPeer(bytes: Uint8Array, timeoutMs = 5_000): Promise<unknown> {
  const { server, client, stop } = await tcpPair();
  client.on('error', () => {});
  client.on('data', () => {});
  client.write(bytes);
  try {
    await SecretConnection.handshake(server, makeIdentity(), { timeoutMs });
    assert.fail('the handshake should have failed');
  } catch (e) {
    assert.ok(server.destroyed, 'the connection is dropped');
    return e;
  } finally {
    client.destroy();
    stop();
  }
}

test('a peer that sends garbage instead of its ephemeral key is refused as a bad handshake message', async () => {
  isSecretConnectionError('bad_request', 'bad_handshake_message')(await handshakeAgainstRawPeer(new Uint8Array(64).fill(0xff)));
  // Well-framed but not a 32-byte key.
  isSecretConnectionError('bad_request', 'bad_handshake_message')(await handshakeAgainstRawPeer(Uint8Array.from([0x12, 0x0a, 0x10, ...randomBytes(16)])));
  // A low-order point would force a known DH secret.
  isSecretConnectionError('bad_request', 'low_order_key')(await handshakeAgainstRawPeer(encodeEphemeralKeyMessage(new Uint8Array(32))));
});

test('a peer that sends a valid ephemeral key then garbage instead of its AuthSig frame is refused as bad_frame', async () => {
  const garbage = Buffer.concat([encodeEphemeralKeyMessage(x25519.getPublicKey(x25519.utils.randomSecretKey())), randomBytes(SEALED_FRAME_SIZE)]);
  isSecretConnectionError('bad_request', 'bad_frame')(await handshakeAgainstRawPeer(garbage));
});

test('a silent peer hits the handshake timeout', async () => {
  const started = Date.now();
  isSecretConnectionError('bad_request', 'handshake_timeout')(await handshakeAgainstRawPeer(new Uint8Array(0), 200));
  const elapsed = Date.now() - started;
  // Lower bound: it did wait. Upper bound only keeps a missing timeout from hanging the test.
  assert.ok(elapsed >= 150 && elapsed < 10_000, `timed out after ${elapsed} ms`);
});

test('a local identity that never finishes signing (a stuck HSM) also hits the handshake timeout', async () => {
  const { server, client, stop } = await tcpPair();
  const stuck: SecretConnectionIdentity = { publicKey: makeIdentity().publicKey, sign: () => new Promise<Uint8Array>(() => {}) };
  const [stuckSide, peerSide] = await Promise.allSettled([
    SecretConnection.handshake(server, stuck, { timeoutMs: 200 }),
    SecretConnection.handshake(client, makeIdentity(), { timeoutMs: 5_000 }),
  ]);
  assert.equal(stuckSide.status, 'rejected');
  isSecretConnectionError('bad_request', 'handshake_timeout')(stuckSide.reason);
  assert.equal(peerSide.status, 'rejected');
  assert.ok(isCustosError(peerSide.reason), String(peerSide.reason));
  assert.ok(server.destroyed && client.destroyed);
  stop();
});

test('a peer that hangs up in the middle of a frame is reported as truncated_frame', async () => {
  const { server, client, stop } = await tcpPair();
  const [s, c] = await Promise.all([
    SecretConnection.handshake(server, makeIdentity(), { timeoutMs: 5_000 }),
    SecretConnection.handshake(client, makeIdentity(), { timeoutMs: 5_000 }),
  ]);
  await c.write(Uint8Array.of(1, 2, 3));
  client.end(randomBytes(100)); // bypasses the session: a partial frame, then FIN
  assert.deepEqual(await s.read(), Uint8Array.of(1, 2, 3));
  await assert.rejects(s.read(), isSecretConnectionError('bad_request', 'truncated_frame'));
  await s.close();
  await c.close();
  stop();
});

test('a frame tampered with in transit ends the session with bad_frame, without disturbing the process', async () => {
  let accepted!: (s: net.Socket) => void;
  const serverSocket = new Promise<net.Socket>((r) => (accepted = r));
  const real = await listen((s) => accepted(s));
  // A proxy between client and server flips one bit inside the first frame after the handshake.
  const flipAt = 35 + SEALED_FRAME_SIZE + 100;
  const proxy = await listen((inbound) => {
    const outbound = net.connect(real.port, '127.0.0.1');
    let seen = 0;
    inbound.on('data', (chunk: Buffer) => {
      const c = Buffer.from(chunk);
      if (flipAt >= seen && flipAt < seen + c.length) c[flipAt - seen]! ^= 0x01;
      seen += c.length;
      outbound.write(c);
    });
    outbound.pipe(inbound);
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
    };
    for (const s of [inbound, outbound]) {
      s.on('error', () => {});
      s.on('close', drop);
    }
  });

  const client = net.connect(proxy.port, '127.0.0.1');
  const server = await serverSocket;
  const [s, c] = await Promise.all([
    SecretConnection.handshake(server, makeIdentity(), { timeoutMs: 5_000 }),
    SecretConnection.handshake(client, makeIdentity(), { timeoutMs: 5_000 }),
  ]);
  await c.write(randomBytes(300));
  await assert.rejects(s.read(), isSecretConnectionError('bad_request', 'bad_frame'));
  // The session stays dead: later reads repeat the error, writes are refused.
  await assert.rejects(s.read(), isSecretConnectionError('bad_request', 'bad_frame'));
  await assert.rejects(s.write(Uint8Array.of(1)), isSecretConnectionError('bad_request', 'bad_frame'));
  assert.ok(server.destroyed);
  // The honest side just sees the connection go away.
  assert.equal(await c.read().catch((e: unknown) => (isCustosError(e) ? null : e)), null);
  await c.close();
  await s.close();
  proxy.stop();
  real.stop();
});
