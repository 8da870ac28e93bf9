/**
 * Wallets: HD master keys (BIP32, SLIP-10; generated, from a mnemonic or an xprv), their
 * children by path (derived on demand, never stored), xpubs, and PSBT signing with the
 * transaction's facts (amounts, destinations, fee, change) before policy.
 */
import { randomBytes } from 'node:crypto';
import { CustosError, isCustosError } from '../core/errors.js';
import { assertPurpose } from '../core/purpose.js';
import { equalBytes, wipe } from '../core/bytes.js';
import type { Algorithm, AuditDraft, KeyRecord, SignOptions, SignPayload } from '../core/types.js';
import { prepareSigner } from '../crypto/algorithms.js';
import { decodeMaster, deriveChild, encodeMaster, exportXpub, importXprv, masterFingerprint, masterFromSeed, seedFromMnemonic, wipeMaster, type HdCurve, type HdMaster } from '../wallet/hd.js';
import { isUnder, parsePath } from '../wallet/paths.js';
import { deriveFromMaster, ownsKeyFromMaster, signPsbt as signPsbtWith, analyzePsbt, type BitcoinNetwork, type DeriveKey, type PsbtAnalysis, type PsbtContext } from '../wallet/psbt.js';
import { isKeyStateError, sha256hex, type Ctx, type PolicySubject, type VaultCore } from './core.js';
import { checkLabel, choosePurpose, type Keys } from './keys.js';
import { decideSignCommit } from './step.js';

export class Wallet {
  constructor(
    private readonly core: VaultCore,
    private readonly keys: Keys,
  ) {}

  /**
   * Creates an HD master key: BIP32 (secp256k1) or SLIP-10 (ed25519), generated, or from a
   * BIP39 mnemonic (+ passphrase) or an xprv. One record stands for every child key: children
   * are derived on demand and never stored. `allowedPaths` (path prefixes) limits the subtrees
   * any request may sign with. The mnemonic and xprv arrive as strings (JSON); they cannot be
   * wiped, only dropped.
   */
  async createHdKey(ctx: Ctx, req: { label: string; curve: HdCurve; mnemonic?: string; passphrase?: string; xprv?: string; allowedPaths?: string[]; tags?: string[]; purpose?: string }): Promise<KeyRecord> {
    checkLabel(req.label);
    // A BIP32 tree is a Bitcoin wallet's; a SLIP-10 ed25519 tree signs raw payloads by path.
    const purpose = req.purpose ?? (req.curve === 'secp256k1' ? 'bitcoin' : 'general');
    if (purpose !== 'bitcoin' && purpose !== 'general' && !(purpose === 'lightning' && req.curve === 'secp256k1')) throw new CustosError('bad_request', 'An HD key is a bitcoin, a general or (BIP32 secp256k1) a lightning key.');
    choosePurpose(req.curve === 'secp256k1' ? 'secp256k1' : 'ed25519', purpose, 'general');
    const allowed = (req.allowedPaths ?? []).map((p) => parsePath(p));
    let master: HdMaster;
    let origin: 'create' | 'import' = 'import';
    if (req.xprv !== undefined) {
      if (req.curve !== 'secp256k1') throw new CustosError('bad_request', 'An xprv is a BIP32 secp256k1 key; use curve secp256k1.');
      master = importXprv(req.xprv).master;
    } else {
      const seed = req.mnemonic !== undefined ? seedFromMnemonic(req.mnemonic, req.passphrase ?? '') : new Uint8Array(randomBytes(32));
      if (req.mnemonic === undefined) origin = 'create';
      try {
        master = masterFromSeed(seed, req.curve);
      } finally {
        wipe(seed);
      }
    }
    const stored = encodeMaster(master);
    try {
      const publicKey = deriveChild(master, 'm').publicKey;
      return await this.keys.storeNewKey(ctx, origin, req.label, req.curve === 'secp256k1' ? 'secp256k1' : 'ed25519', { publicKey, sealed: stored }, false, {
        hd: req.curve === 'secp256k1' ? 'bip32' : 'slip10',
        purpose,
        'hd.fingerprint': masterFingerprint(master).toString(16).padStart(8, '0'),
        ...(allowed.length ? { 'hd.allowed_paths': (req.allowedPaths ?? []).join(',') } : {}),
        ...(req.tags?.length ? { tags: req.tags.join(',') } : {}),
      });
    } finally {
      wipe(stored);
      wipeMaster(master);
    }
  }

