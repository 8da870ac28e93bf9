/**
 * `CustosSession`: an end user's side of an account (issue 15). The password never leaves the
 * client: registration and login run OPAQUE (RFC 9807, `@serenity-kit/opaque`, whose Argon2id
 * key stretching runs here), and each call of a session is sealed for its session, its number
 * and its route (core/session-envelope.ts), on top of TLS. Calls are sent one at a time, in
 * the order made: the server accepts each number once and never a lower one.
 *
 *   await CustosSession.register({ addr, ca }, 'alice', code, password);
 *   const s = await CustosSession.login({ addr, ca }, 'alice', password);
 *   await s.whoami();
 *   await s.logout();
 */
import * as opaque from '@serenity-kit/opaque';
import { CustosError } from '../core/errors.js';
import { frame, fromBase64url, openBody, sealBody, sessionKeys, unframe, type Direction } from '../core/session-envelope.js';
import type { Algorithm } from '../core/types.js';
import type { TransportOptions } from './transport.js';

/** An account's key as its session sees it. */
export interface AccountKeyView {
  name: string;
  id: string;
  algorithm: Algorithm;
  /** Base64. */
  public_key: string;
  exportable: boolean;
  created_at: string;
}

/** A grant as its account sees it. */
export interface GrantView {
  id: string;
  principal: string;
  operations: string[];
  keys: string[];
  created_at: string;
  expires_at: string | null;
}

export interface SessionOptions extends Partial<Omit<TransportOptions, 'addr'>> {
  /** `https://vault.example:8200` (or `http://127.0.0.1:8200` on loopback). */
  addr: string;
  /** In a browser (or anywhere): the `fetch` to use instead of the Node transport. */
  fetch?: typeof fetch;
  /** The server's OPAQUE public key (base64url), when the client pins it. */
  serverPublicKey?: string;
  /** Argon2id cost on this side (default: the library's recommended parameters). */
  keyStretching?: 'rfc-recommended' | 'memory-constrained';
}

/** How a session reaches the server: a JSON POST answered with the parsed body, or a typed error. */
export interface Poster {
  post(path: string, body: unknown): Promise<unknown>;
  close(): void;
}

async function post<T>(t: Poster, path: string, body: unknown): Promise<T> {
  return (await t.post(path, body)) as T;
}

/**
 * The session logic, whatever the transport. Each entry point exports a subclass that names
 * its own (`custos/client`: the Node SDK's TLS transport; `custos/client/browser`: fetch), so
 * importing both in one process never moves a session from one to the other.
 */
export class CustosSession {
  /** How this entry's sessions reach the server. */
  protected static poster(_opts: SessionOptions): Poster {
    throw new CustosError('bad_request', 'No transport: import CustosSession from custos/client (Node) or custos/client/browser.');
  }

  private ssid = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private ended = false;

  protected constructor(
    private readonly transport: Poster,
    readonly sid: string,
    private readonly keys: Record<Direction, Uint8Array>,
    readonly account: { name: string },
  ) {}

  /** Sets the account's password with the one-time registration code an operator was given. */
  static async register(opts: SessionOptions, name: string, code: string, password: string): Promise<{ id: string; name: string; registered: boolean }> {
    await opaque.ready;
    const t = this.poster(opts);
    try {
      const { clientRegistrationState, registrationRequest } = opaque.client.startRegistration({ password });
      const { response } = await post<{ response: string }>(t, '/v1/accounts/register/start', { name, code, request: registrationRequest });
      const fin = opaque.client.finishRegistration({ clientRegistrationState, registrationResponse: response, password, keyStretching: opts.keyStretching ?? 'rfc-recommended' });
      if (opts.serverPublicKey !== undefined && fin.serverStaticPublicKey !== opts.serverPublicKey) throw new CustosError('unauthorized', 'The server is not the one pinned (its OPAQUE public key differs); nothing was registered.');
      return await post(t, '/v1/accounts/register/finish', { name, code, record: fin.registrationRecord });
    } finally {
      t.close();
    }
  }

