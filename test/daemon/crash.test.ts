import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCrashCycles } from '../../scripts/crash-soak.js';

test('SIGKILL in the middle of create/sign streams loses no acknowledged key or audit entry (short run; scripts/crash-soak.ts for long soaks)', async () => {
  const report = await runCrashCycles({ cycles: Number(process.env.CUSTOS_CRASH_CYCLES ?? 6), log: (s) => console.log(s) });
  console.log(JSON.stringify(report));
  assert.ok(report.acknowledgedKeys > 0 && report.acknowledgedSignatures > 0, 'the load actually ran');
  assert.equal(report.missingKeys, 0);
  assert.equal(report.unauditedSignatures, 0);
  assert.equal(report.invalidSignatures, 0);
  assert.equal(report.auditChainOk, true);
  assert.deepEqual(report.integrityProblems, []);
});
