/**
 * Merlin transcripts against the published transcripts of oasisprotocol/curve25519-voi
 * (`primitives/merlin/merlin_test.go`), the Merlin implementation CometBFT links against.
 * The vectors are read from the shared folder next to the repository, never copied in.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MerlinTranscript } from '../../src/crypto/merlin.js';

const REPO_ROOT = new URL('../../', import.meta.url);
const VECTOR_DIR = new URL('../shared/vectors/cometbft/secret_connection/', REPO_ROOT);
const vectorsSkip = existsSync(fileURLToPath(VECTOR_DIR))
  ? false
  : `the CometBFT vectors come from the shared folder ${fileURLToPath(VECTOR_DIR)}, which is absent`;

const ascii = (s: string) => new TextEncoder().encode(s);
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

interface MerlinCase {
  id: string;
  steps: unknown;
  expected_hex: string;
}

function loadCases(): Map<string, MerlinCase> {
  const json = JSON.parse(readFileSync(new URL('merlin.json', VECTOR_DIR), 'utf8')) as { cases: MerlinCase[] };
  return new Map(json.cases.map((c) => [c.id, c]));
}

test('reproduces the curve25519-voi simple transcript by replaying its steps', { skip: vectorsSkip }, () => {
  const c = loadCases().get('TestSimpleTranscript');
  assert.ok(c && Array.isArray(c.steps), 'merlin.json has the simple transcript as a list of steps');
  let transcript: MerlinTranscript | undefined;
  let last: Uint8Array | undefined;
  for (const step of c.steps as unknown[][]) {
    const [op, label, arg] = step as [string, string, string | number | undefined];
    if (op === 'new') transcript = new MerlinTranscript(label);
    else if (op === 'append') transcript!.appendMessage(label, ascii(String(arg)));
    else if (op === 'challenge') last = transcript!.challengeBytes(label, Number(arg));
    else assert.fail(`unknown step ${op}`);
  }
  assert.equal(toHex(last!), c.expected_hex);
});

test('reproduces the curve25519-voi complex transcript (32 rounds, 1 KiB messages spanning many blocks)', { skip: vectorsSkip }, () => {
  const c = loadCases().get('TestComplexTranscript');
  assert.ok(c, 'merlin.json has the complex transcript');
  // The steps are prose in the vector file; this is its procedure.
  const transcript = new MerlinTranscript('test protocol');
  transcript.appendMessage('step1', ascii('some data'));
  const bigdata = new Uint8Array(1024).fill(0x63);
  let challenge: Uint8Array = new Uint8Array(0);
  for (let i = 0; i < 32; i++) {
    challenge = transcript.challengeBytes('challenge', 32);
    transcript.appendMessage('bigdata', bigdata);
    transcript.appendMessage('challengedata', challenge);
  }
  assert.equal(toHex(challenge), c.expected_hex);
});

test('treats a string label and its UTF-8 bytes as the same label', () => {
  const a = new MerlinTranscript('proto');
  const b = new MerlinTranscript('proto');
  a.appendMessage('label', ascii('m'));
  b.appendMessage(ascii('label'), ascii('m'));
  assert.deepEqual(a.challengeBytes('c', 64), b.challengeBytes(ascii('c'), 64));
});

test('binds the challenge to every label, message and length', () => {
  const challenge = (protocol: string, label: string, message: string, length: number) => {
    const t = new MerlinTranscript(protocol);
    t.appendMessage(label, ascii(message));
    return toHex(t.challengeBytes('c', length));
  };
  const base = challenge('p', 'l', 'm', 32);
  assert.notEqual(challenge('q', 'l', 'm', 32), base);
  assert.notEqual(challenge('p', 'k', 'm', 32), base);
  assert.notEqual(challenge('p', 'l', 'n', 32), base);
  // The requested length is absorbed before squeezing, so a shorter challenge is not a prefix.
  assert.notEqual(challenge('p', 'l', 'm', 16), base.slice(0, 32));
});

test('squeezes challenges longer than one STROBE block and successive challenges differ', () => {
  const t = new MerlinTranscript('p');
  const long = t.challengeBytes('c', 500);
  assert.equal(long.length, 500);
  assert.notDeepEqual(long.subarray(0, 166), long.subarray(166, 332));
  assert.notDeepEqual(t.challengeBytes('c', 32), t.challengeBytes('c', 32));
  assert.equal(t.challengeBytes('c', 0).length, 0);
});

test('refuses invalid challenge lengths and use after wipe', () => {
  const t = new MerlinTranscript('p');
  assert.throws(() => t.challengeBytes('c', -1), RangeError);
  assert.throws(() => t.challengeBytes('c', 1.5), RangeError);
  assert.throws(() => t.challengeBytes('c', 2 ** 32), RangeError);
  t.wipe();
  assert.throws(() => t.challengeBytes('c', 32), /after wipe/);
  assert.throws(() => t.appendMessage('l', ascii('m')), /after wipe/);
});
