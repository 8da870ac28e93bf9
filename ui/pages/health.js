// Health: the seal (with the unseal form while operators' shares are awaited), the database
// and HSM tokens, the CometBFT connections with their last signed heights, and the ssh-agent
// sockets. The seal and the components need no login: an operator unsealing has no token yet.
import { api, el, facts, field, refusal, say, table } from '../lib.js';

function sealSection(seal, rerender) {
  const words = { passphrase: 'a passphrase', shares: 'operator shares', hsm: 'an HSM' };
  const rows = [
    ['State', seal.sealed ? 'Sealed' : 'Unsealed'],
    ['Sealed by', words[seal.seal] ?? seal.seal],
    ...(seal.sealed && seal.threshold ? [['Shares given', `${seal.progress ?? 0} of ${seal.threshold}`]] : []),
    ...(seal.reason ? [['Why', seal.reason]] : []),
  ];
  const parts = [el('h3', { id: 'seal-title' }, 'Seal'), facts(rows)];
  if (seal.sealed && seal.threshold) {
    const share = el('textarea', { id: 'share', name: 'share', rows: '3', required: true, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'share-help' });
    const form = el(
      'form',
      {
        'aria-labelledby': 'unseal-title',
        onsubmit: async (ev) => {
          ev.preventDefault();
          const line = share.value.trim();
          // The share leaves this page's memory as soon as it is sent.
          share.value = '';
          try {
            const s = await api('POST', '/v1/sys/unseal', { share: line });
            say(s.sealed ? `Share accepted: ${s.progress} of ${s.threshold} given.` : 'Unsealed: the vault serves again.');
          } catch (e) {
            say(`Share refused: ${e.message}`);
          }
          await rerender();
        },
      },
      el('h4', { id: 'unseal-title' }, 'Unseal with a share'),
      field('Operator share', share, 'the line custos-share-v1… from your share file; each operator gives their own'),
      el('button', { type: 'submit' }, 'Give share'),
    );
    parts.push(form);
  }
  return el('section', { 'aria-labelledby': 'seal-title' }, parts);
}

function components(h) {
  const rows = (h.components ?? []).map((c) => [c.component, el('span', { class: c.ok ? 'ok' : 'bad' }, c.ok ? 'usable' : 'failing'), c.detail ?? '']);
  return el(
    'section',
    { 'aria-labelledby': 'backends-title' },
    el('h3', { id: 'backends-title' }, 'Database and HSM tokens'),
    rows.length ? table('Backends', ['Component', 'State', 'Detail'], rows) : el('p', {}, 'No HSM token is configured, and the database (SQLite) has no separate check: it answered this page.'),
  );
}

async function privval() {
  const head = el('h3', { id: 'privval-title' }, 'CometBFT validators');
  try {
    const list = (await api('GET', '/v1/privval')).validators;
    const at = (p) => (p ? `${p.height}/${p.round}/${p.step}` : 'nothing yet');
    const rows = list.map((v) => [v.name, v.chain_id, v.address, v.state, at(v.last_signed), String(v.signatures), String(v.refusals), v.hint ?? '']);
    return el('section', { 'aria-labelledby': 'privval-title' }, head, rows.length ? table('Validator connections', ['Name', 'Chain', 'Node', 'State', 'Last signed (height/round/step)', 'Signatures', 'Refusals', 'Hint'], rows) : el('p', {}, 'No [[privval]] connection is configured.'));
  } catch (e) {
    if (e.status === 401) throw e;
    return el('section', { 'aria-labelledby': 'privval-title' }, head, refusal(e, 'see the validators'));
  }
}

async function agents() {
  const head = el('h3', { id: 'agents-title' }, 'ssh-agent sockets');
  try {
    const list = (await api('GET', '/v1/ssh-agents')).agents;
    const rows = list.map((a) => [a.name, el('code', {}, a.socket), a.listening ? (a.locked ? 'locked' : 'listening') : 'stopped', `${a.connections} of ${a.max_connections}`, a.keys.join(', '), a.tor_keys.join(', ')]);
    return el('section', { 'aria-labelledby': 'agents-title' }, head, rows.length ? table('Agent sockets', ['Name', 'Socket', 'State', 'Clients', 'Keys', 'Tor keys'], rows) : el('p', {}, 'No [[ssh_agent]] socket is configured.'));
  } catch (e) {
    if (e.status === 401) throw e;
    return el('section', { 'aria-labelledby': 'agents-title' }, head, refusal(e, 'see the agent sockets'));
  }
}

export const title = 'Health';
export const pollMs = 5000;
export const open = true;

export async function render(main, { loggedIn, principal, rerender, current }) {
  const [seal, health] = await Promise.all([api('GET', '/v1/sys/seal-status'), fetch('/healthz', { cache: 'no-store', credentials: 'same-origin' }).then((r) => r.json())]);
  // Keep a share a person has typed (and not yet given): a refresh must not eat it.
  if (document.getElementById('share')?.value) return {};
  const sections = [sealSection(seal, rerender), components(health)];
  if (!seal.sealed && principal) sections.push(await privval(), await agents());
  else if (!seal.sealed && !loggedIn) sections.push(el('p', {}, 'Log in to see the validators and the ssh-agent sockets.'));
  if (!current()) return {};
  const focusedId = document.activeElement?.id;
  main.replaceChildren(el('h2', { tabindex: '-1' }, 'Health'), ...sections);
  if (focusedId) document.getElementById(focusedId)?.focus();
  return {};
}
