/**
 * The TypeScript SDK for the Custos HTTP API. Errors come back as CustosError with the
 * server's stable code, so callers branch on `e.code` exactly as the server meant.
 */
import { Transport, type TransportOptions } from './transport.js';
import type { Algorithm, HashName, PrincipalView, RsaPadding, SignatureEncoding } from '../core/types.js';

export type { PrincipalView };

export interface KeyInfo {
  id: string;
  label: string;
  algorithm: Algorithm;
  state: 'active' | 'disabled' | 'destroyed';
  exportable: boolean;
  /** What the key signs, fixed at creation (legacy: made before purposes). */
  purpose?: 'general' | 'ssh' | 'consensus' | 'bitcoin' | 'lightning' | 'tor' | 'verify' | 'legacy';
  origin: 'generated' | 'imported';
  created_at: string;
  updated_at: string;
  attributes?: Record<string, string | number | boolean>;
  /** Set in listings when the stored record fails authentication. */
  corrupt?: boolean;
  public_key: { raw: string; raw_hex: string; spki_pem: string; openssh: string | null };
}

export interface SignParams {
  message?: Uint8Array;
  digest?: Uint8Array;
  encoding?: SignatureEncoding;
  hash?: HashName;
  padding?: RsaPadding;
  auxRand?: Uint8Array;
}

export interface ApprovalView {
  id: string;
  created_at: string;
  expires_at: string;
  requester: string;
  key_id: string;
  key_label: string;
  operation: string;
  summary: Record<string, string>;
  required: number;
  approved_by: string[];
  approvers: string[];
}

export interface AuditEntryView {
  seq: number;
  ts: string;
  request_id: string;
  principal: string;
  operation: string;
  key_id: string | null;
  key_label: string | null;
  outcome: string;
  reason: string | null;
  details: Record<string, unknown>;
  hash: string;
}

/** What `tokens create|update` take besides name and role. */
export interface PrincipalParams {
  operations?: Array<'read' | 'sign' | 'verify' | 'export' | 'create' | 'destroy' | 'manage' | 'policy' | 'approve' | 'audit' | 'state' | 'ecdh' | 'decrypt'>;
  keys?: string[];
  tags?: string[];
  expires_at?: string | null;
  rate_limit?: string | null;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

export interface SealStatusView {
  sealed: boolean;
  seal: 'passphrase' | 'shares' | 'hsm';
  threshold?: number;
  progress?: number;
  reason?: string;
}

export interface ClientOptions extends TransportOptions {
  /** The API token; absent when the client authenticates by its certificate (mutual TLS). */
  token?: string;
}

export interface ClusterStatusView {
  name: string;
  peers: Array<{ name: string; url: string; reachable: boolean; ms?: number; version?: string; problem?: string }>;
}

export interface ThresholdKeyView {
  label: string;
  /** The key set's public key (hex): the same on every member. */
  public_key: string;
  threshold: number;
  members: string[];
}

export class CustosClient {
  private readonly transport: Transport;

  constructor(private readonly opts: ClientOptions) {
    this.transport = new Transport(opts);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.transport.request(method, path, body, this.opts.token);
    return Transport.check(res, this.opts.addr) as T;
  }

  /** Closes the kept-alive connections (a process can exit without it). */
  close(): void {
    this.transport.close();
  }

  /** An account for an end user, and its one-time registration code (the user registers with CustosSession.register). */
  createAccount(p: { name: string; type: 'self-custodial' | 'delegated' | 'service' }): Promise<{ account: { id: string; name: string; type: string; registered: boolean }; registration_code: string }> {
    return this.call('POST', '/v1/accounts', p);
  }

  /** Ends a user name's login lock. */
  unlockAccount(name: string): Promise<{ unlocked: string }> {
    return this.call('POST', `/v1/accounts/${encodeURIComponent(name)}/unlock`);
  }

  health(): Promise<{ status: string }> {
    return this.call('GET', '/healthz');
  }

  uploadPolicy(source: string, format?: 'toml' | 'json'): Promise<{ id: string; version: number; sha256: string; warnings?: string[] }> {
    return this.call('POST', '/v1/policies', { source, ...(format ? { format } : {}) });
  }