  openMaster(key: KeyRecord): HdMaster {
    if (key.attributes.hd === undefined) throw new CustosError('bad_request', `${key.label} is not an HD master key.`);
    const secret = this.core.deps.keyring.openSecret(key);
    try {
      return decodeMaster(secret);
    } finally {
      wipe(secret);
    }
  }

  /** Refuses a path outside the key's allowed subtrees. */
  checkPathAllowed(key: KeyRecord, path: readonly number[]): void {
    const allowed = key.attributes['hd.allowed_paths'];
    if (typeof allowed !== 'string' || allowed === '') return;
    if (!allowed.split(',').some((p) => isUnder(path, parsePath(p)))) {
      throw new CustosError('policy_denied', `The path is outside the subtrees key ${key.label} may sign with (${allowed}).`, { tag: 'path' });
    }
  }

  /** Signs with the child of an HD master at `path` (derived now, wiped after). */
  async signDerived(key: KeyRecord, path: string, payload: SignPayload, options: SignOptions): Promise<{ signature: Uint8Array; encoding: string; algorithm: Algorithm }> {
    const master = this.openMaster(key);
    let child: { privateKey: Uint8Array } | undefined;
    try {
      child = deriveChild(master, path, { id: key.id, cache: this.core.hdCache });
      const signer = prepareSigner(key.algorithm, child.privateKey);
      try {
        return { ...signer.sign(payload, options), algorithm: key.algorithm };
      } finally {
        signer.destroy();
      }
    } finally {
      wipe(child?.privateKey);
      wipeMaster(master);
    }
  }

  /** The public key (and, for BIP32, the xpub) of an HD key's child at `path`. */
  async hdPublicKey(ctx: Ctx, ref: string, path: string, network: 'mainnet' | 'testnet' = 'mainnet'): Promise<{ key: KeyRecord; publicKey: Uint8Array; xpub: string | null }> {
    const key = await this.core.usableKey(ctx, 'xpub', ref);
    const details = { path: path.slice(0, 256), network };
    let p: number[];
    try {
      if (key.attributes.hd === undefined) throw new CustosError('bad_request', `${key.label} is not an HD master key.`);
      assertPurpose(key, 'derived');
      p = parsePath(path);
      this.checkPathAllowed(key, p);
    } catch (e) {
      if (isCustosError(e)) return this.core.refuse(ctx, 'xpub', key, e, details);
      throw e;
    }
    const master = this.openMaster(key);
    try {
      const d = deriveChild(master, p, { id: key.id, cache: this.core.hdCache });
      wipe(d.privateKey);
      const xpub = master.curve === 'secp256k1' ? exportXpub(master, p, network) : null;
      // Handing out an xpub reveals a whole subtree's addresses: audited like any key use.
      // The key must still be what it was (active, same version) when the answer is recorded.
      try {
        await this.core.commitAs(ctx, { mutations: [{ kind: 'assertKeyActive', id: key.id, version: key.version }], audit: [this.core.draft(ctx, 'xpub', key, 'ok', null, { ...details, public_key_sha256: sha256hex(d.publicKey) })] });
      } catch (e) {
        if (isKeyStateError(e)) {
          this.core.forgetKey(key.id);
          return await this.core.refuse(ctx, 'xpub', key, e, details);
        }
        if (isCustosError(e) && e.tag === 'key_moved') return await this.core.refuse(ctx, 'xpub', key, e, details);
        throw e;
      }
      return { key, publicKey: d.publicKey, xpub };
    } finally {
      wipeMaster(master);
    }
  }

