/**
 * What a running process remembers of each row's newest write (`SeenRows`): every row of the
 * small tables, and key rows up to a bound, forgetting the least recently touched first, so a
 * process that touches millions of keys keeps its memory bounded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeenRows } from '../../src/store/engine.js';

test('key rows are bounded, least recently touched forgotten first; other tables are all kept', () => {
  const s = new SeenRows(3);
  for (let i = 0; i < 3; i++) s.set(`keys\0k${i}`, i + 1);
  s.set('keys\0k0', 10); // touched again: now the newest
  s.set('keys\0k3', 4); // over the bound: k1, the least recently touched, goes
  assert.equal(s.get('keys\0k1'), undefined);
  assert.equal(s.get('keys\0k0'), 10);
  assert.equal(s.get('keys\0k3'), 4);
  for (let i = 0; i < 1000; i++) s.set(`watermarks\0w${i}`, i);
  assert.equal(s.get('watermarks\0w0'), 0, 'other tables are never forgotten');
  assert.equal(s.size, 1003);
});
