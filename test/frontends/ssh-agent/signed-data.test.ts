import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { SshWriter } from '../../../src/crypto/openssh.js';
import { decodeRequest, isCertificate, parsePublicKeyBlob } from '../../../src/frontends/ssh-agent/codec.js';
import { parseSignedData, type SignedData } from '../../../src/frontends/ssh-agent/signed-data.js';

const VECTOR_DIR = new URL('../../../../shared/vectors/ssh-agent/', import.meta.url);
const TRACE = new URL('openssh-9.2p1-agent-trace.jsonl', VECTOR_DIR);
const HAVE_VECTORS = fs.existsSync(fileURLToPath(TRACE));
const SKIP_VECTORS = HAVE_VECTORS
  ? false
  : `ssh-agent vectors not found at ${fileURLToPath(VECTOR_DIR)}; they come from the shared folder ` +
    '(<repo>/../shared/vectors/ssh-agent) and are never copied into the repo';

interface SignCase {
  conn: number;
  mark: string;
  keyBlob: Uint8Array;
  data: Uint8Array;
  flags: number;
  /** sessionId of the latest session-bind on the same connection, if any. */
  boundSession?: Uint8Array;
  boundHostKey?: Uint8Array;
}

function loadSignRequests(): SignCase[] {
  if (!HAVE_VECTORS) return [];
  const out: SignCase[] = [];
  const binds = new Map<number, { sessionId: Uint8Array; hostKey: Uint8Array }>();
  let mark = '';
  for (const line of fs.readFileSync(TRACE, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const j = JSON.parse(line) as { mark?: string; conn: number; dir: string; hex: string };
    if (j.mark !== undefined) {
      mark = j.mark;
      continue;
    }
    if (j.dir !== 'req') continue;
    const r = decodeRequest(new Uint8Array(Buffer.from(j.hex, 'hex')));
    if (r.type === 'session_bind') binds.set(j.conn, { sessionId: r.sessionId, hostKey: r.hostKey });
    if (r.type === 'sign_request') {
      const bind = binds.get(j.conn);
      out.push({
        conn: j.conn,
        mark,
        keyBlob: r.keyBlob,
        data: r.data,
        flags: r.flags,
        boundSession: bind?.sessionId,
        boundHostKey: bind?.hostKey,
      });
    }
  }
  return out;
}

function pubBlob(file: string): Uint8Array {
  const [, b64] = fs.readFileSync(new URL(`test-keys/${file}`, VECTOR_DIR), 'utf8').trim().split(/\s+/);
  return new Uint8Array(Buffer.from(b64!, 'base64'));
}

const signs = loadSignRequests();
const hex = (b: Uint8Array | undefined) => (b === undefined ? 'none' : Buffer.from(b).toString('hex'));

describe('signed data in the OpenSSH 9.2p1 trace', { skip: SKIP_VECTORS }, () => {
  test('every ssh login signs a host-bound userauth request naming root, ssh-connection and the sshd host key', () => {
    const logins = signs.filter((s) => s.boundSession !== undefined);
    assert.equal(logins.length, 7);
    const hostKey = pubBlob('sshd_hostkey.pub');
    const algorithms = new Set<string>();
    for (const s of logins) {
      const d = parseSignedData(s.data);
      assert.equal(d.kind, 'userauth', s.mark);
      if (d.kind !== 'userauth') continue;
      assert.equal(d.user, 'root');
      assert.equal(d.service, 'ssh-connection');
      assert.equal(hex(d.hostKeyBlob), hex(hostKey));
      // The agent can tie the request to the connection's session-bind.
      assert.equal(hex(d.sessionId), hex(s.boundSession));
      assert.equal(hex(s.boundHostKey), hex(hostKey));
      algorithms.add(d.algorithm);
      // The signing key is the request's key, or the certificate built on it.
      const inner = parsePublicKeyBlob(d.keyBlob);
      if (isCertificate(inner)) {
        assert.equal(d.algorithm, 'ssh-ed25519-cert-v01@openssh.com');
        assert.equal(hex(d.keyBlob), hex(pubBlob('k_ed25519-cert.pub')));
        assert.equal(hex(s.keyBlob), hex(pubBlob('k_ed25519.pub')));
      } else {
        assert.equal(hex(d.keyBlob), hex(s.keyBlob));
      }
    }
    assert.deepEqual([...algorithms].sort(), [
      'ecdsa-sha2-nistp256',
      'rsa-sha2-512',
      'ssh-ed25519',
      'ssh-ed25519-cert-v01@openssh.com',
    ]);
  });

  test('ssh-keygen -Y sign asks for an SSHSIG blob in namespace "file" with a SHA-512 hash', () => {
    const sigs = signs.filter((s) => s.mark.startsWith('ssh-keygen -Y sign'));
    assert.equal(sigs.length, 2);
    for (const s of sigs) {
      const d = parseSignedData(s.data);
      assert.deepEqual({ ...d, hash: d.kind === 'sshsig' ? d.hash.length : -1 }, {
        kind: 'sshsig',
        namespace: 'file',
        hashAlgorithm: 'sha512',
        hash: 64,
      });
    }
  });

  test('ssh-add -T challenges and the certificate body ssh-keygen -s signs are not mistaken for either', () => {
    const others = signs.filter((s) => s.mark.startsWith('ssh-add -T') || s.mark.startsWith('ssh-keygen -s'));
    assert.equal(others.length, 5);
    for (const s of others) assert.deepEqual(parseSignedData(s.data), { kind: 'unknown' }, s.mark);
  });

  test('no truncation or single-byte change of a trace blob makes the parser throw', () => {
    for (const s of signs) {
      for (let n = 0; n <= s.data.length; n++) parseSignedData(s.data.subarray(0, n));
      for (let i = 0; i < s.data.length; i += 7) {
        const m = s.data.slice();
        m[i] = m[i]! ^ 0xff;
        parseSignedData(m);
      }
    }
  });
});

describe('signed data, synthetic', () => {
  const userauth = (method: string, flag = 1, extra?: Uint8Array) => {
    const w = new SshWriter()
      .string(Uint8Array.of(1, 2, 3))
      .u8(50)
      .string('alice')
      .string('ssh-connection')
      .string(method)
      .u8(flag)
      .string('ssh-ed25519')
      .string(Uint8Array.of(9));
    if (extra) w.raw(extra);
    return w.finish();
  };

  test('a plain publickey request has no host key', () => {
    const d = parseSignedData(userauth('publickey'));
    assert.deepEqual(d, {
      kind: 'userauth',
      sessionId: Uint8Array.of(1, 2, 3),
      user: 'alice',
      service: 'ssh-connection',
      algorithm: 'ssh-ed25519',
      keyBlob: Uint8Array.of(9),
    } satisfies SignedData);
  });

  test('the shape checks OpenSSH applies: method, signature flag, no trailing bytes', () => {
    assert.equal(parseSignedData(userauth('password')).kind, 'unknown');
    assert.equal(parseSignedData(userauth('publickey', 0)).kind, 'unknown');
    assert.equal(parseSignedData(userauth('publickey', 1, Uint8Array.of(0))).kind, 'unknown');
    // hostbound without its host key is truncated
    assert.equal(parseSignedData(userauth('publickey-hostbound-v00@openssh.com')).kind, 'unknown');
    const hb = parseSignedData(userauth('publickey-hostbound-v00@openssh.com', 1, new SshWriter().string('hk').finish()));
    assert.equal(hb.kind === 'userauth' && Buffer.from(hb.hostKeyBlob ?? []).toString(), 'hk');
  });

  test('SSHSIG: a non-empty reserved field is ignored, an empty namespace is not SSHSIG', () => {
    const sshsig = (ns: string, reserved: string) =>
      Uint8Array.from([
        ...Buffer.from('SSHSIG'),
        ...new SshWriter().string(ns).string(reserved).string('sha256').string(new Uint8Array(32)).finish(),
      ]);
    assert.equal(parseSignedData(sshsig('git', 'future')).kind, 'sshsig');
    assert.equal(parseSignedData(sshsig('', '')).kind, 'unknown');
    assert.equal(parseSignedData(Buffer.from('SSHSIG')).kind, 'unknown');
  });

  test('random bytes are unknown and never throw', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }),
          fc.uint8Array({ maxLength: 200 }).map((b) => Uint8Array.from([...Buffer.from('SSHSIG'), ...b])),
          fc.uint8Array({ maxLength: 200 }).map((b) => Uint8Array.from([0, 0, 0, 1, 7, 50, ...b])),
        ),
        (b) => {
          const d = parseSignedData(b);
          assert.ok(d.kind === 'unknown' || d.kind === 'userauth' || d.kind === 'sshsig', d.kind);
        },
      ),
      { numRuns: 5000 },
    );
    assert.deepEqual(parseSignedData(new Uint8Array(0)), { kind: 'unknown' });
  });
});
