import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
} from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { p256 } from '@noble/curves/nist.js';
import {
  SSH_MAX_INPUT,
  SshFormatError,
  SshReader,
  SshWriter,
  encodeOpenSshPublicKey,
  parseOpenSshPrivateKey,
  sshPublicKeyBlob,
  type ParsedOpenSshKey,
} from '../../src/crypto/openssh.js';

// ---------------------------------------------------------------------------
// Fixtures: real keys from OpenSSH's own ssh-keygen
// ---------------------------------------------------------------------------

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-openssh-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Generated {
  priv: string;
  pub: string;
  /** Fields of the .pub line: type, base64 blob, comment. */
  pubFields: [string, string, string];
}

function keygen(name: string, args: string[], passphrase = '', comment = `${name}@custos-test`): Generated {
  const file = path.join(tmp, name);
  const r = spawnSync('ssh-keygen', ['-q', ...args, '-N', passphrase, '-C', comment, '-f', file], {
    encoding: 'utf8',
  });
  if (r.error) throw new Error('ssh-keygen is not installed: apt-get install -y openssh-client');
  assert.equal(r.status, 0, `ssh-keygen failed: ${r.stderr}`);
  const pub = fs.readFileSync(`${file}.pub`, 'utf8');
  const [type, b64, ...rest] = pub.trim().split(' ');
  return {
    priv: fs.readFileSync(file, 'utf8'),
    pub,
    pubFields: [type!, b64!, rest.join(' ')],
  };
}

const ed = keygen('ed25519', ['-t', 'ed25519']);
const ec = keygen('p256', ['-t', 'ecdsa', '-b', '256']);
const rsa = keygen('rsa2048', ['-t', 'rsa', '-b', '2048']);

/** Test-side armor handling, deliberately independent of the module's. */
function dearmor(text: string): Uint8Array {
  const body = text
    .replace('-----BEGIN OPENSSH PRIVATE KEY-----', '')
    .replace('-----END OPENSSH PRIVATE KEY-----', '')
    .replace(/\s+/g, '');
  return new Uint8Array(Buffer.from(body, 'base64'));
}

function armor(blob: Uint8Array): string {
  const b64 = Buffer.from(blob).toString('base64');
  const lines = b64.match(/.{1,70}/g) ?? [];
  return ['-----BEGIN OPENSSH PRIVATE KEY-----', ...lines, '-----END OPENSSH PRIVATE KEY-----', ''].join('\n');
}

const blobs = { ed25519: dearmor(ed.priv), p256: dearmor(ec.priv), rsa: dearmor(rsa.priv) };

/** Offset of the private section (after its uint32 length) inside a decoded blob. */
function privateSectionOffset(blob: Uint8Array): number {
  const r = new SshReader(blob);
  r.bytes(15); // "openssh-key-v1\0"
  r.string(); // cipher
  r.string(); // kdf
  r.string(); // kdf options
  r.u32(); // nkeys
  r.string(); // public key
  r.u32(); // private section length
  return r.offset;
}

function expectFormatError(fn: () => unknown, pattern?: RegExp): SshFormatError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof SshFormatError, `expected SshFormatError, got ${String(caught)}`);
  assert.equal(caught.code, 'invalid_key_material');
  if (pattern) assert.match(caught.message, pattern);
  return caught;
}

/** The property under test: parse cleanly or fail with SshFormatError, nothing else. */
function parsesOrFormatError(input: string | Uint8Array): ParsedOpenSshKey | undefined {
  try {
    return parseOpenSshPrivateKey(input);
  } catch (err) {
    if (err instanceof SshFormatError) return undefined;
    throw err;
  }
}

const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const msg = new TextEncoder().encode('custos openssh import test');

// ---------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------

