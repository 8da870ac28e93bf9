import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CustosError } from '../../src/core/errors.js';
import { parsePolicy } from '../../src/policy/document.js';
import { POLICY_LIMITS } from '../../src/policy/fields.js';

const HEAD = 'id = "p"\n[applies_to]\nall_keys = true\n';

function refuses(source: string, message: string, format?: 'toml' | 'json'): void {
  assert.throws(
    () => parsePolicy(source, format),
    (e: unknown) => {
      assert.ok(e instanceof CustosError, `expected a CustosError, got ${String(e)}`);
      assert.equal(e.code, 'invalid_policy');
      assert.equal(e.message, message);
      return true;
    },
  );
}

test('the example treasury policy parses, with every rule type it shows', () => {
  const doc = parsePolicy(readFileSync(new URL('../../examples/policy-treasury.toml', import.meta.url), 'utf8'));
  assert.equal(doc.id, 'treasury');
  assert.deepEqual(doc.appliesTo, { keys: ['treasury-hot'], tags: ['treasury'], allKeys: false });
  assert.deepEqual(
    doc.rules.map((r) => r.type),
    ['operations', 'principals', 'time_window', 'amount_limit', 'velocity', 'rate_limit', 'destinations', 'fee_cap', 'change_must_return', 'approval'],
  );
});

