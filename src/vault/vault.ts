/**
 * The vault: the one request path every front end uses, one module per capability over the
 * shared core (vault/core.ts) and the one step that makes a signature leave (vault/step.ts):
 *
 *   keys.ts       create, import, adopt, purpose, enable/disable, destroy, list
 *   signing.ts    raw and digest signatures, HD children by path, verify, wrapped export
 *   consensus.ts  votes and proposals behind the double-sign watermark, imported state
 *   wallet.ts     HD keys, xpubs, PSBTs
 *   admin.ts      API tokens, policy documents, approvals, agent hiding, the audit tail
 *   threshold.ts  this node's shares of threshold keys: nonces and signature shares
 *   lightning.ts  a Lightning node's per-object state records, reconciliation, the hsmd hook
 *   lightning-signer.ts  a Lightning node's channel signer: channel keys, signatures, secrets, rules
 *   tor.ts        Tor relay master keys and the signing certificates they issue
 *
 * This class only wires them together, so that front ends hold one object. Nothing is
 * signed or exported unless its decision, outcome and state changes are durable first (fail
 * closed), and every request that touches a key, denied ones included, leaves an audit entry.
 */
import { Accounts } from './accounts.js';
import { Sessions } from './sessions.js';
import { AccountKeys } from './account-keys.js';
import { randomUUID } from 'node:crypto';
import type { AuditDraft, KeyRecord, Principal } from '../core/types.js';
import type { AuditQuery, Store } from '../store/store.js';
import type { PolicySet } from '../policy/policy-set.js';
import { Admin } from './admin.js';
import { Authenticator, type Credentials } from '../accounts/authenticator.js';
import type { Approvals } from './approvals.js';
import { Consensus } from './consensus.js';
import { VaultCore, type Ctx, type VaultDeps } from './core.js';
import { Keys } from './keys.js';
import { Signing } from './signing.js';
import { Wallet } from './wallet.js';
import { Threshold } from './threshold.js';
import { Lightning } from './lightning.js';
import { LightningChannels } from './lightning-signer.js';
import { Tor } from './tor.js';

export { type PeerCertificate, type Credentials } from '../accounts/authenticator.js';
export { certificateNames } from '../accounts/credentials.js';
export { sourceOf } from '../accounts/authenticator.js';
export { authorize, forbidden, hasKeyScope, permits, refInScope, OPERATIONS, ROLES, type Operation } from '../accounts/principals.js';
export type { PrincipalRequest, TokenView } from './admin.js';
export { isExpired, type PolicySubject, type VaultDeps, type VaultMetrics } from './core.js';
export { checkLabel, newKeyId, publicKeyFormats, type PublicKeyFormats } from './keys.js';
export type { ConsensusSignRequest, ConsensusSignResult } from './consensus.js';

export class Vault {
  private readonly core: VaultCore;
  private readonly keys: Keys;
  private readonly signing: Signing;
  private readonly consensus: Consensus;
  private readonly wallet: Wallet;
  private readonly admin: Admin;
  private readonly principals: Authenticator;
  private readonly threshold: Threshold;
  /** End users' accounts with OPAQUE logins (null: a vault opened without its root's subkey for them). */
  readonly accounts: Accounts | null;
  /** Their sessions, each call sealed to it (vault/sessions.ts). */
  readonly sessions: Sessions | null;
  /** Keys and secrets that belong to accounts (vault/account-keys.ts). */
  readonly accountKeys: AccountKeys | null;
  /** Lightning nodes' state records, reconciliation and the hsmd hook (vault/lightning.ts). */
  readonly lightning: Lightning;
  /** Lightning channel signers: channel keys, signatures and secrets under the channel rules (vault/lightning-signer.ts). */
  readonly channels: LightningChannels;
  /** Tor: a relay's master identity key, which signs its medium-term signing certificates (vault/tor.ts). */
  readonly tor: Tor;