describe('SSH wire format (RFC 4251 §5)', () => {
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

  test('writer matches the RFC 4251 examples', () => {
    assert.equal(hex(new SshWriter().mpint(0n).finish()), '00000000');
    assert.equal(hex(new SshWriter().mpint(0x9a378f9b2e332a7n).finish()), '0000000809a378f9b2e332a7');
    assert.equal(hex(new SshWriter().mpint(0x80n).finish()), '000000020080');
    assert.equal(hex(new SshWriter().mpint(Uint8Array.of(0, 0, 0x80)).finish()), '000000020080');
    assert.equal(hex(new SshWriter().string('testing').finish()), '0000000774657374696e67');
    assert.equal(hex(new SshWriter().u32(0x29b7f4aa).finish()), '29b7f4aa');
  });

  test('reader decodes the RFC 4251 examples', () => {
    const r = new SshReader(Buffer.from('000000020080' + '00000000' + '0000000809a378f9b2e332a7' + 'ffffffff', 'hex'));
    assert.equal(hex(r.mpint()), '80');
    assert.equal(r.mpint().length, 0);
    assert.equal(hex(r.mpint()), '09a378f9b2e332a7');
    assert.equal(r.u32(), 0xffffffff);
    assert.equal(r.remaining, 0);
    r.end();
  });

  test('reader refuses negative mpints, overruns and oversized input', () => {
    expectFormatError(() => new SshReader(Buffer.from('00000002edcc', 'hex')).mpint(), /negative/);
    expectFormatError(() => new SshReader(Buffer.from('000000', 'hex')).u32(), /truncated/);
    expectFormatError(() => new SshReader(Buffer.from('ffffffff00', 'hex')).string(), /truncated/);
    expectFormatError(() => new SshReader(Buffer.from('00000001', 'hex')).string(), /truncated/);
    expectFormatError(() => new SshReader(new Uint8Array(0)).u8(), /truncated/);
    expectFormatError(() => new SshReader(Buffer.from('000000026100', 'hex')).text(), /NUL/);
    expectFormatError(() => new SshReader(new Uint8Array(SSH_MAX_INPUT + 1)), /too large/);
    expectFormatError(() => new SshReader(Uint8Array.of(1)).end(), /trailing/);
    const big = new SshWriter().u32(2050).raw(new Uint8Array(2050).fill(1)).finish();
    expectFormatError(() => new SshReader(big).mpint(), /too large/);
  });

  test('reader tolerates superfluous leading zeros in mpints like OpenSSH', () => {
    assert.equal(hex(new SshReader(Buffer.from('00000003000001', 'hex')).mpint()), '01');
  });

  test('round trip (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ k: fc.constant('u32' as const), v: fc.integer({ min: 0, max: 0xffffffff }) }),
            fc.record({ k: fc.constant('str' as const), v: fc.uint8Array({ maxLength: 64 }) }),
            fc.record({ k: fc.constant('mp' as const), v: fc.bigInt({ min: 0n, max: (1n << 600n) - 1n }) }),
          ),
          { maxLength: 12 },
        ),
        (items) => {
          const w = new SshWriter();
          for (const it of items) {
            if (it.k === 'u32') w.u32(it.v);
            else if (it.k === 'str') w.string(it.v);
            else w.mpint(it.v);
          }
          const r = new SshReader(w.finish());
          for (const it of items) {
            if (it.k === 'u32') assert.equal(r.u32(), it.v);
            else if (it.k === 'str') assert.deepEqual(r.string(), it.v);
            else {
              const mag = r.mpint();
              assert.equal(mag.length === 0 ? 0n : BigInt('0x' + hex(mag)), it.v);
            }
          }
          r.end();
        },
      ),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------
// Real keys
// ---------------------------------------------------------------------------