  /**
   * Signs a PSBT with an HD (BIP32) key: decodes it, checks each input it signs is ours (its
   * BIP32 derivation fields, verified by deriving), computes the fee and recognises change,
   * runs policy on those facts (amounts, destinations, velocity, approvals), makes the
   * decision durable, then signs only our inputs.
   */
  async signPsbt(ctx: Ctx, req: { key: string; psbt: Uint8Array; network: BitcoinNetwork }): Promise<{ key: KeyRecord; psbt: Uint8Array; signedInputs: number[]; analysis: PsbtAnalysis }> {
    const key = await this.core.usableKey(ctx, 'sign_psbt', req.key);
    const details: AuditDraft['details'] = { psbt_sha256: sha256hex(req.psbt), network: req.network };
    const hd = key.attributes.hd === 'bip32';
    const standalone = key.attributes.hd === undefined && key.algorithm === 'secp256k1' && key.attributes.backend === undefined;
    if (!hd && !standalone) return this.core.refuse(ctx, 'sign_psbt', key, new CustosError('bad_request', `${key.label} cannot sign PSBTs: use a BIP32 HD key or a stand-alone secp256k1 software key.`), details);
    try {
      assertPurpose(key, 'psbt');
    } catch (e) {
      return this.core.refuse(ctx, 'sign_psbt', key, e as CustosError, details);
    }
    // An HD key owns what derives from it; a stand-alone key owns inputs whose derivation
    // fields name its public key (33-byte, or x-only for taproot), whatever the origin. The
    // key is opened for the analysis and again for the signature, never across the decision
    // (which may wait a minute for approvers).
    const withOpened = <R>(f: (pctx: PsbtContext, derive: DeriveKey) => R): R => {
      const master = hd ? this.openMaster(key) : null;
      const secret = hd ? null : this.core.deps.keyring.openSecret(key);
      try {
        const cache = { id: key.id, cache: this.core.hdCache };
        const pub = key.publicKey;
        const pctx: PsbtContext = {
          network: req.network,
          ownsKey: master ? ownsKeyFromMaster(master, cache) : (p: Uint8Array) => equalBytes(p.length === 32 ? pub.subarray(1) : pub, p),
        };
        return f(pctx, master ? deriveFromMaster(master, cache) : () => Uint8Array.from(secret!));
      } finally {
        if (master) wipeMaster(master);
        wipe(secret ?? undefined);
      }
    };
    let analysis: PsbtAnalysis;
    try {
      analysis = withOpened((pctx) => analyzePsbt(req.psbt, pctx));
      if (hd) for (const i of analysis.inputs) for (const o of i.ourKeys ?? []) this.checkPathAllowed(key, o.origin.path);
    } catch (e) {
      return this.core.refuse(ctx, 'sign_psbt', key, isCustosError(e) ? e : new CustosError('invalid_psbt', 'The PSBT could not be analysed.', { cause: e }), details);
    }
    const ours = analysis.inputs.filter((i) => i.ours).length;
    Object.assign(details, { txid: analysis.txid, fee_sats: analysis.fee.toString(), sent_externally_sats: analysis.sentExternally.toString(), inputs: analysis.inputs.length, our_inputs: ours });
    if (ours === 0) return this.core.refuse(ctx, 'sign_psbt', key, new CustosError('invalid_psbt', 'No input of this PSBT belongs to this key (by its BIP32 derivation fields); nothing to sign.'), details);
    const subject: PolicySubject = {
      payloadType: 'psbt',
      facts: { protocol: 'psbt', network: req.network, txid: analysis.txid },
      psbt: { outputs: analysis.outputs.map((o) => ({ address: o.address, amount: o.amount, isChange: o.isChange })), fee: analysis.fee, sentExternally: analysis.sentExternally, inputCount: analysis.inputs.length },
      ...(hd ? { paths: analysis.inputs.flatMap((i) => (i.ourKeys ?? []).map((k) => [...k.origin.path])) } : {}),
    };
    const signed = await decideSignCommit(this.core, {
      ctx,
      key,
      operation: 'sign',
      outcomeOperation: 'sign_psbt',
      subject,
      details,
      produce: async () => withOpened((pctx, derive) => signPsbtWith(req.psbt, pctx, derive)),
      outcome: (s) => ({ signed_inputs: s.signedInputs.join(','), psbt_out_sha256: sha256hex(s.psbt) }),
    });
    return { key, psbt: signed.psbt, signedInputs: signed.signedInputs, analysis: signed.analysis };
  }
}
