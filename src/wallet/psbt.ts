/**
 * PSBT (BIP174) analysis and signing for the vault's HD wallets, on @scure/btc-signer.
 *
 * `analyzePsbt` turns untrusted bytes into a typed summary the policy engine can judge: each
 * input's prevout, amount and script type and whether it is ours; each output's address, amount
 * and whether it is change; the fee and what leaves the wallet. "Ours" and "change" are never
 * taken on the PSBT's word: a BIP32_DERIVATION (or BIP371 TAP_BIP32_DERIVATION) entry counts only
 * when its fingerprint is one of our masters, deriving its path gives exactly its public key, and
 * that key is the one the script pays to.
 *
 * `signPsbt` signs only our inputs, SIGHASH_ALL for legacy and segwit v0 and SIGHASH_DEFAULT for
 * taproot key path (BIP341 tweak applied by btc-signer), and wipes every private key after use.
 *
 * Amounts we refuse to trust (CVE-2020-14199): a segwit v0 signature commits to its own input's
 * amount only, so a PSBT can understate one input's amount, get a signature, then understate
 * another's, and the two signatures together pay a huge hidden fee. Hardware wallets answer by
 * requiring the full previous transaction, and so do we: our legacy and segwit v0 inputs must
 * carry a non-witness UTXO whose txid is the prevout's, and a witness UTXO that disagrees with it
 * is refused. (`requireNonWitnessUtxo: false` relaxes this for segwit v0, for callers that accept
 * the risk.) Taproot needs no such proof: BIP341 signatures commit to every input's amount.
 */
import { Address, OutScript, Transaction, p2pkh, p2sh, p2tr, p2wpkh, NETWORK, TEST_NETWORK, getInputType } from '@scure/btc-signer';
import { RawOldTx, Script } from '@scure/btc-signer/script.js';
import { hash160, sha256x2, taprootTweakPubkey } from '@scure/btc-signer/utils.js';
import { HDKey } from '@scure/bip32';
import { CustosError } from '../core/errors.js';
import { base64ToBytes, bytesToBase64, bytesToHex, equalBytes, wipe } from '../core/bytes.js';
import { deriveChild, masterFingerprint, publicKeyAt, type DerivationCache, type HdMaster } from './hd.js';
import { checkPath, formatPath, toPath, type DerivationPath } from './paths.js';

export type BitcoinNetwork = 'bitcoin' | 'testnet' | 'regtest';

export type InputScriptType =
  | 'p2pkh'
  | 'p2sh-multisig'
  | 'p2sh-p2wpkh'
  | 'p2sh-p2wsh-multisig'
  | 'p2wpkh'
  | 'p2wsh-multisig'
  /** Signed by key path only (BIP86-style tweak, with the PSBT's merkle root if any). */
  | 'p2tr';

/** A key's origin as PSBT derivation fields carry it: master fingerprint and path from it. */
export interface KeyOrigin {
  fingerprint: number;
  path: number[];
}

/**
 * Decides whether a key is ours. It must verify, not trust: derive `origin.path` under the master
 * with that fingerprint and compare with `publicKey` (33-byte compressed, or 32-byte x-only for
 * taproot). `ownsKeyFromMaster` builds one from an HdMaster.
 */
export type OwnsKey = (publicKey: Uint8Array, origin: KeyOrigin) => boolean;

/** Returns the private key (32-byte scalar) at an origin; signPsbt wipes it after use. */
export type DeriveKey = (origin: KeyOrigin) => Uint8Array;

/** A wallet known by its master fingerprint and account xpubs (with their paths from the master). */
export interface WatchedWallet {
  masterFingerprint: number;
  xpubs: Array<{ xpub: string; path: string | DerivationPath }>;
}

export interface PsbtLimits {
  /** Largest PSBT accepted, in bytes (default 1 MiB). */
  maxBytes: number;
  maxInputs: number;
  maxOutputs: number;
}

export const DEFAULT_PSBT_LIMITS: PsbtLimits = { maxBytes: 1 << 20, maxInputs: 500, maxOutputs: 500 };

