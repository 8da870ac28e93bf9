/**
 * Hierarchical deterministic master keys: BIP32 for secp256k1 and SLIP-10 for Ed25519, from a
 * seed, a BIP39 mnemonic or an imported xprv; the compact stored form the vault envelope-encrypts;
 * child derivation with a bounded cache of intermediate nodes; xpub export.
 *
 * Where each piece comes from:
 * - secp256k1 BIP32 is @scure/bip32's HDKey (audited). We never re-implement it.
 * - Ed25519 SLIP-10 (https://github.com/satoshilabs/slips/blob/master/slip-0010.md) is not in
 *   @scure/bip32. It is a derivation scheme over HMAC-SHA512, composed here from @noble/hashes'
 *   HMAC; hardened children only, as SLIP-10 defines for Ed25519. Checked against the SLIP-0010
 *   published vectors (test/wallet/hd.test.ts).
 * - BIP39 is @scure/bip39 with its English wordlist.
 *
 * Secrets: private keys, chain codes and seeds live in Uint8Array and are wiped when done. Three
 * inputs necessarily arrive as JavaScript strings, which cannot be wiped and may be copied by the
 * engine: a mnemonic, its passphrase, and an imported xprv. Callers should keep them short-lived
 * and never log them. Inside HDKey and @noble, derivation makes temporary copies (HMAC inputs,
 * bigint scalars) that we cannot reach; wiping is best effort beyond our own buffers.
 */
import { HDKey } from '@scure/bip32';
import { generateMnemonic as bip39Generate, mnemonicToSeedSync, validateMnemonic } from '@scure/bip39';
import { wordlist as english } from '@scure/bip39/wordlists/english.js';
import { createBase58check } from '@scure/base';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { ripemd160 } from '@noble/hashes/legacy.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { CustosError } from '../core/errors.js';
import { equalBytes, wipe } from '../core/bytes.js';
import { publicKeyFromSecret } from '../crypto/algorithms.js';
import { isHardened, toPath, type DerivationPath } from './paths.js';

export type HdCurve = 'secp256k1' | 'ed25519';
export type XkeyNetwork = 'mainnet' | 'testnet';

/**
 * The root of a key tree: private key and chain code. For secp256k1 the key is a scalar in
 * [1, n); for Ed25519 it is a 32-byte RFC 8032 seed. Owned by whoever holds it: wipe with
 * `wipeMaster` when done.
 */
export interface HdMaster {
  readonly curve: HdCurve;
  readonly chainCode: Uint8Array;
  readonly privateKey: Uint8Array;
}

/** A derived key pair. The private key is the caller's copy: wipe it after use. */
export interface DerivedKey {
  /** secp256k1: 32-byte scalar; Ed25519: 32-byte seed (see crypto/algorithms.ts). */
  privateKey: Uint8Array;
  /** secp256k1: 33-byte compressed point; Ed25519: 32-byte point. */
  publicKey: Uint8Array;
}

// BIP32 version bytes: xprv/xpub (mainnet) and tprv/tpub (testnet, signet, regtest).
const VERSIONS: Record<XkeyNetwork, { private: number; public: number }> = {
  mainnet: { private: 0x0488ade4, public: 0x0488b21e },
  testnet: { private: 0x04358394, public: 0x043587cf },
};

const CURVE_BYTE: Record<HdCurve, number> = { secp256k1: 0x01, ed25519: 0x02 };
const STORED_VERSION = 0x01;
/** version ‖ curve ‖ chain code (32) ‖ private key (32). */
export const STORED_MASTER_LENGTH = 66;

const SLIP10_ED25519_KEY = new TextEncoder().encode('ed25519 seed');

const badKey = (sentence: string) => new CustosError('invalid_key_material', sentence);

// ---------------------------------------------------------------------------------------------
// Creating a master key

/**
 * The master key of a seed (BIP32 §"Master key generation" / SLIP-10). The seed is not kept;
 * the caller still owns and wipes it.
 */
