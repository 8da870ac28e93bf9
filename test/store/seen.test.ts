/**
 * What a running process remembers of each row's newest write (`SeenRows`): every row it read
 * or changed, and key rows it only inserted up to a bound (the oldest forgotten first: such a
 * row has no older copy to put back), so a bulk creation of millions of keys keeps memory
 * bounded without opening a gap for a replayed row.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeenRows } from '../../src/store/engine.js';

test('key rows only inserted are bounded, oldest first; a row read or changed is kept; other tables are all kept', () => {
  const s = new SeenRows(3);
  for (let i = 0; i < 3; i++) s.set(`keys\0k${i}`, i + 1, true);
  s.set('keys\0k0', 1); // read (or changed) since: kept for good
  for (let i = 3; i < 10; i++) s.set(`keys\0k${i}`, i + 1, true);
  assert.equal(s.get('keys\0k0'), 1, 'a row read is never forgotten');
  assert.equal(s.get('keys\0k1'), undefined, 'only inserted, oldest: forgotten');
  assert.equal(s.get('keys\0k9'), 10);
  s.set('keys\0k8', 20); // changed: moves to the kept rows
  for (let i = 10; i < 20; i++) s.set(`keys\0k${i}`, i + 1, true);
  assert.equal(s.get('keys\0k8'), 20);
  s.set('keys\0k0', 30, true); // an insert mark never demotes a kept row
  for (let i = 20; i < 30; i++) s.set(`keys\0k${i}`, i + 1, true);
  assert.equal(s.get('keys\0k0'), 30);
  for (let i = 0; i < 1000; i++) s.set(`watermarks\0w${i}`, i, true);
  assert.equal(s.get('watermarks\0w0'), 0, 'other tables are never forgotten');
  assert.equal(s.size, 2 + 3 + 1000);
});
