// The Custos console: plain ES modules, no build step, served under /ui/ with a strict
// Content-Security-Policy (no inline script or style). The way in is an API token kept in
// sessionStorage and sent only in the Authorization header, or the browser's client
// certificate on a TLS listener with [api] client_ca. No cookie: no other site's request
// carries a token; a certificate the browser presents to anyone's request, so the API refuses
// requests with one that come from another site (refuseCrossSite). Every action is a call to
// the HTTP API, authorised exactly as for any client.
import { api, auth, el, onUnauthorized } from './lib.js';
import * as approvals from './pages/approvals.js';
import * as audit from './pages/audit.js';
import * as keys from './pages/keys.js';
import * as policies from './pages/policies.js';
import * as health from './pages/health.js';
import * as account from './pages/account.js';

const PAGES = { approvals, audit, keys, policies, account, health };
const main = document.getElementById('main');
const nav = document.getElementById('nav');
const logoutButton = document.getElementById('logout');
const who = document.getElementById('who');
let poll = null;
/** GET /v1/whoami of this tab's principal, once logged in. */
let me = null;
/** Bumped by every navigation: a render that finishes after the next one started is dropped. */
let generation = 0;

function stopPolling() {
  if (poll) clearTimeout(poll);
  poll = null;
}

function showLogin(message) {
  stopPolling();
  // A render still on its way (a refresh started before the logout) must not come back.
  generation++;
  nav.hidden = true;
  logoutButton.hidden = true;
  who.hidden = true;
  document.title = 'Log in — Custos console';
  const input = el('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, 'aria-describedby': 'token-help' });
  const form = el(
    'form',
    {
      class: 'login',
      'aria-labelledby': 'login-title',
      onsubmit: (ev) => {
        ev.preventDefault();
        auth.useToken(input.value.trim());
        input.value = '';
        void route(true);
      },
    },
    el('h2', { id: 'login-title' }, 'Log in'),
    el('label', { for: 'token' }, 'API token'),
    input,
    el('small', { id: 'token-help' }, 'It stays in this tab only, and is sent to this vault only.'),
    el('button', { type: 'submit' }, 'Log in'),
  );
  // A TLS listener with [api] client_ca knows a principal by its certificate: no token needed.
  const cert =
    location.protocol === 'https:'
      ? el(
          'p',
          {},
          el(
            'button',
            {
              type: 'button',
              onclick: () => {
                auth.useCertificate();
                void route(true);
              },
            },
            'Log in with this browser’s client certificate',
          ),
        )
      : null;
  main.replaceChildren(...[message ? el('p', { class: 'notice', role: 'alert' }, message) : null, form, cert, accountForms(), el('p', {}, el('a', { href: '#health' }, 'Vault health and unsealing'))].filter(Boolean));
  input.focus();
}

/** The OPAQUE library and the sealed session, loaded when an account logs in (built file). */
const sessionModule = () => import('./session.js');

/**
 * Logging in with an account (OPAQUE: the password never leaves this page), and setting its
 * password the first time with the one-time registration code an operator gave.
 */
function accountForms() {
  const out = el('div', { 'aria-live': 'polite' });
  const refused = (e) => out.replaceChildren(el('p', { class: 'notice', role: 'alert' }, e?.message ?? String(e)));
  const opts = () => ({ addr: location.origin });
  const name = el('input', { id: 'account-name', name: 'name', required: true, autocomplete: 'username' });
  const password = el('input', { id: 'account-password', name: 'password', type: 'password', required: true, autocomplete: 'current-password' });
  const login = el(
    'form',
    {
      class: 'login',
      'aria-labelledby': 'account-title',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const pw = password.value;
        password.value = '';
        out.replaceChildren(el('p', {}, 'Logging in…'));
        try {
          const { CustosSession } = await sessionModule();
          auth.useSession(await CustosSession.login(opts(), name.value.trim(), pw));
          location.hash = '#account';
          void route(true);
        } catch (e) {
          refused(e);
        }
      },
    },
    el('h2', { id: 'account-title' }, 'Log in with an account'),
    el('label', { for: 'account-name' }, 'Account name'),
    name,
    el('label', { for: 'account-password' }, 'Password'),
    password,
    el('button', { type: 'submit' }, 'Log in with account'),
  );
  const rName = el('input', { id: 'register-name', name: 'name', required: true, autocomplete: 'username' });
  const code = el('input', { id: 'register-code', name: 'code', required: true, autocomplete: 'off' });
  const pw1 = el('input', { id: 'register-password', name: 'password', type: 'password', required: true, autocomplete: 'new-password', minlength: '12' });
  const pw2 = el('input', { id: 'register-again', name: 'again', type: 'password', required: true, autocomplete: 'new-password' });
  const register = el(
    'form',
    {
      class: 'login',
      'aria-labelledby': 'register-title',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const [a, b] = [pw1.value, pw2.value];
        pw1.value = '';
        pw2.value = '';
        if (a !== b) return refused(new Error('The two passwords differ; type them again.'));
        out.replaceChildren(el('p', {}, 'Setting the password…'));
        try {
          const { CustosSession } = await sessionModule();
          await CustosSession.register(opts(), rName.value.trim(), code.value.trim(), a);
          code.value = '';
          out.replaceChildren(el('p', {}, 'Password set: log in with it above.'));
          name.value = rName.value.trim();
          password.focus();
        } catch (e) {
          refused(e);
        }
      },
    },
    el('h3', { id: 'register-title' }, 'First time: set your password'),
    el('label', { for: 'register-name' }, 'Account name'),
    rName,
    el('label', { for: 'register-code' }, 'Registration code'),
    code,
    el('label', { for: 'register-password' }, 'New password'),
    pw1,
    el('label', { for: 'register-again' }, 'New password, again'),
    pw2,
    el('button', { type: 'submit' }, 'Set password'),
  );
  return el('section', { 'aria-label': 'Accounts' }, login, el('details', {}, el('summary', {}, 'First time here with a registration code?'), register), out);
}

