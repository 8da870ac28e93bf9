/**
 * How the SDK reaches the API: node:http or node:https with a keep-alive agent, the server's
 * certificate checked against a pinned CA (and, optionally, a pinned SHA-256 fingerprint of
 * the server's certificate on top), a client certificate for mutual TLS, and retries only
 * where repeating cannot do anything twice.
 *
 * Retried: a request the server never received (the connection was refused or failed before
 * any byte was sent), and GET/HEAD on a dropped connection, 429 or 503. Never retried: a POST,
 * PUT, PATCH or DELETE that may have reached the server, since a signature or a key creation
 * repeated is a second one (with its own audit entry and policy budget).
 */
import http from 'node:http';
import https from 'node:https';
import { X509Certificate } from 'node:crypto';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { CustosError, httpStatusOf, type ErrorCode } from '../core/errors.js';

export interface TransportOptions {
  /** `https://vault.example:8200` (or `http://127.0.0.1:8200` on loopback). */
  addr: string;
  /** PEM of the CA (or the self-signed server certificate) to trust instead of the system's. */
  ca?: string | Uint8Array;
  /** SHA-256 of the server's certificate (hex, colons allowed): checked on top of the chain. */
  serverFingerprint?: string;
  /** Mutual TLS: the client certificate and its key (PEM). */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** Per request, including a wait for an approval (default 120 s). */
  timeoutMs?: number;
  /** Attempts beyond the first for a request that is safe to repeat (default 2). */
  retries?: number;
  /**
   * The server's certificate must be for a server (extended key usage serverAuth): a client
   * certificate from the same CA whose name happens to be the host's does not pass.
   */
  requireServerAuth?: boolean;
}

export interface ApiResponse {
  status: number;
  body: unknown;
  requestId?: string;
}

/** An error from the API: its stable code (`policy_denied:velocity`), sentence, status and request id. */
export class CustosApiError extends CustosError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly status: number,
    readonly requestId: string | undefined,
    tag?: string,
  ) {
    super(code, message, tag ? { tag } : undefined);
    this.name = 'CustosApiError';
  }
}

