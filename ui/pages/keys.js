// Keys: every key this principal may see, with its state, purpose, tags and public key.
import { api, el, moreButton, refusal, row, table } from '../lib.js';

function publicKey(k) {
  const text = k.public_key?.openssh ?? k.public_key?.raw_hex ?? '';
  return el('code', { class: 'pub' }, text);
}

/** The operation a principal needs for this page (GET /v1/whoami says which it has). */
export const needs = 'read';
export const what = 'list keys';
export const title = 'Keys';

export async function render(main) {
  const results = el('div');
  const load = async (after) => {
    let page;
    try {
      page = await api('GET', `/v1/keys?limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    } catch (e) {
      if (e.status === 401) return; // the shell has logged out (lib.js onUnauthorized)
      results.replaceChildren(refusal(e, 'list keys'));
      return;
    }
    const rows = page.keys.map((k) => [k.label, k.algorithm, k.purpose ?? '', el('span', { class: `state ${k.state}` }, k.state), k.attributes?.tags ?? '', k.origin ?? '', publicKey(k)]);
    const body = after ? results.querySelector('tbody') : null;
    if (body) body.append(...rows.map(row));
    else results.replaceChildren(rows.length ? table('Keys', ['Label', 'Algorithm', 'Purpose', 'State', 'Tags', 'Origin', 'Public key'], rows, { class: 'keys' }) : el('p', {}, 'There are no keys this principal may see.'));
    moreButton(results, 'More keys', page.next, load);
  };
  main.replaceChildren(el('h2', { tabindex: '-1' }, 'Keys'), results);
  await load(null);
  return {};
}
