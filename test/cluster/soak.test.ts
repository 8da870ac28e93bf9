/**
 * A short run of scripts/threshold-soak.ts in the suite: a 2-of-3 validator key on three real
 * servers, two connectors racing conflicting prevotes, random cosigners killed with SIGKILL;
 * every signature the node receives is checked independently (CUSTOS_THRESHOLD_ROUNDS sets
 * the number of rounds; `npm run soak:threshold` runs 2,000).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireTool } from '../helpers/require.js';
import { runThresholdSoak } from '../../scripts/threshold-soak.js';

test('2-of-3 privval: racing connectors and killed cosigners never give two signatures for one position', { timeout: 300_000 }, async (t) => {
  if (!requireTool(t, 'openssl', 'openssl')) return;
  const r = await runThresholdSoak({ rounds: Number(process.env.CUSTOS_THRESHOLD_ROUNDS ?? 40), killEvery: 8 });
  t.diagnostic(JSON.stringify({ ...r, details: undefined }));
  assert.equal(r.violations, 0, r.details.join('\n'));
  assert.ok(r.kills >= 4);
  assert.ok(r.oneSigned > r.rounds / 4, 'the key keeps signing through the kills');
});