const SAFE = new Set(['GET', 'HEAD']);
/** Errors where the request never left this process: repeating it cannot do anything twice. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

export class Transport {
  private readonly url: URL;
  private readonly agent: http.Agent;
  private readonly pin: string | null;
  private plainLoopback = true;

  constructor(private readonly opts: TransportOptions) {
    this.url = new URL(opts.addr);
    if (this.url.protocol !== 'https:' && this.url.protocol !== 'http:') throw new CustosError('bad_request', `The vault address ${opts.addr} is not http:// or https://.`);
    this.pin = opts.serverFingerprint ? opts.serverFingerprint.replace(/:/g, '').toLowerCase() : null;
    if (this.pin !== null && !/^[0-9a-f]{64}$/.test(this.pin)) throw new CustosError('bad_request', 'serverFingerprint is a SHA-256: 64 hex digits (colons allowed).');
    if (this.url.protocol === 'https:') {
      const pem = (v: string | Uint8Array | undefined) => (v === undefined ? undefined : typeof v === 'string' ? v : Buffer.from(v));
      this.agent = new https.Agent({
        keepAlive: true,
        minVersion: 'TLSv1.2',
        // Always, whatever NODE_TLS_REJECT_UNAUTHORIZED says: the CA and the pin are the point.
        rejectUnauthorized: true,
        ...(opts.ca !== undefined ? { ca: pem(opts.ca) } : {}),
        ...(opts.cert !== undefined ? { cert: pem(opts.cert) } : {}),
        ...(opts.key !== undefined ? { key: pem(opts.key) } : {}),
        // Called only once the chain verified: the pin narrows trust, never widens it.
        checkServerIdentity: (host: string, cert: PeerCertificate) => {
          const err = checkServerIdentity(host, cert);
          if (err) return err;
          if (opts.requireServerAuth && !(cert.ext_key_usage ?? []).includes('1.3.6.1.5.5.7.3.1')) {
            return Object.assign(new Error(`The server's certificate is not a server certificate (no serverAuth extended key usage).`), { code: 'ERR_CUSTOS_PIN' });
          }
          if (this.pin !== null && fingerprintOf(cert) !== this.pin) {
            return Object.assign(new Error(`The server's certificate ${fingerprintOf(cert)} is not the pinned ${this.pin}.`), { code: 'ERR_CUSTOS_PIN' });
          }
          return undefined;
        },
      });
    } else {
      if (opts.ca !== undefined || opts.cert !== undefined || this.pin !== null) throw new CustosError('bad_request', `TLS options were given but the address ${opts.addr} is plain http://; use https://.`);
      // A token is a credential: over plain HTTP it goes to loopback only (as the server listens).
      const h = this.url.hostname.replace(/^\[|\]$/g, '');
      this.plainLoopback = h === 'localhost' || h === '::1' || /^127(?:\.\d{1,3}){3}$/.test(h);
      this.agent = new http.Agent({ keepAlive: true });
    }
  }

  /** Refuses to send a secret (a token, an operator share) over plain HTTP beyond loopback. */
  assertConfidential(what: string): void {
    if (!this.plainLoopback) throw new CustosError('bad_request', `Refusing to send ${what} over plain HTTP to ${this.url.host}: use https:// (the vault serves other addresses only over TLS).`);
  }

  async request(method: string, path: string, body: unknown, token: string | undefined): Promise<ApiResponse> {
    if (token && !this.plainLoopback) throw new CustosError('bad_request', `Refusing to send the API token over plain HTTP to ${this.url.host}: use https:// (the vault serves other addresses only over TLS).`);
    const retries = this.opts.retries ?? 2;
    for (let attempt = 0; ; attempt++) {
      let res: ApiResponse;
      try {
        res = await this.once(method, path, body, token);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? '';
        // Never sent: the connection failed before it was established (a kept-alive socket
        // that fails was established, and the request may have reached the vault).
        const unsent = NOT_SENT.has(code) && (e as { custosConnected?: boolean }).custosConnected !== true;
        const again = attempt < retries && (unsent || (SAFE.has(method) && (code === 'ECONNRESET' || code === 'EPIPE')));
        if (again) {
          await sleep(100 * 2 ** attempt);
          continue;
        }
        throw this.unreachable(e as Error);
      }
      if (attempt < retries && SAFE.has(method) && (res.status === 429 || res.status === 503)) {
        await sleep(Math.min(5_000, 200 * 2 ** attempt));
        continue;
      }
      return res;
    }
  }

  private once(method: string, path: string, body: unknown, token: string | undefined): Promise<ApiResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8');
    const lib = this.url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = lib.request(
        new URL(path, this.url),
        {
          method,
          agent: this.agent,
          timeout: this.opts.timeoutMs ?? 120_000,
          headers: {
            accept: 'application/json',
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            // A vault's answers are small; a huge one is not the vault.
            if (size > 64 * 1024 * 1024) req.destroy(new Error('The answer is larger than 64 MiB.'));
            else chunks.push(c);
          });
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = text ? JSON.parse(text) : {};
            } catch {
              json = undefined;
            }
            const rid = res.headers['x-request-id'];
            resolve({ status: res.statusCode ?? 0, body: json, ...(typeof rid === 'string' ? { requestId: rid } : {}) });
          });
          res.on('error', reject);
        },
      );
      let connected = false;
      req.on('socket', (sock) => {
        if (!sock.connecting) connected = true;
        else sock.once('connect', () => (connected = true));
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error(`No answer within ${(this.opts.timeoutMs ?? 120_000) / 1000} s.`), { code: 'ETIMEDOUT' })));
      req.on('error', (e) => reject(Object.assign(e, { custosConnected: connected })));
      req.end(payload);
    });
  }

  private unreachable(e: Error): CustosError {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_CUSTOS_PIN' || (code && /CERT|SELF_SIGNED|UNABLE_TO|HOSTNAME|ERR_TLS/.test(code))) {
      return new CustosError('unauthorized', `The vault at ${this.opts.addr} failed TLS verification (${e.message}): give its CA (--ca, CUSTOS_CACERT) or check the pinned fingerprint.`, { tag: 'tls' });
    }
    return new CustosError('storage_unavailable', `Cannot reach the vault at ${this.opts.addr} (${e.message}); is \`custos serve\` running there?`, { tag: 'unreachable' });
  }

  /** Throws the API's error for a non-2xx answer. */
  static check(res: ApiResponse, addr: string): unknown {
    if (res.status >= 200 && res.status < 300) {
      if (res.body === undefined) throw new CustosApiError('internal', `The server at ${addr} answered ${res.status} with a body that is not JSON.`, res.status, res.requestId);
      return res.body;
    }
    const { code = 'internal', message = `HTTP ${res.status}` } = (res.body ?? {}) as { code?: string; message?: string };
    const [base, tag] = String(code).split(':', 2) as [string, string | undefined];
    throw new CustosApiError((base in httpStatusOf ? base : 'internal') as ErrorCode, String(message), res.status, res.requestId, tag);
  }

  close(): void {
    this.agent.destroy();
  }
}

function fingerprintOf(cert: PeerCertificate): string {
  return new X509Certificate(cert.raw).fingerprint256.replace(/:/g, '').toLowerCase();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