describe('parseOpenSshPrivateKey with ssh-keygen keys', () => {
  test('ed25519: public key, comment, and a working seed', () => {
    const k = parseOpenSshPrivateKey(ed.priv);
    assert.equal(k.algorithm, 'ed25519');
    if (k.algorithm !== 'ed25519') return;
    assert.equal(k.secret.length, 32);
    assert.equal(k.publicKey.length, 32);
    assert.equal(k.comment, 'ed25519@custos-test');
    assert.equal(encodeOpenSshPublicKey(k, k.comment), ed.pubFields.join(' '));
    assert.equal(encodeOpenSshPublicKey(k), ed.pubFields.slice(0, 2).join(' '));
    assert.deepEqual(Buffer.from(sshPublicKeyBlob(k)).toString('base64'), ed.pubFields[1]);

    // RFC 8410 PKCS#8 wrapping of the bare 32-byte seed.
    const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), k.secret]);
    const priv = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    const sig = nodeSign(null, msg, priv);
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64url(k.publicKey) }, format: 'jwk' });
    assert.ok(nodeVerify(null, msg, pub, sig));
  });

  test('ecdsa P-256: public key, comment, and a working scalar', () => {
    const k = parseOpenSshPrivateKey(ec.priv);
    assert.equal(k.algorithm, 'p256');
    if (k.algorithm !== 'p256') return;
    assert.equal(k.secret.length, 32);
    assert.equal(k.publicKey.length, 65);
    assert.equal(k.publicKey[0], 4);
    assert.equal(k.comment, 'p256@custos-test');
    assert.equal(encodeOpenSshPublicKey(k, k.comment), ec.pubFields.join(' '));
    // A compressed point must produce the same (uncompressed) encoding.
    const compressed = p256.Point.fromBytes(k.publicKey).toBytes(true);
    assert.equal(encodeOpenSshPublicKey({ algorithm: 'p256', publicKey: compressed }, k.comment), ec.pubFields.join(' '));

    const x = k.publicKey.subarray(1, 33);
    const y = k.publicKey.subarray(33);
    const priv = createPrivateKey({
      key: { kty: 'EC', crv: 'P-256', d: b64url(k.secret), x: b64url(x), y: b64url(y) },
      format: 'jwk',
    });
    const pub = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64url(x), y: b64url(y) }, format: 'jwk' });
    assert.ok(nodeVerify('sha256', msg, pub, nodeSign('sha256', msg, priv)));
  });

  test('rsa 2048: PKCS#8 loads, SPKI matches, encodes to the .pub line', () => {
    const k = parseOpenSshPrivateKey(rsa.priv);
    assert.equal(k.algorithm, 'rsa');
    if (k.algorithm !== 'rsa') return;
    assert.equal(k.bits, 2048);
    assert.equal(k.comment, 'rsa2048@custos-test');
    const priv = createPrivateKey({ key: Buffer.from(k.pkcs8), format: 'der', type: 'pkcs8' });
    assert.equal(priv.asymmetricKeyType, 'rsa');
    const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
    assert.deepEqual(new Uint8Array(spki), k.publicKey);
    assert.equal(encodeOpenSshPublicKey({ algorithm: 'rsa', spki: k.publicKey }, k.comment), rsa.pubFields.join(' '));
    const pub = createPublicKey({ key: Buffer.from(k.publicKey), format: 'der', type: 'spki' });
    assert.ok(nodeVerify('sha256', msg, pub, nodeSign('sha256', msg, priv)));
  });

  test('accepts file bytes, CRLF line endings and the decoded blob; leaves caller buffers alone', () => {
    const want = parseOpenSshPrivateKey(ed.priv);
    assert.deepEqual(parseOpenSshPrivateKey(new TextEncoder().encode(ed.priv)), want);
    assert.deepEqual(parseOpenSshPrivateKey(ed.priv.replace(/\n/g, '\r\n')), want);
    const blob = Uint8Array.from(blobs.ed25519);
    assert.deepEqual(parseOpenSshPrivateKey(blob), want);
    assert.deepEqual(blob, blobs.ed25519);
  });

  test('encrypted key is rejected with instructions to strip the passphrase', () => {
    const enc = keygen('ed25519-enc', ['-t', 'ed25519'], 'secretpw');
    const err = expectFormatError(() => parseOpenSshPrivateKey(enc.priv), /ssh-keygen -p/);
    assert.match(err.message, /encrypted/);
    assert.ok(!err.message.includes('secretpw'));
  });

  test('unsupported key types and RSA sizes are rejected by name', () => {
    const p384 = keygen('p384', ['-t', 'ecdsa', '-b', '384']);
    expectFormatError(() => parseOpenSshPrivateKey(p384.priv), /unsupported key type "ecdsa-sha2-nistp384"/);
    const rsa1024 = keygen('rsa1024', ['-t', 'rsa', '-b', '1024']);
    expectFormatError(() => parseOpenSshPrivateKey(rsa1024.priv), /1024 bits is not supported/);
  });

  test('PEM / PKCS#8 keys get a conversion hint', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n';
    expectFormatError(() => parseOpenSshPrivateKey(pem), /ssh-keygen -p/);
  });
});

// ---------------------------------------------------------------------------
// Targeted corruption
// ---------------------------------------------------------------------------

