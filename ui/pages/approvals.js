// Approvals: the requests waiting for a person, with what each would sign, decoded (a PSBT's
// outputs, amounts, fee and change; an SSH login's user, server host key and session), the
// rules that asked, and who has approved so far. The list follows the vault every 2 s.
import { api, el, facts, refusal, say } from '../lib.js';

/** The vault's fact names, for people; anything not named here is shown as it comes. */
const NAMES = {
  outputs: 'Outputs',
  sent_externally_sats: 'Sent away (sats)',
  fee_sats: 'Fee (sats)',
  change_sats: 'Change back to the wallet (sats)',
  destinations: 'Destinations',
  asked_by: 'Asked for by',
  protocol: 'Asked over',
  socket: 'ssh-agent socket',
  ssh_user: 'SSH user',
  ssh_method: 'SSH request',
  ssh_host_key_sha256: 'Server host key',
  ssh_session_id_sha256: 'SSH session (SHA-256 of its id)',
  ssh_session_bound: 'Bound to the SSH session',
  ssh_destination: 'Destination',
  sshsig_namespace: 'SSH signature namespace',
  path: 'Derivation path',
  network: 'Network',
  txid: 'Transaction id',
  chain_id: 'Chain',
  height: 'Height',
  round: 'Round',
  step: 'Step',
};
const ORDER = Object.keys(NAMES);

/** A SHA-256 in hex as OpenSSH prints fingerprints (ssh-keygen -l, known_hosts prompts): SHA256:<base64>. */
function sshFingerprint(hex) {
  if (!/^[0-9a-f]{64}$/.test(hex)) return hex;
  const bytes = hex.match(/../g).map((b) => parseInt(b, 16));
  return `SHA256:${btoa(String.fromCharCode(...bytes)).replace(/=+$/, '')}`;
}

const FORMAT = { ssh_host_key_sha256: sshFingerprint };

function decoded(summary) {
  // `destinations` (kept in the API for older clients) repeats what `outputs` lists.
  const entries = Object.entries(summary ?? {}).filter(([k]) => !(k === 'destinations' && summary.outputs)).sort(([a], [b]) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99));
  const own = (o, k) => (Object.hasOwn(o, k) ? o[k] : undefined);
  return entries.map(([k, v]) => [own(NAMES, k) ?? k, own(FORMAT, k) ? FORMAT[k](v) : v]);
}

function describe(a) {
  return `${a.operation} with ${a.key_label ?? a.key_id} (asked by ${a.requester} at ${a.created_at})`;
}

function details(a) {
  return facts([
    ['Requested by', a.requester],
    ['Requested at', a.created_at],
    ['Expires at', a.expires_at],
    ['Approvals', `${a.approved_by.length} of ${a.required}${a.approved_by.length ? ` (${a.approved_by.join(', ')})` : ''}`],
    ['Approvers', a.approvers.join(', ') || 'any approver'],
    ...decoded(a.summary),
  ]);
}

function card(a, refresh) {
  const decide = (verb) => async () => {
    try {
      const r = await api('POST', `/v1/approvals/${encodeURIComponent(a.id)}/${verb}`);
      // The status names the request decided: a person can check it was the one meant.
      say(verb === 'approve' ? (r.settled === 'approved' ? `Approved: ${describe(a)} goes on.` : `Approval recorded (${r.approved_by.length} of ${r.required}) for ${describe(a)}.`) : `Denied: ${describe(a)}.`);
    } catch (e) {
      say(`Refused: ${e.message}`);
    }
    await refresh();
  };
  const heading = `${a.operation} with ${a.key_label ?? a.key_id}`;
  return el(
    'article',
    { 'aria-label': heading, 'data-approval': a.id },
    el('h3', {}, heading),
    details(a),
    el('div', { class: 'actions' }, el('button', { type: 'button', onclick: decide('approve') }, 'Approve'), el('button', { type: 'button', class: 'deny', onclick: decide('deny') }, 'Deny')),
  );
}

/** The operation a principal needs for this page (GET /v1/whoami says which it has). */
export const needs = 'approve';
export const what = 'approve requests';
export const title = 'Approvals';
export const pollMs = 2000;

/**
 * Updates the list in place, by request id: a card never moves under a person's pointer or
 * keyboard. A request no longer waiting stays where it was, without buttons, until the person
 * clears the finished ones; new requests are added at the end.
 */
export async function render(main, ctx) {
  // A click's redraw goes through here too: never onto a page that has moved on (or logged out).
  const refresh = async () => {
    if (ctx.current()) await render(main, ctx).catch(() => undefined);
  };
  let list;
  try {
    list = (await api('GET', '/v1/approvals')).approvals;
  } catch (e) {
    if (e.status === 401) throw e;
    if (!ctx.current()) return {};
    main.replaceChildren(el('h2', { tabindex: '-1' }, 'Approvals'), refusal(e, 'approve requests'));
    return { stop: true };
  }
  if (!ctx.current()) return {};
  let box = main.querySelector('#approval-list');
  if (!box) {
    box = el('div', { id: 'approval-list' });
    const clear = el('button', { type: 'button', id: 'clear-finished', hidden: true, onclick: () => {
      for (const c of box.querySelectorAll('article.finished')) c.remove();
      clear.hidden = true;
      void refresh();
    } }, 'Clear finished requests');
    // The "nothing waiting" line goes below the list: showing it moves no card.
    main.replaceChildren(el('h2', { tabindex: '-1' }, 'Approvals waiting'), box, el('p', { id: 'none-waiting', hidden: true }, 'Nothing is waiting for an approval.'), clear);
  }
  const waiting = new Map(list.map((a) => [a.id, a]));
  for (const c of box.querySelectorAll('article:not(.finished)')) {
    const a = waiting.get(c.getAttribute('data-approval'));
    if (a) {
      // Only when something changed (approvals given): a redraw would drop a text selection.
      const seen = JSON.stringify(a);
      if (c.dataset.seen !== seen) {
        c.querySelector('dl').replaceWith(details(a));
        c.dataset.seen = seen;
      }
      continue;
    }
    // Decided (here or elsewhere) or expired: it stays, inert, so nothing below it moves.
    c.classList.add('finished');
    c.setAttribute('aria-label', `${c.getAttribute('aria-label')}: no longer waiting`);
    c.querySelector('.actions').replaceWith(el('p', { class: 'actions' }, 'No longer waiting: decided or expired.'));
  }
  for (const a of list) {
    if (box.querySelector(`[data-approval="${CSS.escape(a.id)}"]`)) continue;
    const c = card(a, refresh);
    c.dataset.seen = JSON.stringify(a);
    box.append(c);
  }
  main.querySelector('#none-waiting').hidden = list.length > 0;
  main.querySelector('#clear-finished').hidden = !box.querySelector('article.finished');
  return {};
}
