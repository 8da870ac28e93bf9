/**
 * BOLT 3 for the channel signer: per-commitment secrets (the shachain generator), the key
 * derivations (basepoint + SHA256(per_commitment_point ‖ basepoint)·G, and the revocation
 * key), the funding and HTLC scripts, the obscured commitment number of a commitment
 * transaction, and the HTLC transactions spending its outputs. Built on @noble/curves,
 * @noble/hashes and @scure/btc-signer; checked against LDK's own `chan_utils`
 * (test/lightning/bolt3.test.ts) and, end to end, by an LDK peer verifying what Custos signs.
 *
 * Only channels without anchors (`option_static_remotekey`, LDK's default): HTLC transactions
 * have a fee taken from the HTLC and are signed SIGHASH_ALL.
 */
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ripemd160 } from '@noble/hashes/legacy.js';
import { concatBytes } from '@noble/hashes/utils.js';
import { bytesToNumberBE, numberToBytesBE } from '@noble/curves/utils.js';
import { Script, Transaction, OutScript } from '@scure/btc-signer';
import { CustosError } from '../core/errors.js';
import { wipe } from '../core/bytes.js';

const Point = secp256k1.Point;
const N = Point.Fn.ORDER;

/** LDK counts commitments down from 2^48 - 1; BOLT 3 numbers count up from 0. */
export const INITIAL_COMMITMENT_NUMBER = (1n << 48n) - 1n;
export const SIGHASH_ALL = 1;
/** Weights of the HTLC transactions without anchors (BOLT 3, "Fee Calculation"). */
const HTLC_TIMEOUT_WEIGHT = 663n;
const HTLC_SUCCESS_WEIGHT = 703n;
/** A Bitcoin transaction the signer will parse: a commitment is far smaller. */
export const MAX_TX_BYTES = 400_000;

const bad = (m: string) => new CustosError('bad_request', m, { tag: 'lightning_tx' });

const toScalar = bytesToNumberBE;
const fromScalar = (n: bigint): Uint8Array => numberToBytesBE(n, 32);

/** BOLT 3 `generate_from_seed(seed, I)`: flip bit B of the running value for each set bit B of I (47 down to 0), hashing after each. */
export function perCommitmentSecret(seed: Uint8Array, index: bigint): Uint8Array {
  if (seed.length !== 32) throw bad('A commitment seed is 32 bytes.');
  if (index < 0n || index > INITIAL_COMMITMENT_NUMBER) throw bad('A commitment index is a 48-bit number.');
  let p = Uint8Array.from(seed);
  for (let b = 47; b >= 0; b--) {
    if ((index >> BigInt(b)) & 1n) {
      p[b >> 3]! ^= 1 << (b & 7);
      const next = sha256(p);
      wipe(p);
      p = next;
    }
  }
  return p;
}

/** The compressed public key of a secret. */
export function pointOf(secret: Uint8Array): Uint8Array {
  return secp256k1.getPublicKey(secret, true);
}

export function point(bytes: Uint8Array, what: string) {
  try {
    if (bytes.length !== 33) throw new Error();
    return Point.fromBytes(bytes);
  } catch {
    throw bad(`${what} is not a compressed secp256k1 public key.`);
  }
}

/** BOLT 3 `derive_pubkey`: basepoint + SHA256(per_commitment_point ‖ basepoint)·G. */
export function derivePublicKey(basepoint: Uint8Array, perCommitmentPoint: Uint8Array): Uint8Array {
  const t = toScalar(sha256(concatBytes(perCommitmentPoint, basepoint))) % N;
  // Public points and a scalar hashed from them: nothing secret, so the faster variable-time multiplication.
  return point(basepoint, 'A basepoint').add(Point.BASE.multiplyUnsafe(t)).toBytes(true);
}

/** The secret of derivePublicKey: basepoint_secret + SHA256(per_commitment_point ‖ basepoint). */
export function derivePrivateKey(baseSecret: Uint8Array, perCommitmentPoint: Uint8Array): Uint8Array {
  const basepoint = pointOf(baseSecret);
  const k = (toScalar(baseSecret) + toScalar(sha256(concatBytes(perCommitmentPoint, basepoint)))) % N;
  if (k === 0n) throw bad('The derived key is zero.');
  return fromScalar(k);
}

/** BOLT 3 `revocationpubkey`: R·SHA256(R ‖ P) + P·SHA256(P ‖ R). */
export function revocationPublicKey(revocationBasepoint: Uint8Array, perCommitmentPoint: Uint8Array): Uint8Array {
  const R = point(revocationBasepoint, 'The revocation basepoint');
  const P = point(perCommitmentPoint, 'The per-commitment point');
  const a = toScalar(sha256(concatBytes(revocationBasepoint, perCommitmentPoint))) % N;
  const b = toScalar(sha256(concatBytes(perCommitmentPoint, revocationBasepoint))) % N;
  // (Public points, scalars hashed from them: variable time is safe here.)
  return R.multiplyUnsafe(a).add(P.multiplyUnsafe(b)).toBytes(true);
}