  constructor(deps: VaultDeps) {
    this.core = new VaultCore(deps);
    this.keys = new Keys(this.core);
    this.wallet = new Wallet(this.core, this.keys);
    this.signing = new Signing(this.core, this.wallet);
    this.consensus = new Consensus(this.core);
    this.admin = new Admin(this.core);
    this.threshold = new Threshold(this.core, this.keys);
    this.lightning = new Lightning(this.core, deps.lightning?.backup ?? null, deps.lightning?.metrics ?? null);
    this.channels = new LightningChannels(this.core, this.lightning);
    this.tor = new Tor(this.core, this.keys);
    this.accounts = deps.accounts ? new Accounts(this.core, deps.accounts.key, deps.accounts.vaultId, deps.accounts.guard) : null;
    this.accountKeys = deps.accounts ? new AccountKeys(this.core, this.keys, deps.accounts.key, deps.accounts.vaultId) : null;
    this.sessions = deps.accounts ? new Sessions(this.core, deps.accounts.key, deps.accounts.vaultId, deps.accounts.sessions, (id) => this.accounts!.epochOf(id)) : null;
    // Every refused authentication is on the record, under the principal it named if any.
    this.principals = new Authenticator(deps.store, {
      ...deps.authLimits,
      onFailure: (f) =>
        this.recordEvent({ principal: { id: f.principal ?? 'unauthenticated', kind: 'system' }, requestId: f.requestId ?? randomUUID() }, 'authenticate', null, 'denied', f.reason === 'unauthorized' ? 'unauthorized' : `unauthorized:${f.reason}`, {
          remote: f.remote.slice(0, 64),
          failures: f.failures,
        }),
    });
    this.core.recheckPrincipal = (p, op, key) => this.principals.recheck(p, op, key);
  }

  /**
   * The principal behind a bearer token or a client certificate, fresh as of this request
   * (accounts/authenticator.ts); refusals are throttled per address and audited.
   */
  authenticate(c: Credentials): Promise<Principal> {
    return this.principals.authenticate(c);
  }

  /** Seconds until a throttled address may authenticate again, or 0. */
  authRetryAfter(remote: string): number {
    return this.principals.retryAfterSeconds(remote);
  }

  get store(): Store {
    return this.core.store;
  }

  get policies(): PolicySet {
    return this.core.policies;
  }

  get approvals(): Approvals {
    return this.core.approvals;
  }

  /** Loads the policy documents in force (at open, so a broken one stops the start, not a request). */
  async loadPolicies(): Promise<void> {
    await this.core.currentPolicies();
  }

  /**
   * An audit entry for something a front end decided on its own (an ssh-agent lock, unlock or
   * refused add, a privval connection refused for its node id): every refusal leaves a
   * record with its reason code, whichever layer refused. Resolves once durable.
   */
  async recordEvent(ctx: Ctx, operation: string, key: Pick<KeyRecord, 'id' | 'label'> | null, outcome: 'ok' | 'denied' | 'failed', reason: string | null, details: AuditDraft['details'] = {}): Promise<void> {
    if (outcome === 'denied' && reason) this.core.deps.metrics?.denied(reason);
    await this.core.deps.committer.audit(this.core.draft(ctx, operation, key ? { id: key.id, label: key.label } : { id: null, label: null }, outcome, reason, details));
  }

  // ---- keys
  getKey = (ref: string) => this.core.getKey(ref);
  listKeysPage = (...a: Parameters<Keys['listKeysPage']>) => this.keys.listKeysPage(...a);
  /** A key as stored, for a principal that may read it. */
  readKey = (ctx: Ctx, ref: string) => this.core.scopedKey(ctx, 'read_key', 'read', ref);
  createKey = (...a: Parameters<Keys['createKey']>) => this.keys.createKey(...a);
  createKeys = (...a: Parameters<Keys['createKeys']>) => this.keys.createKeys(...a);
  importKey = (...a: Parameters<Keys['importKey']>) => this.keys.importKey(...a);
  importPublicKey = (...a: Parameters<Keys['importPublicKey']>) => this.keys.importPublicKey(...a);
  adoptKey = (...a: Parameters<Keys['adoptKey']>) => this.keys.adoptKey(...a);
  tokenObjects = (...a: Parameters<Keys['tokenObjects']>) => this.keys.tokenObjects(...a);
  setPurpose = (...a: Parameters<Keys['setPurpose']>) => this.keys.setPurpose(...a);
  migratePurposes = () => this.keys.migratePurposes();
  setEnabled = (...a: Parameters<Keys['setEnabled']>) => this.keys.setEnabled(...a);
  destroyKey = (...a: Parameters<Keys['destroyKey']>) => this.keys.destroyKey(...a);
  destroyExpired = (principal: Principal) => this.keys.destroyExpired(principal);

  // ---- signing
  sign = (...a: Parameters<Signing['sign']>) => this.signing.sign(...a);
  verify = (...a: Parameters<Signing['verify']>) => this.signing.verify(...a);
  exportKey = (...a: Parameters<Signing['exportKey']>) => this.signing.exportKey(...a);

  // ---- consensus
  signConsensus = (...a: Parameters<Consensus['signConsensus']>) => this.consensus.signConsensus(...a);
  importWatermark = (...a: Parameters<Consensus['importWatermark']>) => this.consensus.importWatermark(...a);
  getWatermark = (...a: Parameters<Consensus['getWatermark']>) => this.consensus.getWatermark(...a);

