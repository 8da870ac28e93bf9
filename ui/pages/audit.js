// Audit: the log, newest first, filtered by key, principal, operation and outcome, a page at a
// time; above it the whole chain's verification (every link, signed checkpoint and MAC, as
// `custos audit verify` checks it) and the newest signed checkpoint.
import { api, el, facts, field, moreButton, refusal, row, table } from '../lib.js';

const capital = (t) => t.charAt(0).toUpperCase() + t.slice(1);
const filters = { key: '', principal: '', operation: '', outcome: '' };

function verification(s) {
  if (!s.ok) {
    return el(
      'section',
      { class: 'verification bad', 'aria-labelledby': 'chain-title' },
      el('h3', { id: 'chain-title' }, 'The audit log fails verification'),
      el('p', { role: 'alert' }, `${capital(s.first_bad?.problem ?? 'unknown problem')}. Stop trusting this log from entry ${s.first_bad?.seq} on: compare it with an off-host anchor (custos audit verify --anchor) and restore the database from a backup.`),
      facts([['Checked at', s.checked_at]]),
    );
  }
  const cp = s.latest_checkpoint;
  return el(
    'section',
    { class: 'verification good', 'aria-labelledby': 'chain-title' },
    el('h3', { id: 'chain-title' }, 'The audit chain verifies'),
    facts([
      ['Entries', `${s.entries} (head #${s.head_seq})`],
      ['Signed checkpoints', s.checkpoints],
      ['Latest checkpoint', cp ? `#${cp.seq} at ${cp.ts}` : 'none yet'],
      ['Checkpoint hash', cp?.hash],
      ['Checked at', s.checked_at],
    ]),
  );
}

function entryRows(entries) {
  return entries.map((e) => [
    String(e.seq),
    e.ts,
    e.principal,
    e.operation,
    e.key_label ?? e.key_id ?? '',
    el('span', { class: `outcome ${e.outcome}` }, e.outcome),
    [e.reason ?? '', e.authenticated === false ? ' (no MAC)' : ''].join(''),
  ]);
}

/** The operation a principal needs for this page (GET /v1/whoami says which it has). */
export const needs = 'audit';
export const what = 'read the audit log';
export const title = 'Audit log';

export async function render(main) {
  const statusBox = el('div', { 'aria-live': 'polite' }, el('p', {}, 'Checking the chain…'));
  const results = el('div');
  const input = (name, label, help) => {
    const i = el('input', { id: `f-${name}`, name, value: filters[name], autocomplete: 'off', ...(help ? { 'aria-describedby': `f-${name}-help` } : {}) });
    return field(label, i, help);
  };
  const outcome = el('select', { id: 'f-outcome', name: 'outcome' }, ['', 'ok', 'denied', 'failed', 'decided'].map((o) => el('option', { value: o, ...(o === filters.outcome ? { selected: true } : {}) }, o || 'any')));
  const form = el(
    'form',
    {
      class: 'filters',
      'aria-label': 'Filter the log',
      onsubmit: (ev) => {
        ev.preventDefault();
        for (const k of Object.keys(filters)) filters[k] = String(new FormData(form).get(k) ?? '').trim();
        void load(null, true);
      },
    },
    input('key', 'Key', 'a label or id'),
    input('principal', 'Principal', 'e.g. token:payer'),
    input('operation', 'Operation', 'e.g. sign, approve, key_create'),
    field('Outcome', outcome),
    el('button', { type: 'submit' }, 'Filter'),
  );
  const verify = async () => {
    statusBox.replaceChildren(el('p', {}, 'Checking the chain…'));
    try {
      statusBox.replaceChildren(verification(await api('GET', '/v1/audit/status')), el('button', { type: 'button', onclick: verify }, 'Verify again'));
    } catch (e) {
      if (e.status === 401) return; // the shell has logged out (lib.js onUnauthorized)
      statusBox.replaceChildren(refusal(e, 'check the whole log'));
    }
  };
  const load = async (before, fresh) => {
    const q = new URLSearchParams({ limit: '50' });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (before !== null) q.set('before', String(before));
    let page;
    try {
      page = await api('GET', `/v1/audit?${q}`);
    } catch (e) {
      if (e.status === 401) return;
      results.replaceChildren(refusal(e, 'read the audit log'));
      return;
    }
    const rows = entryRows(page.entries.slice().reverse());
    const existing = fresh ? null : results.querySelector('tbody');
    if (existing) {
      existing.append(...rows.map(row));
    } else {
      results.replaceChildren(
        rows.length
          ? table('Audit entries, newest first', ['#', 'Time', 'Principal', 'Operation', 'Key', 'Outcome', 'Reason'], rows, { class: 'audit' })
          : el('p', {}, page.next === null ? 'No entry matches.' : 'No entry matches among the entries read so far; "Older entries" reads further back.'),
      );
    }
    moreButton(results, 'Older entries', page.next, (next) => load(next, false));
  };
  main.replaceChildren(el('h2', { tabindex: '-1' }, 'Audit log'), statusBox, form, results);
  await Promise.all([verify(), load(null, true)]);
  return {};
}