/**
 * The secret of revocationPublicKey, once the broadcaster's per-commitment secret is known:
 * revocation_basepoint_secret·SHA256(R ‖ P) + per_commitment_secret·SHA256(P ‖ R).
 */
export function revocationPrivateKey(revocationBaseSecret: Uint8Array, perCommitmentSecret: Uint8Array): Uint8Array {
  const R = pointOf(revocationBaseSecret);
  const P = pointOf(perCommitmentSecret);
  const a = toScalar(sha256(concatBytes(R, P))) % N;
  const b = toScalar(sha256(concatBytes(P, R))) % N;
  const k = (toScalar(revocationBaseSecret) * a + toScalar(perCommitmentSecret) * b) % N;
  if (k === 0n) throw bad('The revocation key is zero.');
  return fromScalar(k);
}

/** The funding output's witness script: 2 <pubkey1> <pubkey2> 2 OP_CHECKMULTISIG, keys in lexicographic order. */
export function fundingScript(a: Uint8Array, b: Uint8Array): Uint8Array {
  point(a, 'A funding key');
  point(b, 'A funding key');
  const [x, y] = Buffer.compare(Buffer.from(a), Buffer.from(b)) <= 0 ? [a, b] : [b, a];
  return Script.encode([2, x, y, 2, 'CHECKMULTISIG']);
}

/** The witness script of a revocable output (to_local, and an HTLC transaction's output). */
export function revokeableScript(revocationKey: Uint8Array, toSelfDelay: number, delayedKey: Uint8Array): Uint8Array {
  return Script.encode(['IF', revocationKey, 'ELSE', toSelfDelay, 'CHECKSEQUENCEVERIFY', 'DROP', delayedKey, 'ENDIF', 'CHECKSIG']);
}

export interface HtlcOutput {
  /** Offered by the commitment's broadcaster (its HTLC-timeout spends it); else received (HTLC-success). */
  offered: boolean;
  amountMsat: bigint;
  cltvExpiry: number;
  paymentHash: Uint8Array;
  outputIndex: number;
}

/** The keys of one commitment transaction, from its broadcaster's side. */
export interface CommitmentKeys {
  revocationKey: Uint8Array;
  broadcasterHtlcKey: Uint8Array;
  countersignatoryHtlcKey: Uint8Array;
  broadcasterDelayedKey: Uint8Array;
}

/** BOLT 3 offered and received HTLC outputs' witness scripts (without anchors). */
export function htlcScript(h: HtlcOutput, k: CommitmentKeys): Uint8Array {
  const revHash = ripemd160(sha256(k.revocationKey));
  const payHash = ripemd160(h.paymentHash);
  return h.offered
    ? Script.encode(['DUP', 'HASH160', revHash, 'EQUAL', 'IF', 'CHECKSIG', 'ELSE', k.countersignatoryHtlcKey, 'SWAP', 'SIZE', 32, 'EQUAL', 'NOTIF', 'DROP', 2, 'SWAP', k.broadcasterHtlcKey, 2, 'CHECKMULTISIG', 'ELSE', 'HASH160', payHash, 'EQUALVERIFY', 'CHECKSIG', 'ENDIF', 'ENDIF'])
    : Script.encode(['DUP', 'HASH160', revHash, 'EQUAL', 'IF', 'CHECKSIG', 'ELSE', k.countersignatoryHtlcKey, 'SWAP', 'SIZE', 32, 'EQUAL', 'IF', 'HASH160', payHash, 'EQUALVERIFY', 2, 'SWAP', k.broadcasterHtlcKey, 2, 'CHECKMULTISIG', 'ELSE', 'DROP', h.cltvExpiry, 'CHECKLOCKTIMEVERIFY', 'DROP', 'CHECKSIG', 'ENDIF', 'ENDIF']);
}

/** The lower 48 bits of SHA256(opener's payment basepoint ‖ accepter's payment basepoint). */
export function obscuringFactor(openerPaymentPoint: Uint8Array, accepterPaymentPoint: Uint8Array): bigint {
  const h = sha256(concatBytes(openerPaymentPoint, accepterPaymentPoint));
  return toScalar(h.subarray(26));
}

/** A transaction parsed strictly enough to sign: size-bounded, every error a typed one. */
export function parseTransaction(bytes: Uint8Array): Transaction {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw bad('The transaction is empty.');
  if (bytes.length > MAX_TX_BYTES) throw new CustosError('payload_too_large', `A transaction to sign is at most ${MAX_TX_BYTES} bytes.`);
  try {
    return Transaction.fromRaw(bytes, { allowUnknownInputs: true, allowUnknownOutputs: true, disableScriptCheck: true, allowLegacyWitnessUtxo: true });
  } catch (e) {
    throw bad(`The transaction does not parse (${e instanceof Error ? e.message.slice(0, 120) : 'malformed'}).`);
  }
}

