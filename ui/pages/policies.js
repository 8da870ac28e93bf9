// Policies: the documents in force with their versions and source, and "would this be
// allowed": the vault's own `policy test`, which evaluates a request without signing anything.
import { api, base64OfText, el, facts, field, refusal, table } from '../lib.js';

function tryForm(keys) {
  const out = el('div', { 'aria-live': 'polite', id: 'try-result' });
  const list = el('datalist', { id: 'key-labels' }, keys.map((k) => el('option', { value: k })));
  const form = el(
    'form',
    {
      'aria-labelledby': 'try-title',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const d = new FormData(form);
        const factLines = String(d.get('facts') ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
        const factMap = {};
        for (const line of factLines) {
          const at = line.indexOf('=');
          if (at < 1) {
            out.replaceChildren(el('p', { class: 'notice', role: 'alert' }, `Write each fact as name=value: “${line}” is not.`));
            return;
          }
          factMap[line.slice(0, at).trim()] = line.slice(at + 1).trim();
        }
        const message = String(d.get('message') ?? '');
        const principal = String(d.get('principal') ?? '').trim();
        const body = {
          key: String(d.get('key') ?? '').trim(),
          operation: String(d.get('operation')),
          payload_type: String(d.get('payload_type')),
          facts: factMap,
          ...(message ? { message: base64OfText(message) } : {}),
          ...(principal ? { principal } : {}),
        };
        try {
          const r = await api('POST', '/v1/policies/test', body);
          const words = { allow: 'Allowed', deny: 'Denied', needs_approval: 'Needs approval' };
          out.replaceChildren(el('h4', {}, `${words[r.decision.kind] ?? r.decision.kind}`), el('pre', { class: 'explanation' }, r.explanation));
        } catch (e) {
          if (e.status === 401) return; // the shell has logged out (lib.js onUnauthorized)
          out.replaceChildren(refusal(e, 'test policies'));
        }
      },
    },
    el('h3', { id: 'try-title' }, 'Would this be allowed?'),
    field('Key', el('input', { id: 't-key', name: 'key', list: 'key-labels', required: true, autocomplete: 'off' })),
    list,
    field('Operation', el('select', { id: 't-operation', name: 'operation' }, ['sign', 'export'].map((o) => el('option', { value: o }, o)))),
    field('Payload type', el('select', { id: 't-payload', name: 'payload_type' }, ['raw', 'digest', 'psbt', 'ssh', 'consensus'].map((o) => el('option', { value: o }, o)))),
    field('Message (text)', el('input', { id: 't-message', name: 'message', autocomplete: 'off', maxlength: '4096' })),
    field('As principal', el('input', { id: 't-principal', name: 'principal', autocomplete: 'off', 'aria-describedby': 't-principal-help' }), 'e.g. token:payer; empty: you'),
    field('Facts', el('textarea', { id: 't-facts', name: 'facts', rows: '3', 'aria-describedby': 't-facts-help' }), 'one name=value per line, e.g. protocol=ssh-agent'),
    el('button', { type: 'submit' }, 'Test'),
  );
  return el('section', {}, form, out);
}

/** The operation a principal needs for this page (GET /v1/whoami says which it has). */
export const needs = 'policy';
export const what = 'read policies';
export const title = 'Policies';

export async function render(main) {
  let policies;
  try {
    policies = (await api('GET', '/v1/policies')).policies;
  } catch (e) {
    if (e.status === 401) throw e;
    main.replaceChildren(el('h2', { tabindex: '-1' }, 'Policies'), refusal(e, 'read policies'));
    return {};
  }
  const keys = await api('GET', '/v1/keys?limit=200').then((r) => r.keys.map((k) => k.label)).catch(() => []);
  const detail = el('div', { 'aria-live': 'polite' });
  const show = (id) => async () => {
    let h;
    try {
      h = await api('GET', `/v1/policies/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 401) detail.replaceChildren(refusal(e, 'read policies'));
      return;
    }
    const latest = h.versions[h.versions.length - 1];
    detail.replaceChildren(
      el('h3', { id: 'policy-title', tabindex: '-1' }, `Policy ${id}`),
      table(`Versions of ${id}`, ['Version', 'Uploaded', 'Format', 'SHA-256', 'Retired'], h.versions.map((v) => [String(v.version), v.uploaded_at, v.format, el('code', {}, v.sha256), v.retired ? 'yes' : 'no'])),
      el('h4', {}, `Version ${latest.version}`),
      el('pre', { class: 'source', tabindex: '0', 'aria-label': `Source of ${id} version ${latest.version}` }, latest.source),
    );
    detail.querySelector('h3').focus();
  };
  main.replaceChildren(
    el('h2', { tabindex: '-1' }, 'Policies'),
    policies.length
      ? table('Policies in force', ['Policy', 'Version', 'Uploaded', 'SHA-256', ''], policies.map((p) => [p.id, String(p.version), p.uploaded_at, el('code', {}, p.sha256.slice(0, 16)), el('button', { type: 'button', onclick: show(p.id), 'aria-label': `Show policy ${p.id}` }, 'Show')]))
      : el('p', {}, 'No policy is in force: every key signs what its principals may ask.'),
    detail,
    tryForm(keys),
  );
  return {};
}
