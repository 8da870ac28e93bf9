import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeVault } from '../helpers/tmpvault.js';
import { CustosError } from '../../src/core/errors.js';
import { buildHttpServer } from '../../src/frontends/http/server.js';
import { Metrics } from '../../src/frontends/http/metrics.js';
import type { Principal } from '../../src/core/types.js';

const AGENT: Principal = { id: 'ssh-agent:default', kind: 'agent' };
const ALICE: Principal = { id: 'token:alice', kind: 'admin' };
const BOB: Principal = { id: 'token:bob', kind: 'admin' };
const msg = { kind: 'message' as const, bytes: new Uint8Array([1, 2, 3]) };

async function pendingOne(v: Awaited<ReturnType<typeof makeVault>>) {
  for (let i = 0; i < 200; i++) {
    const [p] = v.vault.approvals.pending();
    if (p) return p;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no pending approval appeared');
}

test('a confirm key signs only after an approval, and the approval is audited as the approver', async () => {
  const v = await makeVault();
  try {
    await v.vault.createKey(v.ctx(), { label: 'confirm-me', algorithm: 'ed25519', exportable: false, attributes: { confirm: true } });
    const signing = v.vault.sign({ requestId: 'r1', principal: AGENT, key: 'confirm-me', payload: msg, options: {}, context: { ssh_user: 'deploy' } });
    const p = await pendingOne(v);
    assert.equal(p.keyLabel, 'confirm-me');
    assert.equal(p.summary.ssh_user, 'deploy');
    assert.equal(p.requester, 'ssh-agent:default');
    await assert.rejects(v.vault.decideApproval({ principal: AGENT, requestId: 'x' }, p.id, true), (e: unknown) => e instanceof CustosError && e.code === 'forbidden');
    const d = await v.vault.decideApproval({ principal: ALICE, requestId: 'a1' }, p.id, true);
    assert.equal(d.settled, 'approved');
    assert.equal((await signing).signature.length, 64);
    const tail = await v.store.auditTail(6);
    assert.ok(tail.some((e) => e.operation === 'approve' && e.principal === 'token:alice' && e.details.approval_id === p.id));
    assert.ok(tail.some((e) => e.operation === 'sign' && e.outcome === 'decided' && e.reason === 'approval_pending'));
  } finally {
    await v.dispose();
  }
});

test('a denial and a timeout refuse the signature with policy_denied:approval', async () => {
  const v = await makeVault({ approvalTimeoutMs: 300 });
  try {
    await v.vault.createKey(v.ctx(), { label: 'c2', algorithm: 'ed25519', exportable: false, attributes: { confirm: true } });
    const denied = v.vault.sign({ requestId: 'r2', principal: AGENT, key: 'c2', payload: msg, options: {}, context: {} });
    await v.vault.decideApproval({ principal: ALICE, requestId: 'a2' }, (await pendingOne(v)).id, false);
    await assert.rejects(denied, (e: unknown) => e instanceof CustosError && e.fullCode === 'policy_denied:approval' && /denied/.test(e.message));
    await assert.rejects(
      v.vault.sign({ requestId: 'r3', principal: AGENT, key: 'c2', payload: msg, options: {}, context: {} }),
      (e: unknown) => e instanceof CustosError && e.fullCode === 'policy_denied:approval' && /Nobody approved/.test(e.message),
    );
    assert.deepEqual(v.vault.approvals.pending(), []);
  } finally {
    await v.dispose();
  }
});

test('M-of-N: fewer approvals than required keep waiting; a repeated approver does not count', async () => {
  const v = await makeVault();
  try {
    const { request, outcome } = v.vault.approvals.open({ requester: AGENT.id, keyId: 'k', keyLabel: 'k', operation: 'sign', summary: {}, required: 2, approvers: [] }, 5000);
    assert.equal(v.vault.approvals.decide(request.id, ALICE, true).settled, null);
    assert.throws(() => v.vault.approvals.decide(request.id, ALICE, true), (e: unknown) => e instanceof CustosError && e.code === 'forbidden');
    assert.equal(v.vault.approvals.decide(request.id, BOB, true).settled, 'approved');
    assert.equal(await outcome, 'approved');
    assert.throws(() => v.vault.approvals.decide(request.id, BOB, true), (e: unknown) => e instanceof CustosError && e.code === 'not_found');
  } finally {
    await v.dispose();
  }
});

test('approvers list and approve over the HTTP API', async () => {
  const v = await makeVault();
  const app = await buildHttpServer({ vault: v.vault, metrics: new Metrics() });
  try {
    await v.vault.createKey(v.ctx(), { label: 'c3', algorithm: 'ed25519', exportable: false, attributes: { confirm: true } });
    const signing = v.vault.sign({ requestId: 'r4', principal: AGENT, key: 'c3', payload: msg, options: {}, context: { sshsig_namespace: 'file' } });
    await pendingOne(v);
    const auth = { authorization: `Bearer ${v.adminToken}` };
    const list = await app.inject({ method: 'GET', url: '/v1/approvals', headers: auth });
    assert.equal(list.statusCode, 200);
    const [a] = list.json().approvals;
    assert.equal(a.summary.sshsig_namespace, 'file');
    const ok = await app.inject({ method: 'POST', url: `/v1/approvals/${a.id}/approve`, headers: auth });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(ok.json().settled, 'approved');
    await signing;
    const gone = await app.inject({ method: 'POST', url: `/v1/approvals/${a.id}/deny`, headers: auth });
    assert.equal(gone.statusCode, 404);
    assert.equal(gone.json().code, 'not_found');
  } finally {
    await app.close();
    await v.dispose();
  }
});