  listPolicies(): Promise<{ policies: Array<{ id: string; version: number; sha256: string; uploaded_at: string }> }> {
    return this.call('GET', '/v1/policies');
  }

  policyHistory(id: string): Promise<{ id: string; versions: Array<{ version: number; sha256: string; uploaded_at: string; retired: boolean; source: string }> }> {
    return this.call('GET', `/v1/policies/${encodeURIComponent(id)}`);
  }

  retirePolicy(id: string): Promise<{ id: string; version: number }> {
    return this.call('DELETE', `/v1/policies/${encodeURIComponent(id)}`);
  }

  /** The body of POST /v1/policies/test: `{ key, operation?, payload_type?, message?, facts?, principal?, psbt? }`. */
  testPolicy(request: Record<string, unknown>): Promise<{ decision: { kind: string }; trace: unknown[]; explanation: string }> {
    return this.call('POST', '/v1/policies/test', request);
  }

  createHdKey(p: { label: string; curve: 'secp256k1' | 'ed25519'; mnemonic?: string; passphrase?: string; xprv?: string; allowed_paths?: string[]; tags?: string[]; purpose?: string }): Promise<KeyInfo> {
    return this.call('POST', '/v1/keys/hd', p);
  }

  // ---- Tor (a relay's master identity key, purpose tor)

  /** A new relay master identity key. */
  torCreateRelayMaster(p: { label: string; max_lifetime_hours?: number }): Promise<KeyInfo> {
    return this.call('POST', '/v1/tor/relay-masters', p);
  }

  /** A relay's existing `ed25519_master_id_secret_key` file. */
  torImportRelayMaster(p: { label: string; file: Uint8Array; max_lifetime_hours?: number }): Promise<KeyInfo> {
    return this.call('POST', '/v1/tor/relay-masters/import', { label: p.label, secret_key_file: Buffer.from(p.file).toString('base64'), ...(p.max_lifetime_hours !== undefined ? { max_lifetime_hours: p.max_lifetime_hours } : {}) });
  }

  /** A signing certificate for the relay's medium-term key, signed by the master in the vault. */
  torRelayCert(ref: string, p: { signing_public_key: Uint8Array; lifetime_hours: number }): Promise<{ cert: string; master_public_key: string; expires_at: string }> {
    return this.call('POST', `/v1/tor/${encodeURIComponent(ref)}/relay-cert`, { signing_public_key: Buffer.from(p.signing_public_key).toString('hex'), lifetime_hours: p.lifetime_hours });
  }

  /** A new onion-service identity key. */
  torCreateOnionService(p: { label: string }): Promise<KeyInfo> {
    return this.call('POST', '/v1/tor/onion-services', p);
  }

  /** An onion service's existing `hs_ed25519_secret_key` file. */
  torImportOnionService(p: { label: string; file: Uint8Array }): Promise<KeyInfo> {
    return this.call('POST', '/v1/tor/onion-services/import', { label: p.label, secret_key_file: Buffer.from(p.file).toString('base64') });
  }

  /** An onion service's address, and a period's blinded key and subcredential (the current period by default). */
  torOnion(ref: string, period?: { num?: number; length?: number }): Promise<{ address: string; period_num: number; period_length: number; blinded_public_key: string; subcredential: string }> {
    const q = [period?.num !== undefined ? `period=${period.num}` : '', period?.length !== undefined ? `length=${period.length}` : ''].filter(Boolean).join('&');
    return this.call('GET', `/v1/tor/${encodeURIComponent(ref)}/onion${q ? `?${q}` : ''}`);
  }

  /** A signature by the blinded key of a time period. */
  torBlindSign(ref: string, p: { period_num: number; period_length?: number; message: Uint8Array }): Promise<{ signature: string; blinded_public_key: string }> {
    return this.call('POST', `/v1/tor/${encodeURIComponent(ref)}/blind-sign`, { period_num: p.period_num, ...(p.period_length ? { period_length: p.period_length } : {}), message: Buffer.from(p.message).toString('base64') });
  }

