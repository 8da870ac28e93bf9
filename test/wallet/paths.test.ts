import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CustosError } from '../../src/core/errors.js';
import { HARDENED_OFFSET, checkPath, formatPath, isUnder, parsePath } from '../../src/wallet/paths.js';

const H = HARDENED_OFFSET;
const index = fc.integer({ min: 0, max: 0xffff_ffff });
const path = fc.array(index, { maxLength: 12 });

function refusesPath(fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => e instanceof CustosError && e.code === 'invalid_derivation_path');
}

test('parses BIP32 paths in apostrophe and h notation', () => {
  assert.deepEqual(parsePath('m'), []);
  assert.deepEqual(parsePath("m/84'/0'/0'/0/5"), [84 + H, H, H, 0, 5]);
  assert.deepEqual(parsePath('m/84h/0h/0h/0/5'), [84 + H, H, H, 0, 5]);
  assert.deepEqual(parsePath('m/84H/0/2147483647h'), [84 + H, 0, 0xffff_ffff]);
  assert.equal(formatPath([84 + H, H, H, 0, 5]), "m/84'/0'/0'/0/5");
  assert.equal(formatPath([84 + H, H, 1], 'h'), 'm/84h/0h/1');
});

test('refuses malformed, out-of-range and empty-component paths with invalid_derivation_path', () => {
  for (const bad of [
    '', 'M/0', '/0', 'm/', 'm//1', 'm/1/', '0/1', "m/1''", 'm/-1', 'm/+1', 'm/ 1', 'm/1 ', 'm/01', 'm/0x10', "m/'",
    'm/2147483648', "m/2147483648'", 'm/4294967295', 'm/99999999999', 'm/1.5', 'm/1e3', 'm/１', "m/1'/h",
  ]) {
    refusesPath(() => parsePath(bad));
  }
  refusesPath(() => checkPath([0x1_0000_0000]));
  refusesPath(() => checkPath([-1]));
  refusesPath(() => checkPath([1.5]));
});

test('enforces the depth limit: 255 by default, fewer when configured', () => {
  assert.equal(parsePath('m' + '/1'.repeat(255)).length, 255);
  refusesPath(() => parsePath('m' + '/1'.repeat(256)));
  assert.equal(parsePath('m/1/2/3', { maxDepth: 3 }).length, 3);
  refusesPath(() => parsePath('m/1/2/3/4', { maxDepth: 3 }));
  refusesPath(() => checkPath([1, 2, 3, 4], { maxDepth: 3 }));
  // A huge string is refused by length before it is split.
  refusesPath(() => parsePath('m' + '/1'.repeat(1_000_000)));
});

test('format then parse is the identity, in both notations (property)', () => {
  fc.assert(
    fc.property(path, fc.constantFrom("'" as const, 'h' as const), (p, marker) => {
      assert.deepEqual(parsePath(formatPath(p, marker)), p);
    }),
  );
});

test('parse then format is the identity on canonical text (property)', () => {
  fc.assert(
    fc.property(path, (p) => {
      const text = formatPath(p);
      assert.equal(formatPath(parsePath(text)), text);
    }),
  );
});

test('arbitrary strings either parse or give invalid_derivation_path, nothing else (property)', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.stringMatching(/^m(\/[0-9'hH]{0,11}){0,6}$/)), (s) => {
      try {
        const p = parsePath(s);
        assert.equal(formatPath(p).length > 0, true);
      } catch (e) {
        assert.ok(e instanceof CustosError && e.code === 'invalid_derivation_path', String(e));
      }
    }),
  );
});

test('isUnder: a path is under each of its prefixes and under no path that differs (property)', () => {
  assert.equal(isUnder("m/84'/0'/0'/0/5", "m/84'/0'/0'"), true);
  assert.equal(isUnder("m/84'/0'/0'", "m/84'/0'/0'"), true);
  assert.equal(isUnder("m/84'/0'/1'/0/5", "m/84'/0'/0'"), false);
  assert.equal(isUnder('m/84/0/0', "m/84'"), false);
  assert.equal(isUnder("m/84'", "m/84'/0'"), false);
  assert.equal(isUnder('m/1', 'm'), true);
  fc.assert(
    fc.property(path, fc.nat(12), (p, cut) => {
      const prefix = p.slice(0, Math.min(cut, p.length));
      assert.equal(isUnder(p, prefix), true);
      assert.equal(isUnder(formatPath(p), formatPath(prefix)), true);
      if (prefix.length > 0) {
        const other = [...prefix];
        other[other.length - 1] = (other[other.length - 1]! ^ 1) >>> 0;
        assert.equal(isUnder(p, other), false);
      }
    }),
  );
});
