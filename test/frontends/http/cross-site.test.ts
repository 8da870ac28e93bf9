/**
 * Requests from another site's page with a client certificate are refused before anything else: a browser presents
 * a client certificate to whoever's page makes it send a request (see refuseCrossSite).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CustosError } from '../../../src/core/errors.js';
import { refuseCrossSite } from '../../../src/frontends/http/server.js';

const host = 'vault.example:8200';
const refused = (headers: Record<string, string | string[]>) => {
  try {
    refuseCrossSite({ host, ...headers });
    return false;
  } catch (e) {
    assert.ok(e instanceof CustosError && e.code === 'forbidden' && e.tag === 'cross_site', String(e));
    return true;
  }
};

test('a request from another origin, or that the browser calls cross-site or same-site, is refused', () => {
  assert.equal(refused({ origin: 'https://evil.example' }), true);
  assert.equal(refused({ origin: 'https://vault.example:8201' }), true, 'another port is another origin');
  assert.equal(refused({ origin: 'null' }), true, 'a sandboxed page');
  assert.equal(refused({ 'sec-fetch-site': 'cross-site' }), true);
  assert.equal(refused({ 'sec-fetch-site': 'same-site' }), true, 'a sibling subdomain is another origin');
  assert.equal(refused({ 'sec-fetch-site': 'something-new' }), true, 'a value not known to be this origin');
  assert.equal(refused({ 'sec-fetch-site': ['cross-site', 'same-origin'] }), true, 'a duplicated header');
  assert.equal(refused({ 'sec-fetch-site': 'cross-site', 'sec-fetch-dest': 'image' }), true, 'an <img> of another site, a read that could start a costly check');
});

test('the console itself, non-browser clients and a URL typed by a person go through', () => {
  assert.equal(refused({ origin: `https://${host}`, 'sec-fetch-site': 'same-origin' }), false);
  assert.equal(refused({}), false, 'curl and the SDK send neither header');
  assert.equal(refused({ 'sec-fetch-site': 'none' }), false, 'typed by the user');
  assert.equal(refused({ origin: 'https://vault.example', 'sec-fetch-site': 'same-origin' }), false, 'behind a proxy that rewrites Host, the browser\'s word counts');
});