export interface PsbtContext {
  network: BitcoinNetwork;
  /** Our keys, by a verifying callback (preferred in the vault, which holds the master)... */
  ownsKey?: OwnsKey;
  /** ...and/or by watched xpubs (hardened levels below an xpub cannot be verified, so do not count). */
  wallets?: WatchedWallet[];
  /** Which of our paths are change. Default: the BIP44/49/84/86 internal chain (…/1/i, both unhardened). */
  isChangePath?: (path: readonly number[]) => boolean;
  /** Require the previous transaction for our segwit v0 inputs (default true; see the module comment). */
  requireNonWitnessUtxo?: boolean;
  limits?: Partial<PsbtLimits>;
}

export type AmountSource = 'non_witness_utxo' | 'witness_utxo';

export interface AnalyzedInput {
  index: number;
  prevout: { txid: string; vout: number };
  amount: bigint;
  /** Where the amount comes from; non_witness_utxo means checked against the prevout's txid. */
  amountSource: AmountSource;
  scriptType: InputScriptType;
  /** Address of the spent output, or null for a script without one. */
  address: string | null;
  ours: boolean;
  /** Our keys among the input's derivation fields, each verified by deriving. */
  ourKeys: Array<{ publicKey: Uint8Array; origin: KeyOrigin }>;
  /** Already carries a final scriptSig or witness: nothing left to sign. */
  finalized: boolean;
}

export interface AnalyzedOutput {
  index: number;
  address: string | null;
  script: Uint8Array;
  amount: bigint;
  isChange: boolean;
  /** The verified origin of the change key, when isChange. */
  changeOrigin: KeyOrigin | null;
}

export interface PsbtAnalysis {
  network: BitcoinNetwork;
  /** Txid of the unsigned transaction (display order). */
  txid: string;
  inputs: AnalyzedInput[];
  outputs: AnalyzedOutput[];
  inputTotal: bigint;
  outputTotal: bigint;
  fee: bigint;
  /** Sum of our inputs. */
  ourInputTotal: bigint;
  /** Sum of outputs verified to be our change. */
  changeTotal: bigint;
  /** Sum of all outputs that are not our change: what this transaction pays away. */
  sentExternally: bigint;
}

export interface SignedPsbt {
  psbt: Uint8Array;
  base64: string;
  /** Indices of the inputs this call signed. */
  signedInputs: number[];
  analysis: PsbtAnalysis;
}

const MAX_MONEY = 21_000_000n * 100_000_000n;
const SIGHASH_DEFAULT = 0x00;
const SIGHASH_ALL = 0x01;

const REGTEST_NETWORK = { ...TEST_NETWORK, bech32: 'bcrt' };
const NETWORKS = { bitcoin: NETWORK, testnet: TEST_NETWORK, regtest: REGTEST_NETWORK } as const;

const SCRIPT_TYPES: Record<string, InputScriptType> = {
  pkh: 'p2pkh',
  'sh-ms': 'p2sh-multisig',
  'sh-wpkh': 'p2sh-p2wpkh',
  'sh-wsh-ms': 'p2sh-p2wsh-multisig',
  wpkh: 'p2wpkh',
  'wsh-ms': 'p2wsh-multisig',
  tr: 'p2tr',
};

const invalid = (sentence: string, cause?: unknown) => new CustosError('invalid_psbt', sentence, cause === undefined ? undefined : { cause });

// ---------------------------------------------------------------------------------------------
// Decoding, with limits checked before the heavy parse

function limitsOf(ctx: { limits?: Partial<PsbtLimits> } | undefined): PsbtLimits {
  return { ...DEFAULT_PSBT_LIMITS, ...ctx?.limits };
}

/** PSBT bytes from bytes or base64 text, size-checked before decoding. */
function psbtBytes(input: Uint8Array | string, limits: PsbtLimits): Uint8Array {
  if (typeof input === 'string') {
    const text = input.trim();
    if (text.length > Math.ceil(limits.maxBytes / 3) * 4) throw invalid(`The PSBT is larger than ${limits.maxBytes} bytes.`);
    try {
      return base64ToBytes(text, 'PSBT');
    } catch (e) {
      throw invalid('The PSBT is not valid base64.', e);
    }
  }
  if (!(input instanceof Uint8Array)) throw invalid('A PSBT is given as bytes or base64 text.');
  if (input.length > limits.maxBytes) throw invalid(`The PSBT is ${input.length} bytes; at most ${limits.maxBytes} are accepted.`);
  return input;
}