  // ---- threshold keys, this node as one cosigner (vault/threshold.ts)
  storeShare = (...a: Parameters<Threshold['storeShare']>) => this.threshold.storeShare(...a);
  describeThreshold = (...a: Parameters<Threshold['describe']>) => this.threshold.describe(...a);
  thresholdCommit = (...a: Parameters<Threshold['commit']>) => this.threshold.commit(...a);
  cosign = (...a: Parameters<Threshold['cosign']>) => this.threshold.cosign(...a);
  deal = (...a: Parameters<Threshold['deal']>) => this.threshold.deal(...a);
  refreshDeal = (...a: Parameters<Threshold['refreshDeal']>) => this.threshold.refreshDeal(...a);
  applyRetired = (...a: Parameters<Threshold['applyRetired']>) => this.threshold.applyRetired(...a);
  decideRefresh = (...a: Parameters<Threshold['decideRefresh']>) => this.threshold.decideRefresh(...a);

  pendingRefresh = (key: import('../core/types.js').KeyRecord) => this.threshold.pendingRefresh(key);
  retireShare = (...a: Parameters<Threshold['retireShare']>) => this.threshold.retireShare(...a);
  unretireShare = (...a: Parameters<Threshold['unretireShare']>) => this.threshold.unretireShare(...a);
  thresholdWatermarks = (key: import('../core/types.js').KeyRecord) => this.threshold.watermarksOf(key);

  // ---- wallet
  createHdKey = (...a: Parameters<Wallet['createHdKey']>) => this.wallet.createHdKey(...a);
  hdPublicKey = (...a: Parameters<Wallet['hdPublicKey']>) => this.wallet.hdPublicKey(...a);
  signPsbt = (...a: Parameters<Wallet['signPsbt']>) => this.wallet.signPsbt(...a);

  // ---- administration
  createToken = (...a: Parameters<Admin['createToken']>) => this.admin.createToken(...a);
  listTokens = (ctx?: Ctx) => this.admin.listTokens(ctx);
  updateToken = (...a: Parameters<Admin['updateToken']>) => this.admin.updateToken(...a);
  revokeToken = (...a: Parameters<Admin['revokeToken']>) => this.admin.revokeToken(...a);
  rotateToken = (...a: Parameters<Admin['rotateToken']>) => this.admin.rotateToken(...a);
  uploadPolicy = (...a: Parameters<Admin['uploadPolicy']>) => this.admin.uploadPolicy(...a);
  retirePolicy = (...a: Parameters<Admin['retirePolicy']>) => this.admin.retirePolicy(...a);
  testPolicy = (...a: Parameters<Admin['testPolicy']>) => this.admin.testPolicy(...a);
  pendingApprovals = (p: Principal) => this.admin.pendingApprovals(p);
  decideApproval = (...a: Parameters<Admin['decideApproval']>) => this.admin.decideApproval(...a);
  hiddenForAgent = (agent: string) => this.admin.hiddenForAgent(agent);
  hideForAgent = (...a: Parameters<Admin['hideForAgent']>) => this.admin.hideForAgent(...a);
  ensureAgentRow = (...a: Parameters<Admin['ensureAgentRow']>) => this.admin.ensureAgentRow(...a);
  restoreAgent = (...a: Parameters<Admin['restoreAgent']>) => this.admin.restoreAgent(...a);
  auditTail = (limit: number, principal?: Principal) => this.admin.auditTail(limit, principal);
  auditPage = (q: AuditQuery, principal?: Principal) => this.admin.auditPage(q, principal);
  auditStatus = (ctx: Ctx) => this.admin.auditStatus(ctx);

  /**
   * Refuses new work, flushes the log, then runs `beforeRelease` (the final audit anchor,
   * which a token backend may hold) before the backends close.
   */
  async close(beforeRelease?: () => Promise<void>): Promise<void> {
    const { deps } = this.core;
    this.core.approvals.close();
    this.core.hdCache.clear();
    this.lightning.clear();
    this.channels.clear();
    this.threshold.destroy();
    await deps.committer.close();
    // Requests still finishing may have prepared nodes since.
    this.core.hdCache.clear();
    if (this.core.purgePending) await deps.store.purgeFreed().catch(() => false);
    if (beforeRelease) await beforeRelease();
    await deps.backend.close();
    this.sessions?.destroy();
    this.accountKeys?.destroy();
    this.accounts?.close();
    deps.keyring.destroy();
  }
}