function loginFailed(e) {
  // Once per error: the API's 401 hook and the page that made the call both get here.
  if (e.handled) return;
  e.handled = true;
  const byCert = auth.certificate();
  if (auth.session()) {
    // Ended at the vault too, unless the session itself was what refused (best effort).
    if (!(e instanceof account.SessionEnded) && e?.code !== 'unauthorized') auth.session().logout().catch(() => undefined);
    auth.forget();
    me = null;
    return showLogin('The session ended (logged out, expired, or the password changed): log in again.');
  }
  auth.forget();
  me = null;
  if (e.status !== 401) return showLogin(`The vault could not be reached: ${e.message}`);
  showLogin(byCert ? 'This browser’s certificate was not accepted (none sent, or not a principal’s): log in with a token.' : 'The token was not accepted: log in again.');
}

function markCurrent(name) {
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === `#${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route(moveFocus = true) {
  stopPolling();
  const gen = ++generation;
  const name = Object.hasOwn(PAGES, location.hash.slice(1)) ? location.hash.slice(1) : 'approvals';
  let page = PAGES[name];
  // A sealed vault answers nothing but its seal and health: show those, with the unseal form.
  const seal = await api('GET', '/v1/sys/seal-status').catch(() => ({ sealed: false }));
  if (gen !== generation) return;
  if (seal.sealed) page = health;
  else if (!auth.loggedIn() && !page.open) return showLogin();
  const loggedIn = auth.loggedIn() && !seal.sealed;
  if (loggedIn && !me && auth.session()) {
    me = { principal: `account:${auth.session().account.name}`, role: 'account', operations: [] };
  } else if (loggedIn && !me) {
    try {
      me = await api('GET', '/v1/whoami');
    } catch (e) {
      if (gen !== generation) return;
      return loginFailed(e);
    }
    if (gen !== generation) return;
  }
  // An account sees its own page (and health); a principal the sections its operations allow.
  const may = (p) => (auth.session() ? p.accountPage === true || p === health : !p.accountPage && (!p.needs || (me?.operations ?? []).includes(p.needs)));
  // Only the sections this principal may use; the first of them when none is asked for.
  for (const a of nav.querySelectorAll('a')) a.parentElement.hidden = !may(PAGES[a.getAttribute('href').slice(1)]);
  if (!location.hash && loggedIn && page !== health && !may(page)) page = Object.values(PAGES).find(may) ?? health;
  nav.hidden = !loggedIn;
  logoutButton.hidden = !auth.loggedIn();
  who.hidden = !loggedIn;
  who.textContent = loggedIn && me ? `${me.principal}${me.role ? ` (${me.role})` : ''}` : '';
  markCurrent(Object.keys(PAGES).find((k) => PAGES[k] === page));
  document.title = `${page.title} — Custos console`;
  const draw = async (first) => {
    if (gen !== generation) return;
    if (loggedIn && !may(page)) {
      // The API would refuse it (and put the attempt on the record): say so without asking.
      main.replaceChildren(el('h2', { tabindex: '-1' }, page.title), el('p', { class: 'notice', role: 'alert' }, `This principal may not ${page.what}.`));
      if (first && moveFocus) main.querySelector('h2')?.focus();
      return;
    }
    let r;
    try {
      // `principal`: a token's or certificate's sections (an account has none of them).
      // `current`: whether this render still owns the page (a click's redraw asks it too).
      r = await page.render(main, { loggedIn, principal: loggedIn && !auth.session(), rerender: () => route(false), current: () => gen === generation });
    } catch (e) {
      if (gen !== generation) return;
      if (e.status === 401 || e instanceof account.SessionEnded) return loginFailed(e);
      if (e.code === 'vault_sealed') return route(true);
      main.replaceChildren(el('h2', { tabindex: '-1' }, page.title), el('p', { class: 'notice', role: 'alert' }, `The vault could not be reached: ${e.message}`));
      r = {};
    }
    if (gen !== generation) return;
    // After a navigation, the keyboard starts at the page's heading.
    if (first && moveFocus) main.querySelector('h2')?.focus();
    // Live: the page follows the vault without a reload.
    if (page.pollMs && !r?.stop) poll = setTimeout(() => void draw(false), page.pollMs);
  };
  await draw(true);
}

onUnauthorized((e) => loginFailed(e));
logoutButton.addEventListener('click', () => {
  // An account's session ends at the vault too (best effort: it also ends by itself when idle).
  auth.session()?.logout().catch(() => undefined);
  auth.forget();
  me = null;
  document.getElementById('status').textContent = 'Logged out.';
  showLogin();
});
window.addEventListener('hashchange', () => void route(true));
void route(false);
