// An account's own page, after an OPAQUE login (the browser bundle of custos/client/browser,
// /ui/session.js): its keys with their public keys, a new key, and the grants it has given
// other principals over them, each revocable. Every call is sealed for this session.
import { auth, el, facts, field, say, sessionEnded, table } from '../lib.js';

export const title = 'My account';
export const accountPage = true;
export const what = 'open an account\'s page (log in with the account instead)';

/** The session ended (logged out elsewhere, expired, password changed): the shell logs in again. */
export class SessionEnded extends Error {}

async function call(f) {
  try {
    return await f();
  } catch (e) {
    if (e?.code === 'unauthorized') {
      sessionEnded(e);
      // Handled: the shell has already gone back to the login form.
      throw Object.assign(new SessionEnded(e.message), { handled: true });
    }
    throw e;
  }
}

export async function render(main, ctx) {
  const s = auth.session();
  const who = await call(() => s.whoami());
  const keys = await call(() => s.listKeys());
  const grants = await call(() => s.grants());
  if (!ctx.current()) return {};
  const out = el('div', { 'aria-live': 'polite', id: 'account-result' });
  const name = el('input', { id: 'k-name', name: 'name', required: true, autocomplete: 'off', maxlength: '64' });
  const algorithm = el('select', { id: 'k-algorithm', name: 'algorithm' }, ['ed25519', 'secp256k1', 'p256'].map((a) => el('option', { value: a }, a)));
  const create = el(
    'form',
    {
      'aria-labelledby': 'new-key-title',
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const k = await call(() => s.generateKey(name.value.trim(), algorithm.value));
          say(`Key ${k.name} made (${k.algorithm}).`);
          if (ctx.current()) await render(main, ctx);
        } catch (e) {
          if (e instanceof SessionEnded) return;
          out.replaceChildren(el('p', { class: 'notice', role: 'alert' }, `The vault refused: ${e.message}`));
        }
      },
    },
    el('h3', { id: 'new-key-title' }, 'New key'),
    field('Key name', name),
    field('Algorithm', algorithm),
    el('button', { type: 'submit' }, 'Make key'),
  );
  const revoke = (g) => async () => {
    try {
      await call(() => s.revokeGrant(g.id));
      say(`Grant to ${g.principal} revoked.`);
      if (ctx.current()) await render(main, ctx);
    } catch (e) {
      if (e instanceof SessionEnded) return;
      out.replaceChildren(el('p', { class: 'notice', role: 'alert' }, `The vault refused: ${e.message}`));
    }
  };
  main.replaceChildren(
    el('h2', { tabindex: '-1' }, `Account ${who.name}`),
    facts([['Type', who.type], ['Account id', who.account]]),
    keys.length ? table('My keys', ['Name', 'Algorithm', 'Public key (base64)', 'Made'], keys.map((k) => [k.name, k.algorithm, el('code', { class: 'pub' }, k.public_key), k.created_at])) : el('p', {}, 'This account has no key yet.'),
    create,
    out,
    el('h3', {}, 'Grants'),
    grants.length
      ? table('Rights given to other principals', ['Principal', 'Operations', 'Keys', 'Expires', ''], grants.map((g) => [g.principal, g.operations.join(', '), g.keys.join(', '), g.expires_at ?? 'never', el('button', { type: 'button', class: 'deny', onclick: revoke(g), 'aria-label': `Revoke the grant to ${g.principal}` }, 'Revoke')]))
      : el('p', {}, 'No principal has rights over this account\'s keys.'),
  );
  return {};
}
