/**
 * A wallet server that keeps no key: it signs payouts through Custos over mutual TLS, and
 * checks a partner's signed payout instructions against a verify-only key held in the vault.
 * Copy it, and change what a payout is.
 *
 *   CUSTOS_ADDR=https://vault.internal:8200 CUSTOS_CACERT=ca.pem \
 *   CUSTOS_CLIENT_CERT=wallet.pem CUSTOS_CLIENT_KEY=wallet.key \
 *   WALLET_KEY=payments-hot PARTNER_KEY=partner-acme PORT=3000 \
 *   node examples/wallet-server.mjs
 *
 *   POST /payouts {"to": "...", "amount": "125.00", "nonce": "p-1", "partner_signature": "<base64>"}
 *   → 200 {"payout": {...}, "signature": "<base64>", "custos_request_id": "..."}
 *
 * The certificate's principal should be a signer scoped to the wallet's keys:
 *   custos tokens create --name wallet --role signer --keys 'payments-*,partner-*' --certificate wallet.pem
 * (partner-* are verify-only keys an admin imported: `custos keys import-public`).
 */
// @ts-check
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { CustosClient, CustosApiError, CustosError } from 'custos/client';

/** @param {string} name @param {string} [fallback] @returns {string} */
const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`Set ${name}.`);
  return v;
};

const vault = new CustosClient({
  addr: env('CUSTOS_ADDR'),
  ca: readFileSync(env('CUSTOS_CACERT')),
  cert: readFileSync(env('CUSTOS_CLIENT_CERT')),
  key: readFileSync(env('CUSTOS_CLIENT_KEY')),
});
const WALLET_KEY = env('WALLET_KEY', 'payments-hot');
/** @type {Set<string>} */
const usedNonces = new Set();
const PARTNER_KEY = process.env.PARTNER_KEY;

/** The bytes a payout signature covers: one canonical JSON line, so both sides sign the same thing. */
/** @param {{ to: string, amount: string, nonce: string }} p */
function payoutBytes(p) {
  return new TextEncoder().encode(JSON.stringify({ amount: p.amount, nonce: p.nonce, to: p.to }));
}

/** @param {import('node:http').IncomingMessage} req @returns {Promise<Record<string, unknown>>} */
async function readJson(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16_384) throw new CustosError('payload_too_large', 'The payout is larger than 16 KiB.');
  }
  try {
    return JSON.parse(body);
  } catch {
    throw new CustosError('bad_request', 'The body is not JSON.');
  }
}

/** @param {import('node:http').IncomingMessage} req */
async function payout(req) {
  const b = await readJson(req);
  if (typeof b.to !== 'string' || typeof b.amount !== 'string' || !/^\d{1,12}(\.\d{1,8})?$/.test(b.amount)) {
    throw new CustosError('bad_request', 'A payout is {"to": string, "amount": "decimal", "nonce": string}.');
  }
  if (typeof b.nonce !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(b.nonce)) throw new CustosError('bad_request', 'A payout needs a unique "nonce" (1-64 letters, digits, . _ -).');
  // One payout per nonce: a partner-signed instruction sent twice is paid once. (Kept in memory
  // here; a real service keeps it in its database, in the same transaction as the payout.)
  if (usedNonces.has(b.nonce)) throw new CustosError('conflict', `The payout ${b.nonce} was already made.`);
  // Taken before any await, so two identical requests at once cannot both pass.
  usedNonces.add(b.nonce);
  const p = { to: b.to, amount: b.amount, nonce: b.nonce };
  const message = payoutBytes(p);
  // A partner's instruction is checked by the vault against the partner's public key.
  if (PARTNER_KEY) {
    if (typeof b.partner_signature !== 'string') throw new CustosError('bad_request', 'The payout needs the partner\'s signature (partner_signature, base64).');
    const ok = await vault.verify(PARTNER_KEY, { message, signature: Buffer.from(b.partner_signature, 'base64') });
    if (!ok) throw new CustosError('forbidden', 'The partner\'s signature does not match this payout.');
  }
  // Policy (limits, allow-lists, approvals) is decided by the vault; a refusal comes back typed.
  const s = await vault.sign(WALLET_KEY, { message });
  return { payout: p, signature: Buffer.from(s.signature).toString('base64'), key_id: s.keyId, custos_request_id: s.requestId };
}

/** @param {import('node:http').ServerResponse} res @param {number} status @param {unknown} body */
function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

const server = createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/payouts') return send(res, 404, { error: 'POST /payouts' });
  payout(req).then(
    (r) => send(res, 200, r),
    (/** @type {unknown} */ e) => {
      // The vault's stable codes map to this service's answers; nothing else leaks.
      if (e instanceof CustosApiError) {
        const status = e.code === 'policy_denied' || e.code === 'forbidden' ? 403 : e.code === 'rate_limited' ? 429 : e.status >= 500 ? 502 : 400;
        return send(res, status, { error: e.fullCode, message: e.message, custos_request_id: e.requestId ?? null });
      }
      if (e instanceof CustosError) return send(res, e.code === 'storage_unavailable' ? 503 : e.httpStatus, { error: e.fullCode, message: e.message });
      console.error(e);
      send(res, 500, { error: 'internal' });
    },
  );
});

server.listen(Number(env('PORT', '3000')), '127.0.0.1', () => {
  const a = server.address();
  console.log(JSON.stringify({ msg: 'wallet server listening', port: typeof a === 'object' && a ? a.port : null }));
});
for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.on(sig, () => {
    server.close();
    vault.close();
  });
}