test('refuses malformed documents with the exact path and what was expected', () => {
  refuses(`${HEAD}[[rules]]\ntype = "operations"\noperations = ["sign"]\n[[rules]]\ntype = "operations"\noperations = ["sign"]\n[[rules]]\ntype = "amount_limit"\nlimit = -5\n`, 'rules[2].limit: expected a positive integer amount in satoshis');
  refuses(`${HEAD}[[rules]]\ntype = "amount_limit"\nlimit = 1.5\n`, 'rules[0].limit: expected a positive integer amount in satoshis');
  refuses(`${HEAD}[[rules]]\ntype = "amount_limit"\nlimit = 0\n`, 'rules[0].limit: expected a positive integer amount in satoshis');
  refuses(`${HEAD}[[rules]]\ntype = "amount_limit"\nlimit = 2100000000000001\n`, 'rules[0].limit: expected a positive integer amount in satoshis, at most 2100000000000000 (21 million BTC)');
  refuses(`${HEAD}[[rules]]\ntype = "amount_limit"\nlimt = 5\n`, 'rules[0].limt: unknown field (expected one of: id, type, description, other_payloads, limit)');
  refuses(`${HEAD}[[rules]]\ntype = "amount_limit"\n`, 'rules[0].limit: required amount in satoshis is missing');
  refuses(`${HEAD}[[rules]]\ntype = "velocity"\nlimit = 5\nwindow = "24h"\n`, 'rules[0].id: required for a velocity rule: its budget is kept under this id, across versions of the policy');
  refuses(`${HEAD}[[rules]]\nid = "v"\ntype = "velocity"\nlimit = 5\nwindow = "1 day"\n`, 'rules[0].window: expected a duration such as "90s", "15m", "24h" or "7d", got the string "1 day"');
  refuses(`${HEAD}[[rules]]\nid = "v"\ntype = "velocity"\nlimit = 5\nwindow = "24h"\nbuckets = 7\n`, 'rules[0].buckets: 7 buckets do not divide the window of 24h into whole milliseconds');
  refuses(`${HEAD}[[rules]]\nid = "r"\ntype = "rate_limit"\nlimit = 0\nwindow = "1h"\n`, 'rules[0].limit: expected a number of requests from 1 to 1000000000, got the integer 0');
  refuses(`${HEAD}[[rules]]\nid = "r"\ntype = "rate_limit"\nlimit = 3\nwindow = "1h"\nper = "ip"\n`, 'rules[0].per: expected one of key, principal, key_and_principal, policy, got "ip"');
  refuses(`${HEAD}[[rules]]\ntype = "teleport"\n`, 'rules[0].type: unknown rule type "teleport" (expected one of: operations, principals, time_window, rate_limit, amount_limit, velocity, destinations, fee_cap, change_must_return, payload_format, approval, paths, tor_periods)');
  refuses(`${HEAD}[[rules]]\nid = "a"\ntype = "operations"\noperations = ["sign"]\n[[rules]]\nid = "a"\ntype = "operations"\noperations = ["sign"]\n`, 'rules[1].id: "a" is already the id of rules[0]');
  refuses(`${HEAD}[[rules]]\ntype = "operations"\noperations = ["sign", "encrypt"]\n`, 'rules[0].operations[1]: unknown operation "encrypt" (expected one of: sign, export, ecdh, decrypt)');
  refuses(`${HEAD}[[rules]]\ntype = "operations"\n`, 'rules[0]: expected at least one of operations, payload_types');
  refuses(`${HEAD}[[rules]]\ntype = "principals"\nallow = ["token:*:x"]\n`, 'rules[0].allow[0]: a principal pattern is an exact id or a prefix ending in one trailing * (such as "token:ops-*")');
  refuses(`${HEAD}[[rules]]\ntype = "principals"\nallow = []\n`, 'rules[0].allow: expected a non-empty list of principal patterns (omit the field instead)');
  refuses(`${HEAD}[[rules]]\ntype = "time_window"\nfrom = "8:00"\n`, 'rules[0].from: expected a time of day "HH:MM" (00:00 to 24:00), got "8:00"');
  refuses(`${HEAD}[[rules]]\ntype = "time_window"\nfrom = "24:00"\n`, 'rules[0].from: must be earlier than 24:00');
  refuses(`${HEAD}[[rules]]\ntype = "time_window"\nfrom = "09:00"\nto = "09:00"\n`, 'rules[0].to: equals from, which would leave no time at all (write from = "00:00", to = "24:00" for the whole day)');
  refuses(`${HEAD}[[rules]]\ntype = "time_window"\ndays = ["mon", "funday"]\n`, 'rules[0].days[1]: expected a day of the week (sun, mon, tue, wed, thu, fri, sat), got "funday"');
  refuses(`${HEAD}[[rules]]\ntype = "time_window"\nfrom = "09:00"\ntimezone = "Mars/Olympus_Mons"\n`, 'rules[0].timezone: unknown IANA time zone "Mars/Olympus_Mons"');
  refuses(`${HEAD}[[rules]]\ntype = "fee_cap"\nmax_fee_bps = 20000\n`, 'rules[0].max_fee_bps: expected basis points from 1 to 10000, got the integer 20000');
  refuses(`${HEAD}[[rules]]\ntype = "payload_format"\nprefixes_hex = ["19F"]\n`, 'rules[0].prefixes_hex[0]: expected lower-case hex byte prefixes (at most 64 bytes), got "19F"');
  refuses(`${HEAD}[[rules]]\ntype = "approval"\napprovers = ["token:a", "token:b"]\nrequired = 3\n`, 'rules[0].required: expected a number of approvers from 1 to 2, got the integer 3');
  refuses(`${HEAD}[[rules]]\ntype = "approval"\napprovers = ["token:a", "token:a"]\nrequired = 1\n`, 'rules[0].approvers[1]: names an approver twice');
  refuses(`${HEAD}[[rules]]\ntype = "approval"\napprovers = ["token:a"]\nrequired = 1\nwhen = { amount_over = 5 }\n`, 'rules[0].when.amount_over: unknown field (expected one of: amount_above, destination_not_in, operations, payload_types, principals)');
  refuses(`${HEAD}[[rules]]\ntype = "destinations"\nallow_unaddressed = "yes"\nallow = ["bc1q"]\n`, 'rules[0].allow_unaddressed: expected true or false, got the string "yes"');
});