describe('corrupted keys', () => {
  const mutate = (blob: Uint8Array, at: number, xor: number): Uint8Array => {
    const c = Uint8Array.from(blob);
    c[at]! ^= xor;
    return c;
  };

  test('differing check-ints', () => {
    for (const blob of Object.values(blobs)) {
      const bad = mutate(blob, privateSectionOffset(blob), 0x01);
      expectFormatError(() => parseOpenSshPrivateKey(armor(bad)), /check-ints/);
    }
  });

  test('wrong padding byte', () => {
    for (const blob of Object.values(blobs)) {
      // Trailing padding byte, unless this key happened to need no padding.
      const last = blob[blob.length - 1]!;
      if (last > 7) continue;
      expectFormatError(() => parseOpenSshPrivateKey(mutate(blob, blob.length - 1, 0x40)), /padding/);
    }
  });

  test('header public key disagreeing with the private section', () => {
    for (const blob of Object.values(blobs)) {
      // Last byte of the header public blob sits right before the private section length.
      const at = privateSectionOffset(blob) - 5;
      expectFormatError(() => parseOpenSshPrivateKey(mutate(blob, at, 0x01)), /disagree/);
    }
  });

  test('ed25519 seed that does not match the stored public key', () => {
    const blob = blobs.ed25519;
    // Private section: check-int x2, string type, string pk(32), string sk(64) = seed || pk.
    const seedAt = privateSectionOffset(blob) + 8 + 4 + 'ssh-ed25519'.length + 4 + 32 + 4;
    expectFormatError(() => parseOpenSshPrivateKey(mutate(blob, seedAt, 0x01)), /does not match/);
  });

  test('trailing data and multiple keys', () => {
    expectFormatError(() => parseOpenSshPrivateKey(ed.priv + ed.priv), /after the END line/);
    const extra = new Uint8Array(blobs.ed25519.length + 1);
    extra.set(blobs.ed25519);
    expectFormatError(() => parseOpenSshPrivateKey(extra), /trailing/);
  });
});

// ---------------------------------------------------------------------------
// Robustness properties: parse or SshFormatError, never anything else
// ---------------------------------------------------------------------------

