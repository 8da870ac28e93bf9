/**
 * The switching parsers (state files of FilePV, Horcrux and tmkms; tmkms.toml; softsign keys):
 * what they read from known forms, and, on random, truncated, oversized and hostile input,
 * a typed CustosError and never anything else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { CustosError } from '../../src/core/errors.js';
import { parseValidatorState } from '../../src/migrate/cometbft-state.js';
import { readTmkmsConfig, softsignSeed } from '../../src/migrate/tmkms.js';
import { tempDir } from '../helpers/tmpvault.js';

const enc = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
const typed = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof CustosError)) throw e;
  }
};

test('state files: FilePV as is, Horcrux rounds as strings, tmkms steps shifted by one, and the expected origin enforced', () => {
  assert.deepEqual(parseValidatorState(enc({ height: '5', round: 0, step: 3, signature: 'AAAA', signbytes: 'ab' }), 'f'), { origin: 'filepv', state: { height: '5', round: 0, step: 3, sign_bytes: 'ab', signature: 'AAAA' } });
  assert.deepEqual(parseValidatorState(enc({ height: '5', round: '2', step: 2, signature: '', signbytes: '' }), 'f').state, { height: '5', round: 2, step: 2 });
  assert.deepEqual(parseValidatorState(enc({ height: '7', round: '1', step: 0, block_id: null }), 'f'), { origin: 'tmkms', state: { height: '7', round: 1, step: 1 } });
  assert.deepEqual(parseValidatorState(enc({ height: '7', round: '1', step: 2, block_id: { hash: 'AA' } }), 'f').state, { height: '7', round: 1, step: 3 });
  assert.deepEqual(parseValidatorState(enc({ height: '0', round: '0', step: 0, block_id: null }), 'f').state, { height: '0', round: 0, step: 0 });
  for (const [doc, re] of [
    [{ height: '7', round: 1, step: 3, block_id: null }, /step is 3; tmkms numbers steps 0/],
    [{ height: '-1', round: 0, step: 0 }, /"height" must be a whole number/],
    [{ height: '9223372036854775808', round: 0, step: 0 }, /"height"/],
    [{ height: '1', round: 2 ** 31, step: 0 }, /"round"/],
    [{ height: '1', round: 0, step: 4 }, /"step"/],
    [{ height: '1', round: 0, step: 1, signbytes: 'xyz', signature: 'AA==' }, /"signbytes" must be hex/],
    [{ round: 0, step: 1 }, /no "height"/],
    [[1, 2], /not a JSON object/],
  ] as const) {
    assert.throws(() => parseValidatorState(enc(doc), 'f'), (e: unknown) => e instanceof CustosError && re.test(e.message), JSON.stringify(doc));
  }
  assert.throws(() => parseValidatorState(enc({ height: '1', round: 0, step: 1 }), 'f', 'tmkms'), /named by tmkms.toml but not a tmkms state file/);
  assert.throws(() => parseValidatorState(enc({ height: '1', round: '0', step: 1, block_id: null }), 'f', 'filepv'), /a tmkms state file where a CometBFT\/Horcrux one was expected/);
  assert.throws(() => parseValidatorState(new Uint8Array(70_000).fill(32), 'f'), /larger than/);
});

test('state files: random, truncated and hostile input only ever gives a CustosError', () => {
  const valid = JSON.stringify({ height: '123', round: '1', step: 2, block_id: { hash: 'AB', parts: { total: '1', hash: 'CD' } } });
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json(), fc.nat({ max: valid.length }).map((n) => valid.slice(0, n)), fc.record({ height: fc.anything(), round: fc.anything(), step: fc.anything(), block_id: fc.anything(), signbytes: fc.anything(), signature: fc.anything(), __proto__: fc.anything() }, { requiredKeys: [] }).map((o) => JSON.stringify(o))), (text) => {
      typed(() => parseValidatorState(enc(text), 'f'));
      typed(() => parseValidatorState(enc(text), 'f', 'tmkms'));
    }),
    { numRuns: 2000 },
  );
});

test('tmkms.toml: softsign validators, hardware keys refused per chain, Amino refused; random TOML only gives a CustosError', () => {
  const { dir, cleanup } = tempDir();
  try {
    const p = join(dir, 'tmkms.toml');
    writeFileSync(
      p,
      '[[chain]]\nid = "a-1"\n[[chain]]\nid = "b-1"\nstate_file = "/abs/b.json"\n' +
        '[[validator]]\nchain_id = "a-1"\naddr = "tcp://127.0.0.1:1"\nprotocol_version = "v0.34"\n' +
        '[[validator]]\nchain_id = "b-1"\naddr = "tcp://127.0.0.1:2"\n' +
        '[[providers.softsign]]\nchain_ids = ["a-1"]\nkey_type = "consensus"\npath = "a.key"\n' +
        '[[providers.yubihsm]]\nadapter = { type = "usb" }\nauth = { key = 1, password_file = "x" }\nkeys = [{ chain_ids = ["b-1"], key = 1 }]\n',
    );
    const [a] = readTmkmsConfig(p, 'a-1');
    assert.deepEqual({ ...a, keyFile: a!.keyFile.endsWith('a.key'), stateFile: a!.stateFile.endsWith('a-1_priv_validator_state.json') }, { chainId: 'a-1', addr: 'tcp://127.0.0.1:1', stateFile: true, keyFile: true, keyFormat: 'base64' });
    assert.throws(() => readTmkmsConfig(p, 'b-1'), /consensus key of b-1 is in a yubihsm device/);
    assert.throws(() => readTmkmsConfig(p), /b-1 is in a yubihsm/, 'without --chain-id every validator is read, and the hardware one is named');
    writeFileSync(p, '[[chain]]\nid = "a"\n[[validator]]\nchain_id = "a"\naddr = "tcp://h:1"\nprotocol_version = "v0.33"\n');
    assert.throws(() => readTmkmsConfig(p), /Amino/);
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.constantFrom('[[validator]]\nchain_id = 1', '[providers]\nsoftsign = 3', '[[chain]]\nid = []', 'validator = "x"', '[[providers.softsign]]\nchain_ids = "a"\npath = 5', '[providers]\nsoftsign = [1, "x", []]')), (text) => {
        writeFileSync(p, text);
        typed(() => readTmkmsConfig(p));
      }),
      { numRuns: 500 },
    );
  } finally {
    cleanup();
  }
});

test('softsign keys: a 32-byte seed or seed and public key in base64; anything else is refused without echoing it', () => {
  const seed = new Uint8Array(32).fill(3);
  assert.deepEqual(softsignSeed(enc(Buffer.from(seed).toString('base64')), 'k'), seed);
  assert.deepEqual(softsignSeed(enc(Buffer.concat([seed, new Uint8Array(32).fill(9)]).toString('base64') + '\n'), 'k'), seed);
  assert.throws(() => softsignSeed(enc(Buffer.alloc(31).toString('base64')), 'k'), /holds 31 bytes/);
  assert.throws(() => softsignSeed(enc('not base64 at all!'), 'k'), (e: unknown) => e instanceof CustosError && !e.message.includes('not base64 at all'));
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => typed(() => softsignSeed(b, 'k'))), { numRuns: 1000 });
});