/**
 * A bounds-checked cursor over the raw PSBT, used only to read the input and output counts before
 * the full parse, so that a PSBT declaring a million inputs is refused without building them.
 */
class Cursor {
  private at = 0;
  constructor(private readonly b: Uint8Array) {}
  byte(): number {
    if (this.at >= this.b.length) throw invalid('The PSBT is truncated.');
    return this.b[this.at++]!;
  }
  bytes(n: number): Uint8Array {
    if (n > this.b.length - this.at) throw invalid('The PSBT is truncated: a field is longer than what remains.');
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  compactSize(): number {
    const first = this.byte();
    if (first < 0xfd) return first;
    const width = first === 0xfd ? 2 : first === 0xfe ? 4 : 8;
    let n = 0;
    for (let i = 0; i < width; i++) n += this.byte() * 2 ** (8 * i);
    if (n > Number.MAX_SAFE_INTEGER) throw invalid('The PSBT has an impossible length field.');
    return n;
  }
}

const MAGIC = [0x70, 0x73, 0x62, 0x74, 0xff];

/** Reads the declared input and output counts from the global map (v0 unsigned tx, or v2 counts). */
function declaredCounts(b: Uint8Array): { inputs: number; outputs: number } {
  const c = new Cursor(b);
  for (const m of MAGIC) if (c.byte() !== m) throw invalid('The data is not a PSBT: it does not start with the magic bytes "psbt" 0xff.');
  let inputs = -1;
  let outputs = -1;
  for (;;) {
    const keyLen = c.compactSize();
    if (keyLen === 0) break;
    const key = c.bytes(keyLen);
    const value = c.bytes(c.compactSize());
    if (key.length !== 1) continue;
    if (key[0] === 0x00) {
      const tx = new Cursor(value);
      tx.bytes(4); // version
      // A segwit marker (0x00 0x01) here reads as zero inputs; the full parse then refuses it (BIP174).
      inputs = tx.compactSize();
      for (let i = 0; i < inputs; i++) {
        tx.bytes(36);
        tx.bytes(tx.compactSize());
        tx.bytes(4);
      }
      outputs = tx.compactSize();
    } else if (key[0] === 0x04) {
      inputs = new Cursor(value).compactSize();
    } else if (key[0] === 0x05) {
      outputs = new Cursor(value).compactSize();
    }
  }
  return { inputs, outputs };
}

/** Library error messages that have a precise meaning for an operator. */
function explainParseError(e: unknown): CustosError {
  const msg = e instanceof Error ? e.message : String(e);
  if (/wrong txid/.test(msg)) {
    return invalid("An input's non-witness UTXO is not the transaction its prevout names (its txid differs).", e);
  }
  if (/witnessUtxo different from nonWitnessUtxo/.test(msg)) {
    return invalid(
      "An input's witness UTXO disagrees with its non-witness UTXO (amount or script): the PSBT misstates what is spent (CVE-2020-14199).",
      e,
    );
  }
  if (/not in nonWitnessUtxo|incorect output index/.test(msg)) return invalid("An input's prevout index is not an output of its non-witness UTXO.", e);
  // Other parser messages are about structure; none carries secret data (a PSBT is public).
  return invalid(`The PSBT is malformed: ${msg.slice(0, 160)}.`, e);
}

/**
 * Parses a PSBT (v0 or v2) into a btc-signer Transaction after the size and count limits;
 * every failure is CustosError('invalid_psbt'). No policy: unsupported scripts parse.
 */
export function decodePsbt(input: Uint8Array | string, limitsOverride?: Partial<PsbtLimits>): Transaction {
  const limits = limitsOf({ limits: limitsOverride });
  const bytes = psbtBytes(input, limits);
  const counts = declaredCounts(bytes);
  if (counts.inputs > limits.maxInputs) throw invalid(`The PSBT has ${counts.inputs} inputs; at most ${limits.maxInputs} are accepted.`);
  if (counts.outputs > limits.maxOutputs) throw invalid(`The PSBT has ${counts.outputs} outputs; at most ${limits.maxOutputs} are accepted.`);
  let tx: Transaction;
  try {
    // Unknown and proprietary fields are kept: a signer passes through what it does not understand.
    // ECDSA nonces are plain RFC 6979 without low-R grinding (Bitcoin Core grinds; both are valid),
    // which reproduces the BIP174 signer vectors byte for byte.
    tx = Transaction.fromPSBT(bytes, { allowUnknownOutputs: true, unknown: 'ignore' });
  } catch (e) {
    throw explainParseError(e);
  }
  if (tx.inputsLength === 0) throw invalid('The PSBT has no inputs.');
  if (tx.outputsLength === 0) throw invalid('The PSBT has no outputs.');
  return tx;
}

// ---------------------------------------------------------------------------------------------
// Ownership

/**
 * An OwnsKey that derives under one HD master (secp256k1), through the cache when given. Public
 * keys already derived are remembered (bounded; they are not secret), so analysing a PSBT of known
 * paths costs no curve arithmetic.
 */
export function ownsKeyFromMaster(master: HdMaster, cache?: { id: string; cache: DerivationCache }, maxRemembered = 10_000): OwnsKey {
  const fingerprint = masterFingerprint(master);
  const known = new Map<string, Uint8Array>();
  return (publicKey, origin) => {
    if (origin.fingerprint !== fingerprint) return false;
    const key = origin.path.join('/');
    let derived = known.get(key);
    if (!derived) {
      try {
        derived = publicKeyAt(master, origin.path, cache);
      } catch {
        return false;
      }
      if (known.size >= maxRemembered) known.clear();
      known.set(key, derived);
    }
    return equalBytes(publicKey.length === 32 ? derived.subarray(1) : derived, publicKey);
  };
}

/** A DeriveKey over one HD master: the private key at an origin with our fingerprint. */
export function deriveFromMaster(master: HdMaster, cache?: { id: string; cache: DerivationCache }): DeriveKey {
  const fingerprint = masterFingerprint(master);
  return (origin) => {
    if (origin.fingerprint !== fingerprint) throw new CustosError('internal', 'Asked to derive a key of another master.');
    return deriveChild(master, origin.path, cache).privateKey;
  };
}

const XPUB_VERSIONS = [
  { private: 0x0488ade4, public: 0x0488b21e },
  { private: 0x04358394, public: 0x043587cf },
];

function parseXpub(xpub: string): HDKey {
  for (const versions of XPUB_VERSIONS) {
    try {
      const k = HDKey.fromExtendedKey(xpub, versions);
      if (k.privateKey) {
        k.wipePrivateData();
        throw new CustosError('bad_request', 'A watched wallet is given by xpub, not xprv.');
      }
      return k;
    } catch (e) {
      if (e instanceof CustosError) throw e;
    }
  }
  throw new CustosError('bad_request', 'A watched wallet xpub is not a valid xpub or tpub.');
}

/** The ownership test of a context: the callback, then the watched xpubs. */
function ownershipOf(ctx: PsbtContext): OwnsKey {
  const watched = (ctx.wallets ?? []).map((w) => ({
    fingerprint: w.masterFingerprint,
    xpubs: w.xpubs.map((x) => ({ key: parseXpub(x.xpub), path: toPath(x.path) })),
  }));
  const memo = new Map<string, boolean>();
  return (publicKey, origin) => {
    const memoKey = `${origin.fingerprint}/${origin.path.join('/')}/${bytesToHex(publicKey)}`;
    const known = memo.get(memoKey);
    if (known !== undefined) return known;
    let ours = false;
    try {
      checkPath(origin.path);
      if (ctx.ownsKey?.(publicKey, origin)) ours = true;
      for (const w of watched) {
        if (ours || w.fingerprint !== origin.fingerprint) continue;
        for (const x of w.xpubs) {
          if (x.path.length > origin.path.length || !x.path.every((v, i) => v === origin.path[i])) continue;
          const rest = origin.path.slice(x.path.length);
          if (rest.some((i) => i >= 0x8000_0000)) continue; // cannot verify a hardened level publicly
          let node = x.key;
          for (const i of rest) node = node.deriveChild(i);
          const pub = node.publicKey!;
          if (equalBytes(publicKey.length === 32 ? pub.subarray(1) : pub, publicKey)) ours = true;
        }
      }
    } catch (e) {
      if (e instanceof CustosError && e.code !== 'invalid_derivation_path') throw e;
      ours = false;
    }
    memo.set(memoKey, ours);
    return ours;
  };
}

const defaultIsChangePath = (path: readonly number[]) =>
  path.length >= 2 && path[path.length - 2] === 1 && path[path.length - 1]! < 0x8000_0000;

// ---------------------------------------------------------------------------------------------
// Analysis

type BtcInput = ReturnType<Transaction['getInput']>;
type BtcOutput = ReturnType<Transaction['getOutput']>;

function addressOf(script: Uint8Array, network: BitcoinNetwork): string | null {
  try {
    const decoded = OutScript.decode(script);
    if (decoded.type === 'unknown') return null;
    return Address(NETWORKS[network]).encode(decoded);
  } catch {
    return null;
  }
}

function derivationsOf(x: BtcInput | BtcOutput, taproot: boolean): Array<{ publicKey: Uint8Array; origin: KeyOrigin }> {
  if (taproot) {
    return (x.tapBip32Derivation ?? []).map(([publicKey, v]) => ({ publicKey, origin: { fingerprint: v.der.fingerprint >>> 0, path: [...v.der.path] } }));
  }
  return (x.bip32Derivation ?? []).map(([publicKey, v]) => ({ publicKey, origin: { fingerprint: v.fingerprint >>> 0, path: [...v.path] } }));
}

/** Whether the input's script pays to this key (so that listing our key in a foreign input fails). */
function scriptUsesKey(input: BtcInput, type: InputScriptType, publicKey: Uint8Array, lastScript: Uint8Array, prevoutScript: Uint8Array): boolean {
  switch (type) {
    case 'p2pkh':
    case 'p2wpkh':
    case 'p2sh-p2wpkh': {
      const decoded = OutScript.decode(lastScript);
      return (decoded.type === 'pkh' || decoded.type === 'wpkh') && equalBytes(decoded.hash, hash160(publicKey));
    }
    case 'p2sh-multisig':
    case 'p2wsh-multisig':
    case 'p2sh-p2wsh-multisig': {
      const decoded = OutScript.decode(lastScript);
      return decoded.type === 'ms' && decoded.pubkeys.some((k) => equalBytes(k, publicKey));
    }
    case 'p2tr': {
      if (!input.tapInternalKey || !equalBytes(input.tapInternalKey, publicKey)) return false;
      const [outputKey] = taprootTweakPubkey(publicKey, input.tapMerkleRoot ?? new Uint8Array(0));
      return equalBytes(prevoutScript, OutScript.encode({ type: 'tr', pubkey: outputKey }));
    }
  }
}

function leafScriptsUseKey(input: BtcInput, xonly: Uint8Array): boolean {
  for (const [, script] of input.tapLeafScript ?? []) {
    try {
      for (const op of Script.decode(script.subarray(0, -1))) if (op instanceof Uint8Array && equalBytes(op, xonly)) return true;
    } catch {
      return true; // an undecodable leaf: refuse rather than guess
    }
  }
  return false;
}

/** The output script a single key pays to, for each script type we accept as change. */
function paysToKey(output: BtcOutput, publicKey: Uint8Array, taproot: boolean): boolean {
  const script = output.script!;
  if (taproot) {
    if (publicKey.length !== 32 || output.tapTree || !output.tapInternalKey || !equalBytes(output.tapInternalKey, publicKey)) return false;
    return equalBytes(script, p2tr(publicKey).script);
  }
  if (publicKey.length !== 33) return false;
  return (
    equalBytes(script, p2wpkh(publicKey).script) ||
    equalBytes(script, p2sh(p2wpkh(publicKey)).script) ||
    equalBytes(script, p2pkh(publicKey).script)
  );
}

function analyzeTransaction(tx: Transaction, ctx: PsbtContext): PsbtAnalysis {
  if (!(ctx.network in NETWORKS)) throw new CustosError('bad_request', 'The network is bitcoin, testnet or regtest.');
  const owns = ownershipOf(ctx);
  const isChange = ctx.isChangePath ?? defaultIsChangePath;
  const requireFullPrevTx = ctx.requireNonWitnessUtxo ?? true;

  const inputs: AnalyzedInput[] = [];
  for (let i = 0; i < tx.inputsLength; i++) {
    const input = tx.getInput(i);
    const where = `Input ${i}`;
    if (!input.txid || input.index === undefined) throw invalid(`${where} has no prevout.`);
    let prevScript: Uint8Array;
    let amount: bigint;
    let amountSource: AmountSource;
    if (input.nonWitnessUtxo) {
      const out = input.nonWitnessUtxo.outputs[input.index];
      if (!out) throw invalid(`${where} spends output ${input.index}, which its non-witness UTXO does not have.`);
      // fromPSBT has already matched the txid; checked again so that this guarantee does not rest on
      // a library detail.
      const prevTxid = txidOf(input.nonWitnessUtxo);
      if (prevTxid !== bytesToHex(input.txid)) throw invalid(`${where}'s non-witness UTXO is not the transaction its prevout names (its txid differs).`);
      if (input.witnessUtxo && (input.witnessUtxo.amount !== out.amount || !equalBytes(input.witnessUtxo.script, out.script))) {
        throw invalid(`${where}'s witness UTXO disagrees with its non-witness UTXO: the PSBT misstates what is spent (CVE-2020-14199).`);
      }
      prevScript = out.script;
      amount = out.amount;
      amountSource = 'non_witness_utxo';
    } else if (input.witnessUtxo) {
      prevScript = input.witnessUtxo.script;
      amount = input.witnessUtxo.amount;
      amountSource = 'witness_utxo';
    } else {
      throw invalid(`${where} has neither a witness nor a non-witness UTXO: its amount is unknown, so the fee cannot be computed.`);
    }
    if (amount < 0n || amount > MAX_MONEY) throw invalid(`${where}'s amount is out of range.`);

    let kind: ReturnType<typeof getInputType>;
    try {
      kind = getInputType(input, false);
    } catch (e) {
      throw invalid(`${where} has a script Custos cannot classify (${e instanceof Error ? e.message.slice(0, 80) : 'unknown'}).`, e);
    }
    const scriptType = SCRIPT_TYPES[kind.type];
    if (!scriptType) throw invalid(`${where} is of type ${kind.type}, which Custos does not sign or analyse.`);
    const taproot = scriptType === 'p2tr';
    if (kind.txType === 'legacy' && amountSource !== 'non_witness_utxo') {
      throw invalid(`${where} is a legacy (non-segwit) spend without its previous transaction.`);
    }

    const ourKeys = derivationsOf(input, taproot).filter(
      (d) => owns(d.publicKey, d.origin) && scriptUsesKey(input, scriptType, d.publicKey, kind.lastScript, prevScript),
    );
    const ours = ourKeys.length > 0;
    const finalized = Boolean(input.finalScriptSig?.length || input.finalScriptWitness?.length);
    if (ours && !finalized) {
      const allowed = taproot ? [SIGHASH_DEFAULT, SIGHASH_ALL] : [SIGHASH_ALL];
      if (input.sighashType !== undefined && !allowed.includes(input.sighashType)) {
        throw invalid(`${where} asks for sighash type ${input.sighashType}; Custos signs only SIGHASH_ALL (and SIGHASH_DEFAULT for taproot).`);
      }
      if (!taproot && requireFullPrevTx && amountSource !== 'non_witness_utxo') {
        throw invalid(
          `${where} is ours but has no non-witness UTXO: a segwit v0 amount is trusted only with the previous transaction (CVE-2020-14199).`,
        );
      }
      if (taproot && ourKeys.some((k) => leafScriptsUseKey(input, k.publicKey))) {
        throw invalid(`${where} would have our key sign a taproot script path; Custos signs the key path only.`);
      }
    }
    inputs.push({
      index: i,
      prevout: { txid: bytesToHex(input.txid), vout: input.index },
      amount,
      amountSource,
      scriptType,
      address: addressOf(prevScript, ctx.network),
      ours,
      ourKeys,
      finalized,
    });
  }

  const outputs: AnalyzedOutput[] = [];
  for (let i = 0; i < tx.outputsLength; i++) {
    const output = tx.getOutput(i);
    if (!output.script || output.amount === undefined) throw invalid(`Output ${i} has no script or amount.`);
    if (output.amount < 0n || output.amount > MAX_MONEY) throw invalid(`Output ${i}'s amount is out of range.`);
    let changeOrigin: KeyOrigin | null = null;
    for (const taproot of [false, true]) {
      for (const d of derivationsOf(output, taproot)) {
        if (!changeOrigin && isChange(d.origin.path) && paysToKey(output, d.publicKey, taproot) && owns(d.publicKey, d.origin)) changeOrigin = d.origin;
      }
    }
    outputs.push({ index: i, address: addressOf(output.script, ctx.network), script: output.script, amount: output.amount, isChange: changeOrigin !== null, changeOrigin });
  }

  const sum = (xs: bigint[]) => xs.reduce((a, b) => a + b, 0n);
  const inputTotal = sum(inputs.map((x) => x.amount));
  const outputTotal = sum(outputs.map((x) => x.amount));
  const fee = inputTotal - outputTotal;
  if (fee < 0n) throw invalid(`The outputs (${outputTotal} sat) spend more than the inputs (${inputTotal} sat): the fee would be negative.`);
  const changeTotal = sum(outputs.filter((o) => o.isChange).map((o) => o.amount));
  return {
    network: ctx.network,
    txid: tx.id,
    inputs,
    outputs,
    inputTotal,
    outputTotal,
    fee,
    ourInputTotal: sum(inputs.filter((x) => x.ours).map((x) => x.amount)),
    changeTotal,
    sentExternally: outputTotal - changeTotal,
  };
}

/** The txid of a previous transaction: double SHA-256 of its serialisation without witnesses. */
function txidOf(prev: NonNullable<BtcInput['nonWitnessUtxo']>): string {
  const raw = RawOldTx.encode({ version: prev.version, inputs: prev.inputs, outputs: prev.outputs, lockTime: prev.lockTime });
  return bytesToHex(sha256x2(raw).reverse());
}

/** Analyses a PSBT for policy. Every refusal is CustosError('invalid_psbt') with a sentence. */
export function analyzePsbt(psbt: Uint8Array | string, ctx: PsbtContext): PsbtAnalysis {
  return analyzeTransaction(decodePsbt(psbt, ctx.limits), ctx);
}

// ---------------------------------------------------------------------------------------------
// Signing

export interface SignPsbtOptions {
  /** BIP340 auxiliary randomness for taproot signatures (tests); fresh randomness when absent. */
  auxRand?: Uint8Array;
}

/**
 * Analyses, then signs every unfinalized input that is ours with each of our keys in it. Private
 * keys come from `derive`, one per key, and are wiped right after their signature. btc-signer
 * makes internal copies (the BIP341-tweaked scalar, nonce material) that we cannot wipe.
 */
export function signPsbt(psbt: Uint8Array | string, ctx: PsbtContext, derive: DeriveKey, options: SignPsbtOptions = {}): SignedPsbt {
  const tx = decodePsbt(psbt, ctx.limits);
  const analysis = analyzeTransaction(tx, ctx);
  const signedInputs: number[] = [];
  for (const input of analysis.inputs) {
    if (!input.ours || input.finalized) continue;
    const sighash = input.scriptType === 'p2tr' ? [SIGHASH_DEFAULT, SIGHASH_ALL] : [SIGHASH_ALL];
    for (const key of input.ourKeys) {
      const privateKey = derive(key.origin);
      try {
        tx.signIdx(privateKey, input.index, sighash, options.auxRand);
      } catch (e) {
        throw new CustosError('internal', `Signing input ${input.index} failed: the key derived for ${formatPath(key.origin.path)} does not sign it.`, { cause: e });
      } finally {
        wipe(privateKey);
      }
    }
    signedInputs.push(input.index);
  }
  const out = tx.toPSBT();
  return { psbt: out, base64: bytesToBase64(out), signedInputs, analysis };
}