  // ---- Lightning (a node key made with purpose lightning)

  lightningInfo(ref: string): Promise<{ key: string; node: string; record_public_key: string; backup_public_key: string; objects: number; backup: string | null }> {
    return this.call('GET', `/v1/lightning/${encodeURIComponent(ref)}`);
  }

  /** Stores `version` (a decimal string or bigint) of an object; answers its record and the record's hash. */
  lightningPut(ref: string, object: string, version: bigint | string, state: Uint8Array): Promise<{ object: string; version: string; hash: string; record: string; unchanged?: boolean }> {
    return this.call('PUT', `/v1/lightning/${encodeURIComponent(ref)}/objects/${encodeURIComponent(object)}`, { version: version.toString(), state: Buffer.from(state).toString('base64') });
  }

  lightningGet(ref: string, object: string): Promise<{ object: string; version: string; hash: string; record: string; state: string }> {
    return this.call('GET', `/v1/lightning/${encodeURIComponent(ref)}/objects/${encodeURIComponent(object)}`);
  }

  lightningList(ref: string, after?: string, limit = 100): Promise<{ objects: Array<{ object: string; version: string; hash: string }>; next: string | null }> {
    return this.call('GET', `/v1/lightning/${encodeURIComponent(ref)}/objects?limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ''}`);
  }

  lightningReconcile(ref: string, p: { object: string; version: string; hash: string; records?: string[] }): Promise<{ status: 'in_sync' | 'node_behind' | 'vault_behind'; version: string | null; hash: string | null; record?: string; state?: string; applied?: number }> {
    return this.call('POST', `/v1/lightning/${encodeURIComponent(ref)}/reconcile`, p);
  }

  lightningRestore(ref: string, records: Uint8Array[]): Promise<{ applied: number; kept: number; refused: Array<{ object: string; version: string; code: string; reason: string }> }> {
    return this.call('POST', `/v1/lightning/${encodeURIComponent(ref)}/restore`, { records: records.map((r) => Buffer.from(r).toString('base64')) });
  }

  lightningHookKey(ref: string, path?: string): Promise<{ path: string; public_key: string }> {
    return this.call('GET', `/v1/lightning/${encodeURIComponent(ref)}/hook-key${path ? `?path=${encodeURIComponent(path)}` : ''}`);
  }

  lightningEcdh(ref: string, point: string, path?: string): Promise<{ shared: string }> {
    return this.call('POST', `/v1/lightning/${encodeURIComponent(ref)}/ecdh`, { point, ...(path ? { path } : {}) });
  }

  lightningDecrypt(ref: string, envelope: Uint8Array, path?: string): Promise<{ plaintext: string }> {
    return this.call('POST', `/v1/lightning/${encodeURIComponent(ref)}/decrypt`, { envelope: Buffer.from(envelope).toString('base64'), ...(path ? { path } : {}) });
  }

  hdPublic(ref: string, path: string, network: 'mainnet' | 'testnet' = 'mainnet'): Promise<{ path: string; public_key: string; public_key_hex: string; xpub: string | null }> {
    return this.call('GET', `/v1/keys/${encodeURIComponent(ref)}/hd/public?path=${encodeURIComponent(path)}&network=${network}`);
  }

  signPsbt(ref: string, psbt: Uint8Array, network: 'bitcoin' | 'testnet' | 'regtest'): Promise<{ psbt: string; signed_inputs: number[]; txid: string; fee_sats: string; sent_externally_sats: string; change_sats: string; outputs: Array<{ address: string | null; amount_sats: string; is_change: boolean }> }> {
    return this.call('POST', `/v1/keys/${encodeURIComponent(ref)}/sign-psbt`, { psbt: Buffer.from(psbt).toString('base64'), network });
  }

  /** Makes a principal: a token (returned once, in `token`) or, with `certificate_sha256`, a client certificate. */
  createToken(p: PrincipalParams & { name: string; role: PrincipalView['role']; certificate_sha256?: string; certificate_name?: string }): Promise<PrincipalView & { token?: string }> {
    return this.call('POST', '/v1/tokens', p);
  }

