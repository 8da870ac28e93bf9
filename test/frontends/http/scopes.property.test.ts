/**
 * Random requests against every route of the API, as every role: no answer is a 5xx, and no
 * success escapes a principal's scope: a 2xx only for an operation its role and scope allow,
 * on keys its globs and tags allow, and listings show nothing else. Routes the table does not
 * name succeed only for admins.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { buildHttpServer } from '../../../src/frontends/http/server.js';
import { ROUTE_OPERATIONS } from '../../../src/frontends/http/auth.js';
import { Metrics } from '../../../src/frontends/http/metrics.js';
import { matchesGlob } from '../../../src/accounts/principals.js';
import { makeTestVault, type TestVault } from '../../helpers/vault.js';

let tv: TestVault;
let app: FastifyInstance;
interface Who {
  role: string;
  token: string;
  operations: string[];
  keys: string[];
  tags: string[];
}
const whos: Who[] = [];
/** Label of every key reference the generator uses (by label and by id). */
const labelOf = new Map<string, string>();
const tagsOf = new Map<string, string[]>();

const msg = Buffer.from('pay 5').toString('base64');

before(async () => {
  tv = await makeTestVault({ authLimits: { maxFailures: 100_000, windowSeconds: 60 } });
  app = await buildHttpServer({ vault: tv.opened.vault, metrics: new Metrics() });
  await app.ready();
  const admin = { authorization: `Bearer ${tv.adminToken}` };
  const mk = async (body: object) => {
    const r = await app.inject({ method: 'POST', url: '/v1/keys', headers: admin, payload: body });
    assert.equal(r.statusCode, 201, r.body);
    const k = r.json() as { id: string; label: string; attributes: { tags?: string } };
    labelOf.set(k.label, k.label);
    labelOf.set(k.id, k.label);
    tagsOf.set(k.label, k.attributes.tags ? k.attributes.tags.split(',') : []);
  };
  await mk({ label: 'payments-hot', algorithm: 'ed25519', exportable: true, tags: ['hot'] });
  await mk({ label: 'payments-cold', algorithm: 'ed25519', exportable: true, tags: ['cold'] });
  await mk({ label: 'treasury', algorithm: 'secp256k1', exportable: true, tags: ['hot'] });
  whos.push({ role: 'admin', token: tv.adminToken, operations: [], keys: [], tags: [] });
  const principals = [
    { name: 'op', role: 'operator', keys: ['payments-*'] },
    { name: 'signer', role: 'signer', keys: ['payments-*'] },
    { name: 'exporter', role: 'signer', operations: ['sign', 'export'], keys: ['payments-h?t'] },
    { name: 'hot', role: 'signer', tags: ['hot'] },
    { name: 'approver', role: 'approver' },
    { name: 'auditor', role: 'auditor', keys: ['treasury'] },
  ];
  for (const p of principals) {
    const r = await app.inject({ method: 'POST', url: '/v1/tokens', headers: admin, payload: p });
    assert.equal(r.statusCode, 201, r.body);
    const v = r.json() as { token: string; operations: string[]; keys: string[]; tags: string[] };
    whos.push({ role: p.role, token: v.token, operations: v.operations, keys: v.keys, tags: v.tags });
  }
});

after(async () => {
  await app?.close();
  await tv?.cleanup();
});

const inScope = (w: Who, label: string | undefined) =>
  w.role === 'admin' || (label !== undefined && (w.keys.length === 0 || w.keys.some((g) => matchesGlob(g, label))) && (w.tags.length === 0 || w.tags.some((t) => tagsOf.get(label)?.includes(t))));

