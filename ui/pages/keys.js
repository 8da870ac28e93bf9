// Keys: every key this principal may see, with its state, purpose, tags and public key.
import { api, el, refusal, table } from '../lib.js';

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
      if (e.status === 401) throw e;
      results.replaceChildren(refusal(e, 'list keys'));
      return;
    }
    const rows = page.keys.map((k) => [k.label, k.algorithm, k.purpose ?? '', el('span', { class: `state ${k.state}` }, k.state), k.attributes?.tags ?? '', k.origin ?? '', publicKey(k)]);
    const body = after ? results.querySelector('tbody') : null;
    if (body) for (const r of rows) body.append(el('tr', {}, r.map((c, i) => (i === 0 ? el('th', { scope: 'row' }, c) : el('td', {}, c)))));
    else results.replaceChildren(rows.length ? table('Keys', ['Label', 'Algorithm', 'Purpose', 'State', 'Tags', 'Origin', 'Public key'], rows, { class: 'keys' }) : el('p', {}, 'There are no keys this principal may see.'));
    const hadFocus = document.activeElement?.classList?.contains('more');
    results.querySelector('.more')?.remove();
    if (page.next) {
      const more = el('button', { type: 'button', class: 'more', onclick: () => load(page.next) }, 'More keys');
      results.append(more);
      if (hadFocus) more.focus();
    }
  };
  main.replaceChildren(el('h2', { tabindex: '-1' }, 'Keys'), results);
  await load(null);
  return {};
}