  listTokens(): Promise<{ tokens: PrincipalView[] }> {
    return this.call('GET', '/v1/tokens');
  }

  /** Changes scope, expiry or rate limit (null clears the last two); holds from the next request. */
  updateToken(name: string, p: PrincipalParams): Promise<PrincipalView> {
    return this.call('PATCH', `/v1/tokens/${encodeURIComponent(name)}`, p);
  }

  revokeToken(name: string): Promise<PrincipalView> {
    return this.call('POST', `/v1/tokens/${encodeURIComponent(name)}/revoke`);
  }

  /** A new token (in `token`, once), or the new certificate for a certificate principal. */
  rotateToken(name: string, certificateSha256?: string): Promise<PrincipalView & { token?: string }> {
    return this.call('POST', `/v1/tokens/${encodeURIComponent(name)}/rotate`, certificateSha256 ? { certificate_sha256: certificateSha256 } : {});
  }

  /** Needs no token. */
  sealStatus(): Promise<SealStatusView> {
    return this.call('GET', '/v1/sys/seal-status');
  }

  /** Gives one operator share (no token: the share is the credential). */
  async unseal(body: { share: string; reset?: true }): Promise<SealStatusView> {
    this.transport.assertConfidential('an operator share');
    return this.call('POST', '/v1/sys/unseal', body);
  }

  /** Every key, in label order, gathered page by page (for a large vault, iterate `keys()` instead). */
  async listKeys(): Promise<KeyInfo[]> {
    const all: KeyInfo[] = [];
    for await (const k of this.keys()) all.push(k);
    return all;
  }

  /** One page of keys in label order; pass `next` back as `after` until it is null. */
  listKeysPage(p: { limit?: number; after?: string } = {}): Promise<{ keys: KeyInfo[]; next: string | null }> {
    const q = new URLSearchParams({ limit: String(p.limit ?? 1000), ...(p.after !== undefined ? { after: p.after } : {}) });
    return this.call('GET', `/v1/keys?${q}`);
  }

  /** Every key, page by page, without holding them all. */
  async *keys(pageSize = 1000): AsyncGenerator<KeyInfo> {
    let after: string | undefined;
    for (;;) {
      const page = await this.listKeysPage({ limit: pageSize, ...(after !== undefined ? { after } : {}) });
      yield* page.keys;
      // An older server sends no `next`: one page is all it gives.
      if (page.next == null) return;
      after = page.next;
    }
  }

  getKey(ref: string): Promise<KeyInfo> {
    return this.call('GET', `/v1/keys/${encodeURIComponent(ref)}`);
  }

  createKey(p: { label: string; algorithm: Algorithm; exportable?: boolean; backend?: string; wrapped?: boolean; tags?: string[]; purpose?: string }): Promise<KeyInfo> {
    return this.call('POST', '/v1/keys', p);
  }

  /** Takes a key already on a PKCS#11 token under the vault (by its CKA_LABEL or CKA_ID in hex). */
  adoptKey(p: { label: string; backend: string; object_label?: string; object_id?: string; purpose?: string }): Promise<KeyInfo> {
    return this.call('POST', '/v1/keys/adopt', p);
  }

  tokenObjects(backend: string): Promise<{ objects: Array<{ id: string; label: string; algorithm: string | null; extractable: boolean; sensitive: boolean; vault_key: string | null }> }> {
    return this.call('GET', `/v1/backends/${encodeURIComponent(backend)}/objects`);
  }

  /** Generates up to 1,000 keys labelled `<label_prefix>-<n>`, n from `start`. */
  createKeys(p: { label_prefix: string; start: number; count: number; algorithm: Algorithm; backend?: string; wrapped?: boolean; purpose?: string }): Promise<{ created: number; first: string; last: string }> {
    return this.call('POST', '/v1/keys/batch', p);
  }