  /** Logs in: OPAQUE authenticates both sides; a wrong password or user name is `unauthorized`. */
  static async login(opts: SessionOptions, name: string, password: string): Promise<CustosSession> {
    await opaque.ready;
    const t = this.poster(opts);
    try {
      const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password });
      const start = await post<{ response: string; state: string }>(t, '/v1/login/start', { name, request: startLoginRequest });
      const fin = opaque.client.finishLogin({ clientLoginState, loginResponse: start.response, password, keyStretching: opts.keyStretching ?? 'rfc-recommended' });
      // The library found the server's answer wrong for this password: the same sentence as the server's.
      if (!fin) throw new CustosError('unauthorized', 'The user name or password is wrong.');
      if (opts.serverPublicKey !== undefined && fin.serverStaticPublicKey !== opts.serverPublicKey) throw new CustosError('unauthorized', 'The server is not the one pinned (its OPAQUE public key differs).');
      const s = await post<{ sid: string }>(t, '/v1/login/finish', { name, state: start.state, finish: fin.finishLoginRequest });
      const key = fromBase64url(fin.sessionKey);
      if (!key) throw new CustosError('internal', 'The OPAQUE library gave a session key that is not base64url.');
      const keys = sessionKeys(key, s.sid);
      key.fill(0);
      // The entry point's own class (its transport), constructed as this class is.
      return new (this as unknown as new (...a: unknown[]) => CustosSession)(t, s.sid, keys, { name });
    } catch (e) {
      t.close();
      throw e;
    }
  }

  /**
   * One call in the session: a JSON header (and raw bytes, for calls that carry key material or
   * a secret) sealed out, the answer opened back; calls go one at a time.
   */
  call<T>(path: string, header: unknown = {}, payload?: Uint8Array): Promise<{ header: T; payload: Uint8Array | null }> {
    const run = this.queue.then(async () => {
      if (this.ended) throw new CustosError('unauthorized', 'This session was ended; log in again.', { tag: 'session' });
      const ssid = ++this.ssid;
      const route = `POST ${path}`;
      const plain = frame(header, payload);
      const sealed = sealBody(this.keys.c2s, this.sid, ssid, 'c2s', route, plain);
      plain.fill(0);
      const res = await post<{ ssid: number; body: string }>(this.transport, path, { sid: this.sid, ssid, body: sealed });
      const opened = res.ssid === ssid ? openBody(this.keys.s2c, this.sid, ssid, 's2c', route, res.body) : null;
      const framed = opened ? unframe(opened) : null;
      if (!framed) throw new CustosError('unauthorized', 'The answer is not sealed for this call of this session (altered or misrouted); it was not used.', { tag: 'session' });
      return { header: framed.header as T, payload: framed.payload };
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async head<T>(path: string, header: unknown = {}, payload?: Uint8Array): Promise<T> {
    return (await this.call<T>(path, header, payload)).header;
  }

  whoami(): Promise<{ account: string; name: string; type: string }> {
    return this.head('/v1/session/whoami');
  }

  generateKey(name: string, algorithm: Algorithm): Promise<AccountKeyView> {
    return this.head('/v1/session/keys/generate', { name, algorithm });
  }

  importKey(name: string, algorithm: Algorithm, secret: Uint8Array): Promise<AccountKeyView> {
    return this.head('/v1/session/keys/import', { name, algorithm }, secret);
  }

  async listKeys(): Promise<AccountKeyView[]> {
    return (await this.head<{ keys: AccountKeyView[] }>('/v1/session/keys/list')).keys;
  }

  async sign(name: string, message: Uint8Array): Promise<Uint8Array> {
    const r = await this.head<{ signature: string }>('/v1/session/keys/sign', { name }, message);
    return fromBase64url(r.signature.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''))!;
  }

  /** The raw bytes an answer carries after its header (a key, a secret). */
  private async bytes(path: string, name: string): Promise<Uint8Array> {
    const r = await this.call(path, { name });
    if (!r.payload) throw new CustosError('internal', `The answer to ${path} carries no bytes.`);
    return r.payload;
  }

  /** The key's secret, into this session only (self-custodial accounts). The caller wipes it. */
  exportKey(name: string): Promise<Uint8Array> {
    return this.bytes('/v1/session/keys/export', name);
  }

  async destroyKey(name: string): Promise<void> {
    await this.head('/v1/session/keys/destroy', { name });
  }

  async putSecret(name: string, value: Uint8Array): Promise<void> {
    await this.head('/v1/session/secrets/put', { name }, value);
  }

  /** A stored secret (the caller wipes it). */
  getSecret(name: string): Promise<Uint8Array> {
    return this.bytes('/v1/session/secrets/get', name);
  }

  async deleteSecret(name: string): Promise<void> {
    await this.head('/v1/session/secrets/delete', { name });
  }

  /** Lets a principal (`token:<name>` or `cert:<name>`) read, verify or sign with some of this account's keys. */
  grant(p: { principal: string; operations: Array<'read' | 'verify' | 'sign'>; keys: string[]; expires_at?: string }): Promise<GrantView> {
    return this.head('/v1/session/grants/create', p);
  }

  async grants(): Promise<GrantView[]> {
    return (await this.head<{ grants: GrantView[] }>('/v1/session/grants/list')).grants;
  }

  async revokeGrant(id: string): Promise<void> {
    await this.head('/v1/session/grants/revoke', { id });
  }

  /** Changes the password (OPAQUE registration inside the session); every session of the account ends, this one too. */
  async changePassword(newPassword: string, keyStretching: SessionOptions['keyStretching'] = 'rfc-recommended'): Promise<void> {
    const { clientRegistrationState, registrationRequest } = opaque.client.startRegistration({ password: newPassword });
    const { response } = await this.head<{ response: string }>('/v1/session/password/start', { request: registrationRequest });
    const fin = opaque.client.finishRegistration({ clientRegistrationState, registrationResponse: response, password: newPassword, keyStretching });
    await this.head('/v1/session/password/finish', { record: fin.registrationRecord });
    this.forget();
  }

  private forget(): void {
    this.ended = true;
    this.keys.c2s.fill(0);
    this.keys.s2c.fill(0);
    this.transport.close();
  }

  /** Ends the session on the server (every node) and forgets its keys here. */
  async logout(): Promise<void> {
    try {
      await this.call('/v1/session/logout');
    } finally {
      this.forget();
    }
  }
}