test('refuses malformed top-level fields', () => {
  refuses('[applies_to]\nall_keys = true\n[[rules]]\ntype = "operations"\noperations = ["sign"]\n', 'id: required field is missing (expected an id of letters, digits, ".", "_" or "-" (at most 64, starting with a letter or digit))');
  refuses('id = "has space"\n', 'id: expected an id of letters, digits, ".", "_" or "-" (at most 64, starting with a letter or digit), got "has space"');
  refuses('id = "p"\nowner = "me"\n', 'owner: unknown field (expected one of: id, description, applies_to, rules, other_payloads)');
  refuses('id = "p"\n[[rules]]\ntype = "operations"\noperations = ["sign"]\n', 'applies_to: required table is missing (name keys, tags, or all_keys = true)');
  refuses('id = "p"\n[applies_to]\nall_keys = false\n[[rules]]\ntype = "operations"\noperations = ["sign"]\n', 'applies_to.all_keys: is false and no keys or tags are named, so the policy would apply to nothing');
  refuses(HEAD, 'rules: required list of rules is missing');
  refuses('id = "p"\nrules = []\n[applies_to]\nall_keys = true\n', 'rules: expected at least one rule');
  refuses('id = "p"\nrules = [1]\n[applies_to]\nall_keys = true\n', 'rules[0]: expected a rule table');
  refuses('id = "p"\nid = "q"\n', 'policy document is not valid TOML (line 2, column 1): trying to redefine an already defined table or value');
  refuses('{"id": "p",}', 'policy document is not valid JSON: ' + (() => { try { JSON.parse('{"id": "p",}'); } catch (e) { return (e as Error).message; } return ''; })());
  refuses('[1, 2]', 'policy document: expected a table (TOML) or an object (JSON) at the top level', 'json');
});

test('size limits: document bytes, rule count, list entries, string length', () => {
  refuses(`${HEAD}description = "${'x'.repeat(POLICY_LIMITS.documentBytes)}"\n`, `policy document: ${POLICY_LIMITS.documentBytes + HEAD.length + 17} bytes, more than the limit of ${POLICY_LIMITS.documentBytes}`);
  const rules = '[[rules]]\ntype = "operations"\noperations = ["sign"]\n'.repeat(POLICY_LIMITS.rules + 1);
  refuses(`${HEAD}${rules}`, `rules: too many rules: ${POLICY_LIMITS.rules + 1} (at most ${POLICY_LIMITS.rules})`);
  const many = JSON.stringify(Array.from({ length: POLICY_LIMITS.listEntries + 1 }, (_, i) => `a${i}`));
  refuses(`${HEAD}[[rules]]\ntype = "destinations"\nallow = ${many}\n`, `rules[0].allow: too many entries: ${POLICY_LIMITS.listEntries + 1} (at most ${POLICY_LIMITS.listEntries})`);
  refuses(`${HEAD}[[rules]]\ntype = "destinations"\nallow = ["${'a'.repeat(300)}"]\n`, 'rules[0].allow[0]: string too long: 300 characters (at most 256)');
});

test('JSON documents: amounts as safe integers or decimal strings, the same document as TOML', () => {
  const json = JSON.stringify({
    id: 'p',
    applies_to: { tags: ['treasury'] },
    rules: [
      { type: 'amount_limit', limit: '2100000000000000' },
      { id: 'v', type: 'velocity', limit: 100000000, window: '24h' },
    ],
  });
  const doc = parsePolicy(json);
  assert.deepEqual(
    doc.rules.map((r) => (r.spec as { limit: bigint }).limit),
    [2_100_000_000_000_000n, 100_000_000n],
  );
  const toml = parsePolicy('id = "p"\n[applies_to]\ntags = ["treasury"]\n[[rules]]\ntype = "amount_limit"\nlimit = 2_100_000_000_000_000\n[[rules]]\nid = "v"\ntype = "velocity"\nlimit = 100000000\nwindow = "24h"\n');
  assert.deepEqual(toml, doc);
  refuses(JSON.stringify({ id: 'p', applies_to: { all_keys: true }, rules: [{ type: 'amount_limit', limit: 1e20 }] }), 'rules[0].limit: expected a positive integer amount in satoshis');
  refuses(JSON.stringify({ id: 'p', applies_to: { all_keys: true }, rules: [{ type: 'amount_limit', limit: '1e8' }] }), 'rules[0].limit: expected a positive integer amount in satoshis');
});