  /** `material`: base64 for raw, the text itself for hex, pkcs8 (PEM) and openssh. */
  importKey(p: { label: string; algorithm?: Algorithm; format: 'raw' | 'hex' | 'pkcs8' | 'openssh' | 'cometbft'; material: string; exportable?: boolean; purpose?: string }): Promise<KeyInfo> {
    return this.call('POST', '/v1/keys/import', p);
  }

  /**
   * Imports a bare public key as a key that verifies and never signs. `material`: the PEM text
   * for spki-pem, base64 for spki-der and raw (raw needs `algorithm`).
   */
  importPublicKey(p: { label: string; format: 'spki-pem' | 'spki-der' | 'raw'; material: string; algorithm?: Algorithm; tags?: string[] }): Promise<KeyInfo> {
    return this.call('POST', '/v1/keys/public', p);
  }

  /** Gives a legacy key (made before purposes) its one purpose, once. */
  setPurpose(ref: string, purpose: string): Promise<KeyInfo> {
    return this.call('POST', `/v1/keys/${encodeURIComponent(ref)}/purpose`, { purpose });
  }

  disableKey(ref: string): Promise<KeyInfo> {
    return this.call('POST', `/v1/keys/${encodeURIComponent(ref)}/disable`);
  }

  enableKey(ref: string): Promise<KeyInfo> {
    return this.call('POST', `/v1/keys/${encodeURIComponent(ref)}/enable`);
  }

  destroyKey(ref: string): Promise<KeyInfo> {
    return this.call('DELETE', `/v1/keys/${encodeURIComponent(ref)}`);
  }

  private signBody(p: SignParams & { signature?: Uint8Array }) {
    return {
      ...(p.message ? { message: b64(p.message) } : {}),
      ...(p.digest ? { digest: b64(p.digest) } : {}),
      ...(p.encoding ? { encoding: p.encoding } : {}),
      ...(p.hash ? { hash: p.hash } : {}),
      ...(p.padding ? { padding: p.padding } : {}),
      ...(p.auxRand ? { aux_rand: b64(p.auxRand) } : {}),
      ...(p.signature ? { signature: b64(p.signature) } : {}),
    };
  }

  async sign(ref: string, p: SignParams): Promise<{ keyId: string; algorithm: Algorithm; signature: Uint8Array; encoding: string; requestId: string }> {
    const r = await this.call<{ key_id: string; algorithm: Algorithm; signature: string; encoding: string; request_id: string }>('POST', `/v1/keys/${encodeURIComponent(ref)}/sign`, this.signBody(p));
    return { keyId: r.key_id, algorithm: r.algorithm, signature: new Uint8Array(Buffer.from(r.signature, 'base64')), encoding: r.encoding, requestId: r.request_id };
  }

  async verify(ref: string, p: SignParams & { signature: Uint8Array }): Promise<boolean> {
    return (await this.call<{ valid: boolean }>('POST', `/v1/keys/${encodeURIComponent(ref)}/verify`, this.signBody(p))).valid;
  }

  async exportKey(ref: string, recipient: { kem: 'x25519' | 'secp256k1'; publicKey: Uint8Array }): Promise<Uint8Array> {
    const r = await this.call<{ envelope: string }>('POST', `/v1/keys/${encodeURIComponent(ref)}/export`, { kem: recipient.kem, recipient_public_key: b64(recipient.publicKey) });
    return new Uint8Array(Buffer.from(r.envelope, 'base64'));
  }

  async approvals(): Promise<ApprovalView[]> {
    return (await this.call<{ approvals: ApprovalView[] }>('GET', '/v1/approvals')).approvals;
  }

  decide(id: string, approve: boolean): Promise<ApprovalView & { settled: 'approved' | 'denied' | 'pending' }> {
    return this.call('POST', `/v1/approvals/${encodeURIComponent(id)}/${approve ? 'approve' : 'deny'}`);
  }

  async privvalStatus(): Promise<PrivvalStatusView[]> {
    return (await this.call<{ validators: [] }>('GET', '/v1/privval')).validators;
  }

  /** This node as a cosigner: its name, its peers and whether each answers (admin). */
  clusterStatus(): Promise<ClusterStatusView> {
    return this.call('GET', '/v1/cluster');
  }