test('every role, random requests on every route: never a 5xx, never a success outside the scope', async () => {
  const swagger = app.swagger() as { paths: Record<string, Record<string, unknown>> };
  const routes: Array<{ method: string; path: string }> = [];
  for (const [p, methods] of Object.entries(swagger.paths)) {
    for (const m of Object.keys(methods)) routes.push({ method: m.toUpperCase(), path: p.replace(/\{(\w+)\}/g, ':$1') });
  }
  assert.ok(routes.length > 30, `routes found: ${routes.length}`);
  const seen = new Map<string, number>();
  const keyRefs = [...labelOf.keys(), 'payments-none', 'nope', '..%2f', '%00', 'a'.repeat(120)];
  const bodies = fc.oneof(
    fc.constant(undefined),
    fc.constant({ message: msg }),
    fc.constant({ digest: Buffer.alloc(32, 1).toString('base64') }),
    fc.constant({ message: msg, signature: Buffer.alloc(64).toString('base64') }),
    fc.constant({ kem: 'x25519', recipient_public_key: Buffer.alloc(32, 9).toString('base64') }),
    fc.record({ label: fc.constantFrom('payments-x', 'treasury-2', 'other'), algorithm: fc.constantFrom('ed25519', 'p256') }),
    fc.record({ name: fc.constantFrom('someone', 'x'), role: fc.constantFrom('admin', 'signer', 'operator') }),
    fc.constant({ purpose: 'general' }),
    fc.constant({ height: '5', round: 0, step: 1 }),
    fc.constant({ source: '[[rules]]\nkind = "deny"\n' }),
    fc.constant({ key: 'treasury', operation: 'sign', payload_type: 'raw' }),
    fc.constant({ label: 'payments-pub', format: 'raw', algorithm: 'ed25519', material: Buffer.alloc(32, 0).toString('base64') }),
    fc.jsonValue({ maxDepth: 2 }),
  );
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: whos.length - 1 }), fc.constantFrom(...routes), fc.constantFrom(...keyRefs), bodies, async (wi, route, ref, body) => {
      const w = whos[wi]!;
      const url = route.path
        .replace(':key', encodeURIComponent(ref))
        .replace(':chain', 'chain-1')
        .replace(':id', 'apr_0123456789abcdef0123')
        .replace(':name', 'someone')
        .replace(':backend', 'pkcs11:none');
      const r = await app.inject({
        method: route.method as 'GET',
        url: route.method === 'GET' && route.path.endsWith('/hd/public') ? `${url}?path=m/0` : url,
        headers: { authorization: `Bearer ${w.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
      });
      assert.ok(r.statusCode < 500, `${w.role} ${route.method} ${url}: ${r.statusCode} ${r.body}`);
      const k = `${w.role} ${r.statusCode}`;
      seen.set(k, (seen.get(k) ?? 0) + 1);
      if (r.statusCode >= 300) return;
      const op = ROUTE_OPERATIONS[`${route.method} ${route.path}`];
      const isPublic = ['/healthz', '/metrics', '/v1/sys/seal-status', '/v1/sys/unseal', '/v1/openapi.json'].includes(route.path);
      if (isPublic) return;
      if (route.path === '/v1/whoami') {
        // Any principal may ask who it is, and hears only about itself.
        const me = r.json() as { principal: string; operations: string[] };
        if (w.role !== 'admin') assert.deepEqual([...me.operations].sort(), [...w.operations].sort(), `${w.role} whoami`);
        return;
      }
      if (w.role !== 'admin') {
        assert.ok(op !== undefined, `${w.role} succeeded on the admin-only ${route.method} ${route.path}`);
        assert.ok(w.operations.includes(op), `${w.role} (${w.operations}) succeeded on ${op}: ${route.method} ${url}`);
      }
      if (route.path.includes(':key')) assert.ok(inScope(w, labelOf.get(ref) ?? ref), `${w.role} reached ${ref} on ${route.method} ${route.path}`);
      const out = r.json() as Record<string, unknown>;
      if (route.method === 'POST' && (route.path === '/v1/keys' || route.path === '/v1/keys/public')) {
        const label = out.label as string;
        labelOf.set(label, label);
        labelOf.set(out.id as string, label);
        tagsOf.set(label, []);
        assert.ok(inScope(w, label), `${w.role} created ${label}`);
      }
      if (route.method === 'GET' && route.path === '/v1/keys') {
        for (const k of out.keys as Array<{ label: string }>) assert.ok(inScope(w, k.label), `${w.role} listed ${k.label}`);
      }
    }),
    { numRuns: Number(process.env.CUSTOS_PROPERTY_RUNS ?? 1000), seed: process.env.CUSTOS_PROPERTY_SEED ? Number(process.env.CUSTOS_PROPERTY_SEED) : undefined },
  );
  // The property means something only if scoped principals both succeeded and were refused.
  for (const role of ['signer', 'operator', 'auditor']) {
    assert.ok((seen.get(`${role} 200`) ?? 0) + (seen.get(`${role} 201`) ?? 0) > 0, `some ${role} request succeeded: ${JSON.stringify([...seen])}`);
    assert.ok((seen.get(`${role} 403`) ?? 0) > 0, `some ${role} request was refused`);
  }
});

test('keys page by cursor in label order; a scoped principal\'s pages hold only its keys', async () => {
  const pages = async (w: Who, limit: number) => {
    const labels: string[] = [];
    let after: string | null = null;
    for (let i = 0; i < 100; i++) {
      const url: string = `/v1/keys?limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ''}`;
      const r = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${w.token}` } });
      assert.equal(r.statusCode, 200, r.body);
      const b = r.json() as { keys: Array<{ label: string }>; next: string | null };
      labels.push(...b.keys.map((k) => k.label));
      // The cursor is a key the principal may see, never one outside its scope.
      if (b.next !== null) assert.ok(b.keys.some((k) => k.label === b.next), `next ${b.next} is one of the page's keys`);
      if (b.next === null) return labels;
      after = b.next;
    }
    throw new Error('no end');
  };
  const all = (await app.inject({ method: 'GET', url: '/v1/keys', headers: { authorization: `Bearer ${tv.adminToken}` } })).json() as { keys: Array<{ label: string }> };
  assert.deepEqual(await pages(whos[0]!, 2), all.keys.map((k) => k.label).sort());
  const signer = whos.find((w) => w.role === 'signer' && w.keys.includes('payments-*'))!;
  const mine = await pages(signer, 1);
  assert.ok(mine.length > 0 && mine.every((l) => matchesGlob('payments-*', l)), JSON.stringify(mine));
  assert.equal((await app.inject({ method: 'GET', url: '/v1/keys?limit=0', headers: { authorization: `Bearer ${tv.adminToken}` } })).statusCode, 400);
});
