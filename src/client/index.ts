/**
 * The Custos SDK, imported as `custos/client`: a typed method per API route, TLS with a pinned
 * CA and server fingerprint, mutual TLS, the API's stable error codes, and retries only where
 * a request is safe to repeat. `examples/wallet-server.ts` shows it in use.
 */
export { CustosClient, type ClientOptions, type KeyInfo, type SignParams, type ApprovalView, type AuditEntryView, type SealStatusView, type PrincipalParams, type PrincipalView, type PrivvalStatusView, type ReloadView, type ClusterStatusView, type ThresholdKeyView } from './client.js';
export { CustosApiError, type TransportOptions } from './transport.js';
export { BlockingCustosClient } from './blocking.js';
import { Transport } from './transport.js';
import { CustosSession as SessionBase, type Poster, type SessionOptions } from './session.js';
export { type SessionOptions, type AccountKeyView, type GrantView } from './session.js';
export { CustosError, type ErrorCode } from '../core/errors.js';

/** An account's session in Node: over the SDK's transport (TLS, a pinned CA or fingerprint, mutual TLS). */
export class CustosSession extends SessionBase {
  protected static override poster(opts: SessionOptions): Poster {
    const t = new Transport({ ...opts, retries: 0 });
    return { post: async (path, body) => Transport.check(await t.request('POST', path, body, undefined), opts.addr), close: () => t.close() };
  }
}