/** The funding outpoint a transaction spends as its only input (txid in display order); version 2, an empty scriptSig. */
export function onlyInput(tx: Transaction): { txid: string; index: number; sequence: number } {
  if (tx.inputsLength !== 1) throw bad(`The transaction has ${tx.inputsLength} inputs; a channel transaction spends the funding output alone.`);
  if (tx.version !== 2) throw bad(`The transaction is version ${tx.version}; channel transactions are version 2.`);
  const i = tx.getInput(0);
  if (i.finalScriptSig && i.finalScriptSig.length > 0) throw bad('The transaction has a scriptSig: a segwit spend of the funding output has none.');
  return { txid: Buffer.from(i.txid!).toString('hex'), index: i.index!, sequence: i.sequence ?? 0xffffffff };
}

/**
 * The BOLT 3 commitment number of a commitment transaction: its upper 24 bits in the input's
 * sequence (top byte 0x80), its lower 24 in the locktime (top byte 0x20), XORed with the
 * channel's obscuring factor.
 */
export function commitmentNumberOf(tx: Transaction, factor: bigint): bigint {
  const { sequence } = onlyInput(tx);
  const lock = tx.lockTime >>> 0;
  if (sequence >>> 24 !== 0x80 || lock >>> 24 !== 0x20) throw bad('The transaction is not a commitment transaction (its sequence and locktime do not carry a commitment number).');
  const obscured = (BigInt(sequence & 0xffffff) << 24n) | BigInt(lock & 0xffffff);
  return obscured ^ factor;
}

/** The BIP143 SIGHASH_ALL digest of input `index` spending `script` (P2WSH) worth `amount`. */
export function segwitSighash(tx: Transaction, index: number, script: Uint8Array, amount: bigint): Uint8Array {
  return tx.preimageWitnessV0(index, script, SIGHASH_ALL, amount);
}

/** ECDSA over a digest, low S, as LDK hands signatures: 64-byte compact. */
export function signDigest(digest: Uint8Array, secret: Uint8Array): Uint8Array {
  return secp256k1.sign(digest, secret, { prehash: false, lowS: true, format: 'compact' });
}

export function verifyDigest(signature: Uint8Array, digest: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    // Low S only: a high-S signature is valid but not relayed (BIP 146), so a commitment carrying one could not be broadcast.
    return secp256k1.verify(signature, digest, publicKey, { prehash: false, lowS: true, format: 'compact' });
  } catch {
    return false;
  }
}

/**
 * The HTLC transaction spending `h` of the commitment `commitment` (BOLT 3, without anchors):
 * HTLC-timeout (locktime = cltv_expiry) for an offered HTLC, HTLC-success (locktime 0) for a
 * received one; its output pays the broadcaster's delayed key, revocable, less the fee at
 * `feeratePerKw`. Checks that the commitment's output `h.outputIndex` is exactly this HTLC.
 * Returns the transaction, the HTLC's witness script and its value.
 */
export function htlcTransaction(commitment: Transaction, h: HtlcOutput, keys: CommitmentKeys, feeratePerKw: number, toSelfDelay: number): { tx: Transaction; script: Uint8Array; amount: bigint } {
  if (!Number.isInteger(h.outputIndex) || h.outputIndex < 0 || h.outputIndex >= commitment.outputsLength) throw bad(`HTLC output ${h.outputIndex} is not an output of the commitment transaction.`);
  const script = htlcScript(h, keys);
  const out = commitment.getOutput(h.outputIndex);
  const amount = h.amountMsat / 1000n;
  const expected = OutScript.encode({ type: 'wsh', hash: sha256(script) });
  if (!out.script || Buffer.compare(Buffer.from(out.script), Buffer.from(expected)) !== 0 || out.amount !== amount) {
    throw bad(`Output ${h.outputIndex} of the commitment transaction is not the ${h.offered ? 'offered' : 'received'} HTLC of ${h.amountMsat} msat described.`);
  }
  const fee = (BigInt(feeratePerKw) * (h.offered ? HTLC_TIMEOUT_WEIGHT : HTLC_SUCCESS_WEIGHT)) / 1000n;
  if (fee >= amount) throw bad(`HTLC output ${h.outputIndex} is worth no more than its transaction's fee (a dust HTLC has no output).`);
  const tx = new Transaction({ version: 2, lockTime: h.offered ? h.cltvExpiry : 0, allowUnknownOutputs: true, disableScriptCheck: true });
  tx.addInput({ txid: commitment.id, index: h.outputIndex, sequence: 0 });
  tx.addOutput({ script: OutScript.encode({ type: 'wsh', hash: sha256(revokeableScript(keys.revocationKey, toSelfDelay, keys.broadcasterDelayedKey)) }), amount: amount - fee });
  return { tx, script, amount };
}