export function masterFromSeed(seed: Uint8Array, curve: HdCurve): HdMaster {
  // BIP32 allows 128 to 512 bits; SLIP-10 takes the same seeds.
  if (!(seed instanceof Uint8Array) || seed.length < 16 || seed.length > 64) {
    throw badKey('An HD seed is 16 to 64 bytes.');
  }
  if (curve === 'secp256k1') {
    let hd: HDKey;
    try {
      hd = HDKey.fromMasterSeed(seed);
    } catch {
      // Probability about 2^-127 (I_L zero or not below n): BIP32 says to use another seed.
      throw badKey('This seed gives an invalid BIP32 master key; use another seed.');
    }
    return fromHdKey(hd);
  }
  if (curve === 'ed25519') {
    const I = hmac(sha512, SLIP10_ED25519_KEY, seed);
    const master = { curve, privateKey: I.slice(0, 32), chainCode: I.slice(32, 64) } as const;
    wipe(I);
    return master;
  }
  throw new CustosError('unsupported_algorithm', `HD derivation supports secp256k1 and ed25519, not ${String(curve)}.`);
}

/** Copies key and chain code out of an HDKey, then wipes the HDKey's private data. */
function fromHdKey(hd: HDKey): HdMaster {
  try {
    return { curve: 'secp256k1', privateKey: Uint8Array.from(hd.privateKey!), chainCode: Uint8Array.from(hd.chainCode!) };
  } finally {
    hd.wipePrivateData();
  }
}

/** Whether a mnemonic is a valid English BIP39 phrase (words and checksum). */
export function isValidMnemonic(mnemonic: string): boolean {
  return typeof mnemonic === 'string' && validateMnemonic(mnemonic, english);
}

/**
 * The 64-byte BIP39 seed of an English mnemonic and optional passphrase (PBKDF2-HMAC-SHA512,
 * 2048 rounds; about 2 ms per call). Refuses (invalid_key_material) a phrase whose words or
 * checksum are wrong, so a typo never silently becomes a different wallet.
 */
export function seedFromMnemonic(mnemonic: string, passphrase = ''): Uint8Array {
  if (!isValidMnemonic(mnemonic)) {
    throw badKey('The mnemonic is not a valid English BIP39 phrase: a word is not in the list, the word count is wrong, or the checksum does not match.');
  }
  if (typeof passphrase !== 'string') throw badKey('A BIP39 passphrase is a string.');
  return mnemonicToSeedSync(mnemonic, passphrase);
}

/** A new English BIP39 mnemonic; strength in bits of entropy (128 gives 12 words, 256 gives 24). */
export function generateMnemonic(strength: 128 | 160 | 192 | 224 | 256 = 256): string {
  if (![128, 160, 192, 224, 256].includes(strength)) {
    throw new CustosError('bad_request', 'Mnemonic strength is 128, 160, 192, 224 or 256 bits.');
  }
  return bip39Generate(english, strength);
}

const base58check = createBase58check(sha256);

/**
 * Imports a master extended private key (`xprv…` mainnet or `tprv…` testnet). The xprv is a
 * string by nature and cannot be wiped: it should come straight from the request body and be
 * dropped after this call. Only a master (depth 0) is accepted: the vault records paths from the
 * master and matches PSBT fields by the master fingerprint, which a child xprv does not carry.
 */
