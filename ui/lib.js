// What every page of the console shares: building elements (never innerHTML: what the vault
// returns is data, not markup), calling the API with this tab's credentials, and saying things
// in the live status line.

/**
 * This tab's way in: a bearer token, the browser's client certificate (no header at all), or an
 * account's OPAQUE session. The session's keys live in this page's memory only (never in
 * storage): a reload ends it, as closing the tab does.
 */
let session = null;
export const auth = {
  token: () => sessionStorage.getItem('custos.token'),
  certificate: () => sessionStorage.getItem('custos.certificate') === '1',
  session: () => session,
  loggedIn: () => session !== null || Boolean(sessionStorage.getItem('custos.token')) || sessionStorage.getItem('custos.certificate') === '1',
  useToken(t) {
    auth.forget();
    sessionStorage.setItem('custos.token', t);
  },
  useCertificate() {
    auth.forget();
    sessionStorage.setItem('custos.certificate', '1');
  },
  useSession(s) {
    auth.forget();
    session = s;
  },
  forget() {
    sessionStorage.removeItem('custos.token');
    sessionStorage.removeItem('custos.certificate');
    session = null;
  },
};

/** A text node or element with children. Attributes named on* take a function. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== undefined && v !== null) e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/** An API error: the HTTP status, the vault's stable code and its sentence. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Called on any 401, wherever it came from (a click as much as a page load): the shell logs out. */
let unauthorized = () => {};
export function onUnauthorized(f) {
  unauthorized = f;
}
/** An account's session call refused as unauthorized: the same way out. */
export function sessionEnded(e) {
  unauthorized(e);
}

export async function api(method, path, body) {
  const headers = {};
  const t = auth.token();
  if (t) headers.authorization = `Bearer ${t}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  // same-origin: the browser presents a client certificate to this origin only when the Fetch
  // spec's credentials mode allows it ('omit' would forbid it in a browser that follows it).
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'same-origin' });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = new ApiError(res.status, data?.code ?? 'unknown', data?.message ?? `The vault answered HTTP ${res.status}.`);
    // A token or certificate refused: log out. (An account's session is not what the API's
    // routes authenticate: its 401 there says nothing about the session.)
    if (res.status === 401 && (auth.token() || auth.certificate())) unauthorized(e);
    throw e;
  }
  return data;
}

const status = () => document.getElementById('status');
export function say(text) {
  status().textContent = text;
}

/** A definition list from [term, value] pairs; a value with line breaks is a list. */
export function facts(pairs) {
  return el(
    'dl',
    {},
    pairs
      .filter(([, v]) => v !== undefined && v !== null && v !== '')
      .flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, String(v).includes('\n') ? el('ul', {}, String(v).split('\n').map((line) => el('li', {}, line))) : String(v))]),
  );
}

/** A table row: the first cell is the row's header. */
export const row = (cells) => el('tr', {}, cells.map((c, i) => (i === 0 ? el('th', { scope: 'row' }, c) : el('td', {}, c))));

/**
 * The "more" button under a paged table: replaced on each page, keeping the keyboard on it
 * when it had it; none once the last page is shown.
 */
export function moreButton(results, label, next, load) {
  const hadFocus = document.activeElement?.classList?.contains('more');
  results.querySelector('.more')?.remove();
  if (next === null || next === undefined) return;
  const more = el('button', { type: 'button', class: 'more', onclick: () => load(next) }, label);
  results.append(more);
  if (hadFocus) more.focus();
}

/** A table with a caption and header row; `rows` are arrays of cells (text or nodes). */
export function table(caption, headers, rows, attrs = {}) {
  return el(
    'table',
    attrs,
    el('caption', {}, caption),
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows.map(row)),
  );
}

/** A notice for a refusal: 403 in words a person understands, anything else with the vault's sentence. */
export function refusal(e, what) {
  return el('p', { class: 'notice', role: 'alert' }, e.status === 403 ? `This principal may not ${what}.` : `The vault refused: ${e.message}`);
}

/** Form field: a label and its control, tied by id. */
export function field(label, control, help) {
  const id = control.id;
  return el('div', { class: 'field' }, el('label', { for: id }, label), control, help ? el('small', { id: `${id}-help` }, help) : null);
}

export const base64OfText = (text) => btoa(String.fromCharCode(...new TextEncoder().encode(text)));