describe('robustness', () => {
  const allBlobs = Object.values(blobs);

  test('every truncation of a valid blob is rejected with SshFormatError', { timeout: 10_000 }, () => {
    for (const blob of allBlobs) {
      for (let len = 0; len < blob.length; len++) {
        expectFormatError(() => parseOpenSshPrivateKey(blob.subarray(0, len)));
      }
    }
  });

  test('every truncation of the armored text is rejected (property)', { timeout: 10_000 }, () => {
    const texts = [ed.priv, ec.priv, rsa.priv];
    fc.assert(
      fc.property(fc.constantFrom(...texts), fc.nat(), (text, cut) => {
        const t = text.slice(0, cut % text.trimEnd().length);
        expectFormatError(() => parseOpenSshPrivateKey(t));
      }),
      { numRuns: 300 },
    );
  });

  test('random byte mutations parse or throw SshFormatError', { timeout: 10_000 }, () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...allBlobs),
        fc.array(fc.record({ pos: fc.nat(), val: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        (blob, muts, armored) => {
          const c = Uint8Array.from(blob);
          for (const m of muts) c[m.pos % c.length] = m.val;
          parsesOrFormatError(armored ? armor(c) : c);
        },
      ),
      { numRuns: 1500 },
    );
  });

  test('random insertions and deletions parse or throw SshFormatError', { timeout: 10_000 }, () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...allBlobs),
        fc.nat(),
        fc.nat({ max: 16 }),
        fc.uint8Array({ maxLength: 16 }),
        (blob, at, del, ins) => {
          const pos = at % blob.length;
          const c = new Uint8Array([...blob.subarray(0, pos), ...ins, ...blob.subarray(Math.min(blob.length, pos + del))]);
          parsesOrFormatError(c);
        },
      ),
      { numRuns: 1000 },
    );
  });

  test('random bytes in valid PEM armor throw SshFormatError', { timeout: 10_000 }, () => {
    const magic = new TextEncoder().encode('openssh-key-v1\0');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000, size: 'max' }), fc.boolean(), (bytes, withMagic) => {
        const blob = withMagic ? new Uint8Array([...magic, ...bytes]) : bytes;
        expectFormatError(() => parseOpenSshPrivateKey(armor(blob)));
      }),
      { numRuns: 500 },
    );
  });

  test('arbitrary text throws SshFormatError', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 500, unit: 'binary-ascii' }),
          fc.string({ maxLength: 60, unit: 'binary' }),
          fc.string({ maxLength: 500, unit: fc.constantFrom(...'ABCDEFabcdef0123456789+/=\n\r '.split('')) }),
        ),
        fc.boolean(),
        (s, prefixed) => {
          const text = prefixed ? `-----BEGIN OPENSSH PRIVATE KEY-----\n${s}\n-----END OPENSSH PRIVATE KEY-----\n` : s;
          expectFormatError(() => parseOpenSshPrivateKey(text));
        },
      ),
      { numRuns: 500 },
    );
  });

  test('well-framed files with random private-section fields parse or throw SshFormatError', { timeout: 10_000 }, () => {
    // Gets past the outer framing, check-ints and type match so the
    // per-algorithm field validation is what gets exercised.
    const headers = allBlobs.map((b) => {
      const r = new SshReader(b);
      r.bytes(15);
      r.string();
      r.string();
      r.string();
      r.u32();
      const pub = r.string().slice();
      return { pub, type: new TextDecoder().decode(new SshReader(pub).string()) };
    });
    const field = fc.oneof(
      fc.uint8Array({ maxLength: 80, size: 'max' }),
      fc.constantFrom(32, 64, 65, 256, 257).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...headers),
        fc.array(field, { maxLength: 7 }),
        fc.boolean(),
        (h, fields, curve) => {
          const p = new SshWriter().u32(7).u32(7).string(h.type);
          if (curve && h.type.startsWith('ecdsa')) p.string('nistp256');
          for (const f of fields) p.string(f);
          p.string('comment');
          let priv = p.finish();
          const padded = new Uint8Array(Math.ceil(priv.length / 8) * 8);
          padded.set(priv);
          for (let i = priv.length, n = 1; i < padded.length; i++, n++) padded[i] = n;
          priv = padded;
          const blob = new SshWriter()
            .raw(new TextEncoder().encode('openssh-key-v1\0'))
            .string('none')
            .string('none')
            .string(new Uint8Array(0))
            .u32(1)
            .string(h.pub)
            .string(priv)
            .finish();
          parsesOrFormatError(blob);
        },
      ),
      { numRuns: 1000 },
    );
  });

  test('random-bytes RSA parameters behind a valid header are rejected', () => {
    const rsaHeader = new SshReader(blobs.rsa);
    rsaHeader.bytes(15);
    for (let i = 0; i < 3; i++) rsaHeader.string();
    rsaHeader.u32();
    const pub = rsaHeader.string();
    const hr = new SshReader(pub);
    hr.text();
    const e = hr.mpint();
    const n = hr.mpint();
    const p = new SshWriter().u32(1).u32(1).string('ssh-rsa').mpint(n).mpint(e);
    for (let i = 0; i < 4; i++) p.mpint(randomBytes(128));
    p.string('c');
    let priv = p.finish();
    const padded = new Uint8Array(Math.ceil(priv.length / 8) * 8);
    padded.set(priv);
    for (let i = priv.length, k = 1; i < padded.length; i++, k++) padded[i] = k;
    priv = padded;
    const blob = new SshWriter()
      .raw(new TextEncoder().encode('openssh-key-v1\0'))
      .string('none')
      .string('none')
      .string(new Uint8Array(0))
      .u32(1)
      .string(pub)
      .string(priv)
      .finish();
    expectFormatError(() => parseOpenSshPrivateKey(blob), /inconsistent/);
  });
});

describe('encodeOpenSshPublicKey input validation', () => {
  test('rejects bad lengths, off-curve points, non-RSA SPKI and multi-line comments', () => {
    expectFormatError(() => encodeOpenSshPublicKey({ algorithm: 'ed25519', publicKey: new Uint8Array(31) }));
    expectFormatError(() => encodeOpenSshPublicKey({ algorithm: 'p256', publicKey: new Uint8Array(64) }));
    const off = new Uint8Array(65);
    off[0] = 4;
    off[64] = 1;
    expectFormatError(() => encodeOpenSshPublicKey({ algorithm: 'p256', publicKey: off }), /invalid P-256/);
    const edSpki = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: b64url(new Uint8Array(32).fill(9)) },
      format: 'jwk',
    }).export({ format: 'der', type: 'spki' });
    expectFormatError(() => encodeOpenSshPublicKey({ algorithm: 'rsa', spki: edSpki }), /RSA/);
    expectFormatError(() => encodeOpenSshPublicKey({ algorithm: 'rsa', spki: new Uint8Array(10) }), /RSA/);
    const k = parseOpenSshPrivateKey(ed.priv);
    if (k.algorithm !== 'ed25519') throw new Error('unreachable');
    expectFormatError(() => encodeOpenSshPublicKey(k, 'a\nssh-ed25519 AAAA evil'), /single line/);
  });
});
