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
  const entries = Object.entries(summary ?? {}).sort(([a], [b]) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99));
  return entries.map(([k, v]) => [NAMES[k] ?? k, FORMAT[k] ? FORMAT[k](v) : v]);
}

function card(a, refresh) {
  const decide = (verb) => async () => {
    try {
      const r = await api('POST', `/v1/approvals/${encodeURIComponent(a.id)}/${verb}`);
      say(verb === 'approve' ? (r.settled === 'approved' ? 'Approved: the request goes on.' : `Approval recorded (${r.approved_by.length} of ${r.required}).`) : 'Denied.');
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
    facts([
      ['Requested by', a.requester],
      ['Requested at', a.created_at],
      ['Expires at', a.expires_at],
      ['Approvals', `${a.approved_by.length} of ${a.required}${a.approved_by.length ? ` (${a.approved_by.join(', ')})` : ''}`],
      ['Approvers', a.approvers.join(', ') || 'any approver'],
      ...decoded(a.summary),
    ]),
    el('div', { class: 'actions' }, el('button', { type: 'button', onclick: decide('approve') }, 'Approve'), el('button', { type: 'button', class: 'deny', onclick: decide('deny') }, 'Deny')),
  );
}

/** The operation a principal needs for this page (GET /v1/whoami says which it has). */
export const needs = 'approve';
export const what = 'approve requests';
export const title = 'Approvals';
export const pollMs = 2000;

export async function render(main) {
  const refresh = () => render(main);
  let list;
  try {
    list = (await api('GET', '/v1/approvals')).approvals;
  } catch (e) {
    if (e.status === 401) throw e;
    main.replaceChildren(el('h2', { tabindex: '-1' }, 'Approvals'), refusal(e, 'approve requests'));
    return { stop: true };
  }
  // Keep the keyboard where it was across a refresh.
  const focused = document.activeElement?.closest?.('article')?.getAttribute('data-approval');
  const which = document.activeElement?.textContent;
  main.replaceChildren(el('h2', { tabindex: '-1' }, 'Approvals waiting'), list.length ? el('div', {}, list.map((a) => card(a, refresh))) : el('p', {}, 'Nothing is waiting for an approval.'));
  if (focused) {
    const buttons = [...main.querySelectorAll(`[data-approval="${CSS.escape(focused)}"] button`)];
    (buttons.find((b) => b.textContent === which) ?? buttons[0])?.focus();
  }
  return {};
}
