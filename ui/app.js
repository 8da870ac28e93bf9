// The Custos console: plain ES module, no build step, served under /ui/ with a strict
// Content-Security-Policy (no inline script or style). The API token lives in sessionStorage
// and goes only in the Authorization header (no cookie, so no cross-site request can carry it);
// every action is a call to the HTTP API, authorised exactly as for any other client.

const main = document.getElementById('main');
const status = document.getElementById('status');
const nav = document.getElementById('nav');
const logoutButton = document.getElementById('logout');
let poll = null;

const token = () => sessionStorage.getItem('custos.token');

/** A text node or element with children; never innerHTML (what the vault returns is data, not markup). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'onclick' || k === 'onsubmit') e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== undefined) e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${token()}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    cache: 'no-store',
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(data?.error?.message ?? `HTTP ${res.status}`);
    err.status = res.status;
    err.code = data?.error?.code;
    throw err;
  }
  return data;
}

function say(text) {
  status.textContent = text;
}

function stopPolling() {
  if (poll) clearInterval(poll);
  poll = null;
}

function showLogin(message) {
  stopPolling();
  nav.hidden = true;
  logoutButton.hidden = true;
  const input = el('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, 'aria-describedby': 'token-help' });
  const form = el(
    'form',
    {
      class: 'login',
      'aria-labelledby': 'login-title',
      onsubmit: (ev) => {
        ev.preventDefault();
        sessionStorage.setItem('custos.token', input.value.trim());
        input.value = '';
        route();
      },
    },
    el('h2', { id: 'login-title' }, 'Log in'),
    el('label', { for: 'token' }, 'API token'),
    input,
    el('small', { id: 'token-help' }, 'It stays in this tab only, and is sent to this vault only.'),
    el('button', { type: 'submit' }, 'Log in'),
  );
  main.replaceChildren(...(message ? [el('p', { class: 'notice', role: 'alert' }, message)] : []), form);
  input.focus();
}

/** Facts of a request, for people: amounts in sats, lists split. */
function summaryRows(summary) {
  const names = { sent_externally_sats: 'Sent away (sats)', fee_sats: 'Fee (sats)', destinations: 'Destinations', protocol: 'Protocol', network: 'Network', txid: 'Transaction id' };
  return Object.entries(summary ?? {}).flatMap(([k, v]) => [el('dt', {}, names[k] ?? k), el('dd', {}, String(v))]);
}

function approvalCard(a) {
  const decide = (verb) => async () => {
    try {
      const r = await api('POST', `/v1/approvals/${encodeURIComponent(a.id)}/${verb}`);
      say(verb === 'approve' ? (r.settled === 'approved' ? 'Approved: the request goes on.' : `Approval recorded (${r.approved_by.length} of ${r.required}).`) : 'Denied.');
    } catch (e) {
      say(`Refused: ${e.message}`);
    }
    await renderApprovals();
  };
  const heading = `${a.operation} with ${a.key_label ?? a.key_id}`;
  return el(
    'article',
    { 'aria-label': heading, 'data-approval': a.id },
    el('h2', {}, heading),
    el(
      'dl',
      {},
      el('dt', {}, 'Requested by'),
      el('dd', {}, a.requester),
      el('dt', {}, 'Requested at'),
      el('dd', {}, a.created_at),
      el('dt', {}, 'Expires at'),
      el('dd', {}, a.expires_at),
      el('dt', {}, 'Approvals'),
      el('dd', {}, `${a.approved_by.length} of ${a.required}${a.approved_by.length ? ` (${a.approved_by.join(', ')})` : ''}`),
      el('dt', {}, 'Approvers'),
      el('dd', {}, a.approvers.join(', ')),
      ...summaryRows(a.summary),
    ),
    el('div', { class: 'actions' }, el('button', { type: 'button', onclick: decide('approve') }, 'Approve'), el('button', { type: 'button', class: 'deny', onclick: decide('deny') }, 'Deny')),
  );
}

async function renderApprovals() {
  let list;
  try {
    list = (await api('GET', '/v1/approvals')).approvals;
  } catch (e) {
    if (e.status === 401) return showLogin('The token was not accepted: log in again.');
    stopPolling();
    main.replaceChildren(el('h2', {}, 'Approvals'), el('p', { class: 'notice', role: 'alert' }, e.status === 403 ? 'This principal may not approve requests.' : `The vault refused: ${e.message}`));
    return;
  }
  // Keep the keyboard where it was across a refresh.
  const focused = document.activeElement?.closest?.('article')?.getAttribute('data-approval');
  const title = el('h2', {}, 'Approvals waiting');
  main.replaceChildren(title, list.length ? el('div', {}, list.map(approvalCard)) : el('p', {}, 'Nothing is waiting for an approval.'));
  if (focused) main.querySelector(`[data-approval="${CSS.escape(focused)}"] button`)?.focus();
}

async function route() {
  if (!token()) return showLogin();
  nav.hidden = false;
  logoutButton.hidden = false;
  stopPolling();
  await renderApprovals();
  // Live: the list follows the vault without a reload.
  poll = setInterval(() => void renderApprovals(), 2000);
}

logoutButton.addEventListener('click', () => {
  sessionStorage.removeItem('custos.token');
  say('Logged out.');
  showLogin();
});
window.addEventListener('hashchange', () => void route());
void route();