export function importXprv(xprv: string): { master: HdMaster; network: XkeyNetwork } {
  if (typeof xprv !== 'string' || xprv.length > 120) throw badKey('An extended private key is a base58 string of about 111 characters.');
  let raw: Uint8Array;
  try {
    raw = base58check.decode(xprv);
  } catch {
    throw badKey('The extended key is not valid base58check (a character or the checksum is wrong).');
  }
  try {
    if (raw.length !== 78) throw badKey('The extended key does not have the 78-byte BIP32 layout.');
    const version = ((raw[0]! << 24) | (raw[1]! << 16) | (raw[2]! << 8) | raw[3]!) >>> 0;
    const network = (Object.keys(VERSIONS) as XkeyNetwork[]).find((n) => VERSIONS[n].private === version);
    if (!network) {
      const isPublic = Object.values(VERSIONS).some((v) => v.public === version);
      throw badKey(isPublic ? 'This is an extended public key; import needs the xprv.' : 'The extended key has an unknown version (xprv or tprv expected).');
    }
    if (raw[4] !== 0) throw badKey('Only a master xprv (depth 0) can be imported; this one is a derived child.');
    if (raw[45] !== 0) throw badKey('The extended private key does not start its key with 0x00.');
    let hd: HDKey;
    try {
      // HDKey checks the rest: zero parent fingerprint and index at depth 0, the scalar's range.
      hd = new HDKey({
        versions: VERSIONS[network],
        depth: 0,
        index: readU32(raw, 9),
        parentFingerprint: readU32(raw, 5),
        chainCode: raw.subarray(13, 45),
        privateKey: raw.subarray(46, 78),
      });
    } catch {
      throw badKey('The extended private key is invalid (its key is out of range, or a master key has a parent or an index).');
    }
    return { master: fromHdKey(hd), network };
  } finally {
    wipe(raw);
  }
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Stored form

/** The bytes the vault envelope-encrypts: version ‖ curve ‖ chain code ‖ private key (66 bytes). */
export function encodeMaster(master: HdMaster): Uint8Array {
  checkMaster(master);
  const out = new Uint8Array(STORED_MASTER_LENGTH);
  out[0] = STORED_VERSION;
  out[1] = CURVE_BYTE[master.curve];
  out.set(master.chainCode, 2);
  out.set(master.privateKey, 34);
  return out;
}

/** Parses the stored form into fresh buffers (the input may then be wiped). */
export function decodeMaster(stored: Uint8Array): HdMaster {
  if (!(stored instanceof Uint8Array) || stored.length !== STORED_MASTER_LENGTH) {
    throw badKey(`A stored HD master key is ${STORED_MASTER_LENGTH} bytes.`);
  }
  if (stored[0] !== STORED_VERSION) throw badKey(`The stored HD master key has an unknown format version ${stored[0]}.`);
  const curve = (Object.keys(CURVE_BYTE) as HdCurve[]).find((c) => CURVE_BYTE[c] === stored[1]);
  if (!curve) throw badKey(`The stored HD master key names an unknown curve (${stored[1]}).`);
  const master: HdMaster = { curve, chainCode: stored.slice(2, 34), privateKey: stored.slice(34, 66) };
  try {
    checkMaster(master);
  } catch (e) {
    wipeMaster(master);
    throw e;
  }
  return master;
}

function checkMaster(master: HdMaster): void {
  if (master.curve !== 'secp256k1' && master.curve !== 'ed25519') throw badKey('An HD master key is secp256k1 or ed25519.');
  if (!(master.chainCode instanceof Uint8Array) || master.chainCode.length !== 32) throw badKey('An HD chain code is 32 bytes.');
  if (!(master.privateKey instanceof Uint8Array) || master.privateKey.length !== 32) throw badKey('An HD private key is 32 bytes.');
  if (master.curve === 'secp256k1' && !secp256k1.utils.isValidSecretKey(master.privateKey)) {
    throw badKey('The secp256k1 master key is not a valid scalar (zero or not below the curve order).');
  }
}

export function wipeMaster(master: HdMaster): void {
  wipe(master.chainCode, master.privateKey);
}

// ---------------------------------------------------------------------------------------------
// Nodes: one interface over HDKey (secp256k1) and SLIP-10 (Ed25519)

interface HdNode {
  child(index: number): HdNode;
  /** A copy of the private key. */
  privateKey(): Uint8Array;
  publicKey(): Uint8Array;
  wipe(): void;
}

class Secp256k1Node implements HdNode {
  constructor(private readonly hd: HDKey) {}
  static master(m: HdMaster, network: XkeyNetwork = 'mainnet'): Secp256k1Node {
    return new Secp256k1Node(new HDKey({ versions: VERSIONS[network], chainCode: m.chainCode, privateKey: m.privateKey }));
  }
  child(index: number): Secp256k1Node {
    return new Secp256k1Node(this.hd.deriveChild(index));
  }
  privateKey(): Uint8Array {
    return Uint8Array.from(this.hd.privateKey!);
  }
  publicKey(): Uint8Array {
    return Uint8Array.from(this.hd.publicKey!);
  }
  get key(): HDKey {
    return this.hd;
  }
  wipe(): void {
    this.hd.wipePrivateData();
  }
}

class Ed25519Node implements HdNode {
  private constructor(private readonly key: Uint8Array, private readonly chainCode: Uint8Array) {}
  static master(m: HdMaster): Ed25519Node {
    return new Ed25519Node(Uint8Array.from(m.privateKey), Uint8Array.from(m.chainCode));
  }
  /** SLIP-10 CKDpriv for Ed25519: I = HMAC-SHA512(c_par, 0x00 ‖ k_par ‖ ser32(i)), hardened only. */
  child(index: number): Ed25519Node {
    if (!isHardened(index)) {
      throw new CustosError('invalid_derivation_path', 'SLIP-10 Ed25519 derives hardened children only; mark every level with \' or h.');
    }
    const I = new Uint8Array(64);
    const ser = new Uint8Array([index >>> 24, (index >>> 16) & 0xff, (index >>> 8) & 0xff, index & 0xff]);
    // Streamed into the MAC so that no concatenated copy of the parent key is left behind.
    hmac.create(sha512, this.chainCode).update(new Uint8Array([0])).update(this.key).update(ser).digestInto(I);
    const node = new Ed25519Node(I.slice(0, 32), I.slice(32, 64));
    wipe(I);
    return node;
  }
  privateKey(): Uint8Array {
    return Uint8Array.from(this.key);
  }
  publicKey(): Uint8Array {
    return publicKeyFromSecret('ed25519', this.key);
  }
  wipe(): void {
    wipe(this.key, this.chainCode);
  }
}

function masterNode(master: HdMaster): HdNode {
  checkMaster(master);
  return master.curve === 'secp256k1' ? Secp256k1Node.master(master) : Ed25519Node.master(master);
}

// ---------------------------------------------------------------------------------------------
// Derivation

/**
 * The key pair at `path` under `master`. With a cache, intermediate nodes are reused and kept
 * (bounded); without one, every level is derived and every intermediate wiped.
 */
export function deriveChild(master: HdMaster, path: string | DerivationPath, cache?: { id: string; cache: DerivationCache }): DerivedKey {
  if (cache) return cache.cache.derive(cache.id, master, path);
  const p = toPath(path);
  let node = masterNode(master);
  for (const index of p) {
    const next = node.child(index);
    node.wipe();
    node = next;
  }
  try {
    return { privateKey: node.privateKey(), publicKey: node.publicKey() };
  } finally {
    node.wipe();
  }
}

/** The public key at `path` (the private key is derived and wiped on the way). */
export function publicKeyAt(master: HdMaster, path: string | DerivationPath, cache?: { id: string; cache: DerivationCache }): Uint8Array {
  const k = deriveChild(master, path, cache);
  wipe(k.privateKey);
  return k.publicKey;
}

/**
 * BIP32 key fingerprint: the first 4 bytes of HASH160 of the public key, as PSBT derivation
 * fields carry it. For Ed25519, SLIP-10's convention: HASH160 of 0x00 ‖ public key.
 */
export function masterFingerprint(master: HdMaster): number {
  const pub = publicKeyAt(master, []);
  const ser = master.curve === 'secp256k1' ? pub : Uint8Array.of(0, ...pub);
  return readU32(ripemd160(sha256(ser)), 0);
}

/**
 * The extended public key (`xpub`/`tpub`) of the node at `path`, with its real depth, index and
 * parent fingerprint. Hardened levels are fine: the vault holds the master private key. secp256k1
 * only: SLIP-10 Ed25519 has no public derivation, hence no xpub.
 */
export function exportXpub(master: HdMaster, path: string | DerivationPath, network: XkeyNetwork = 'mainnet'): string {
  if (master.curve !== 'secp256k1') {
    throw new CustosError('unsupported_algorithm', 'Ed25519 (SLIP-10) has no extended public keys: it derives hardened children only.');
  }
  if (network !== 'mainnet' && network !== 'testnet') throw new CustosError('bad_request', 'The xpub network is mainnet or testnet.');
  const p = toPath(path);
  checkMaster(master);
  let node = Secp256k1Node.master(master, network);
  for (const index of p) {
    const next = node.child(index);
    node.wipe();
    node = next;
  }
  try {
    return node.key.publicExtendedKey;
  } finally {
    node.wipe();
  }
}

// ---------------------------------------------------------------------------------------------
// Cache

export interface DerivationCacheStats {
  hits: number;
  misses: number;
  /** Child derivations performed (HMAC + scalar add + point multiplication for secp256k1). */
  levelsDerived: number;
  size: number;
}

interface CacheEntry {
  node: HdNode;
  /** SHA-256 of the master's chain code: catches two masters passed under one id. */
  check: Uint8Array;
}

/**
 * An LRU of intermediate derivation nodes, keyed by master id and path. Signing at
 * m/84'/0'/0'/0/5 with a warm cache derives one level (the leaf) from the cached parent
 * m/84'/0'/0'/0. Leaves are never cached: they are the signing keys, and there may be millions.
 *
 * Nodes hold private keys: an evicted node is wiped, and `clear()` wipes all (call it when the
 * vault seals). The master id must name one master key for the cache's life, for example the
 * vault's key id and version; a different master under a known id is detected (by its chain
 * code's hash) and that id's nodes are dropped rather than used.
 */
export class DerivationCache {
  private readonly entries = new Map<string, CacheEntry>();
  private readonly maxNodes: number;
  private hits = 0;
  private misses = 0;
  private levels = 0;

  constructor(options: { maxNodes?: number } = {}) {
    const max = options.maxNodes ?? 4096;
    if (!Number.isInteger(max) || max < 0) throw new RangeError('maxNodes is a non-negative integer');
    this.maxNodes = max;
  }

  derive(masterId: string, master: HdMaster, path: string | DerivationPath): DerivedKey {
    const p = toPath(path);
    const check = sha256(master.chainCode);
    let start = 0;
    let found: HdNode | undefined;
    // Longest cached proper prefix (the master itself is the prefix of length 0).
    for (let len = p.length - 1; len >= 0 && !found; len--) {
      const key = this.keyOf(masterId, p, len);
      const entry = this.entries.get(key);
      if (!entry) continue;
      if (!equalBytes(entry.check, check)) {
        this.forget(masterId);
        break;
      }
      this.entries.delete(key);
      this.entries.set(key, entry); // most recently used
      found = entry.node;
      start = len;
    }
    let node: HdNode;
    let owned: boolean;
    if (found) {
      this.hits++;
      node = found;
      owned = false;
    } else {
      this.misses++;
      node = masterNode(master);
      start = 0;
      owned = !this.put(this.keyOf(masterId, p, 0), node, check, p.length > 0);
    }
    for (let i = start; i < p.length; i++) {
      const next: HdNode = node.child(p[i]!);
      this.levels++;
      if (owned) node.wipe();
      node = next;
      owned = !this.put(this.keyOf(masterId, p, i + 1), next, check, i + 1 < p.length);
    }
    try {
      return { privateKey: node.privateKey(), publicKey: node.publicKey() };
    } finally {
      if (owned) node.wipe();
    }
  }

  /** Drops and wipes every node of one master (after its key is destroyed or rotated). */
  forget(masterId: string): void {
    const prefix = `${masterId}\u0000`;
    for (const [key, entry] of this.entries) {
      if (key.startsWith(prefix)) {
        entry.node.wipe();
        this.entries.delete(key);
      }
    }
  }

  /** Wipes and drops every node. */
  clear(): void {
    for (const entry of this.entries.values()) entry.node.wipe();
    this.entries.clear();
  }

  get stats(): DerivationCacheStats {
    return { hits: this.hits, misses: this.misses, levelsDerived: this.levels, size: this.entries.size };
  }

  private keyOf(masterId: string, p: readonly number[], len: number): string {
    return `${masterId}\u0000${p.slice(0, len).join('/')}`;
  }

  /** Caches an intermediate node; returns whether the cache now owns it. */
  private put(key: string, node: HdNode, check: Uint8Array, intermediate: boolean): boolean {
    if (!intermediate || this.maxNodes === 0) return false;
    const old = this.entries.get(key);
    if (old) {
      old.node.wipe();
      this.entries.delete(key);
    }
    this.entries.set(key, { node, check });
    while (this.entries.size > this.maxNodes) {
      const [oldestKey, oldest] = this.entries.entries().next().value as [string, CacheEntry];
      // The node being returned to the caller is the newest entry, so never evicted here.
      oldest.node.wipe();
      this.entries.delete(oldestKey);
    }
    return true;
  }
}