  /** This node's operator agrees to a key set a peer will propose (keygen, a dealt share, or a refresh that changes the members) (admin). */
  clusterExpect(req: { label: string; kind: 'keygen' | 'split' | 'reshare'; purpose?: string; threshold: number; members: string[]; coordinator: string; algorithm?: string; minutes?: number }): Promise<Record<string, unknown>> {
    return this.call('POST', '/v1/cluster/expect', req);
  }

  /** Distributed key generation across the cluster's members: none of them ever holds the key (admin). */
  clusterKeygen(req: { label: string; algorithm: 'ed25519' | 'secp256k1-bip340'; threshold: number; members?: string[]; purpose?: string }): Promise<ThresholdKeyView> {
    return this.call('POST', '/v1/cluster/keys', req);
  }

  /** New shares for the same public key (old ones useless); with `replace`, a lost member replaced by a new one (admin). */
  clusterRefresh(label: string, replace?: { old: string; new: string }): Promise<ThresholdKeyView> {
    return this.call('POST', `/v1/cluster/keys/${encodeURIComponent(label)}/refresh`, replace ? { replace: `${replace.old}=${replace.new}` } : {});
  }

  /** Finishes a refresh in progress everywhere: decided commit on every holder, then applied (any member may run it). */
  clusterRefreshResume(label: string): Promise<Record<string, unknown>> {
    return this.call('POST', `/v1/cluster/keys/${encodeURIComponent(label)}/refresh`, { resume: true });
  }

  /** Aborts a refresh in progress everywhere: retired shares come back once every holder has the abort decision (admin). */
  clusterRefreshAbort(label: string): Promise<Record<string, unknown>> {
    return this.call('POST', `/v1/cluster/keys/${encodeURIComponent(label)}/refresh`, { abort: true });
  }

  /** A dealer's one-time split of an existing key into one share per member (admin); the key itself is not stored. */
  clusterSplit(req: { label: string; format: 'raw' | 'hex' | 'pkcs8' | 'openssh' | 'cometbft'; material: Uint8Array; algorithm?: string; threshold: number; members?: string[]; purpose?: string }): Promise<ThresholdKeyView> {
    const { material, ...rest } = req;
    return this.call('POST', '/v1/cluster/keys/split', { ...rest, material: Buffer.from(material).toString('base64') });
  }

  /** Re-read the server's custos.toml, as SIGHUP does. */
  reload(): Promise<ReloadView> {
    return this.call('POST', '/v1/reload');
  }

  importWatermark(key: string, chain: string, state: { height: string; round: number; step: number; sign_bytes?: string; signature?: string }): Promise<{ height: string; round: number; step: number }> {
    return this.call('PUT', `/v1/keys/${encodeURIComponent(key)}/watermarks/${encodeURIComponent(chain)}`, state);
  }

  getWatermark(key: string, chain: string): Promise<{ height: string; round: number; step: number; sign_bytes: string; signature: string | null }> {
    return this.call('GET', `/v1/keys/${encodeURIComponent(key)}/watermarks/${encodeURIComponent(chain)}`);
  }

  restoreAgent(name: string): Promise<{ agent: string; restored: number }> {
    return this.call('POST', `/v1/ssh-agents/${encodeURIComponent(name)}/restore`);
  }

  async auditTail(limit = 50): Promise<AuditEntryView[]> {
    return (await this.call<{ entries: AuditEntryView[] }>('GET', `/v1/audit?limit=${limit}`)).entries;
  }
}

type Position = { height: string; round: number; step: number };
export interface PrivvalStatusView {
  name: string;
  chain_id: string;
  address: string;
  dialect: string;
  key: string;
  state: string;
  connected_since: string | null;
  last_signed: Position | null;
  watermark: Position | null;
  signatures: number;
  refusals: number;
  hint: string | null;
}
export interface ReloadChanges {
  started: string[];
  restarted: string[];
  stopped: string[];
  unchanged: string[];
}
export interface ReloadView {
  applied: boolean;
  privval: ReloadChanges | null;
  ssh_agent: ReloadChanges | null;
  restart_needed: string[];
}
