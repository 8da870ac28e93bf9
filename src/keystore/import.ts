/**
 * Turns key material in the formats operators have (raw 32-byte secret, hex, PKCS#8 PEM,
 * OpenSSH private key file) into the vault's canonical secret for an algorithm, with a
 * precise `invalid_key_material` error for anything else.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { base64ToBytes, hexToBytes, wipe } from '../core/bytes.js';
import type { Algorithm } from '../core/types.js';
import { ALGORITHM_INFO, publicKeyFromSecret, validateSecret } from '../crypto/algorithms.js';
import { parseOpenSshPrivateKey } from '../crypto/openssh.js';

export const IMPORT_FORMATS = ['raw', 'hex', 'pkcs8', 'openssh', 'cometbft'] as const;
export type ImportFormat = (typeof IMPORT_FORMATS)[number];

export interface ImportedSecret {
  algorithm: Algorithm;
  secret: Uint8Array;
}

const invalid = (why: string) => new CustosError('invalid_key_material', why);

function requireAlgorithm(alg: Algorithm | undefined, format: string): Algorithm {
  if (!alg) throw new CustosError('bad_request', `Importing ${format} material needs the algorithm (ed25519, ed25519-expanded, secp256k1, secp256k1-bip340 or p256).`);
  if (ALGORITHM_INFO[alg].family === 'rsa') throw invalid(`RSA keys are imported as PKCS#8 PEM or OpenSSH files, not ${format}.`);
  return alg;
}

function checkWanted(found: Algorithm, wanted: Algorithm | undefined): Algorithm {
  if (wanted === undefined || wanted === found) return found;
  // A secp256k1 scalar may serve either secp256k1 scheme; the operator chooses which.
  if (found === 'secp256k1' && wanted === 'secp256k1-bip340') return wanted;
  throw invalid(`The material is a ${found} key, not ${wanted}.`);
}

/** Reads the 32-byte scalar out of the fixed-layout SEC1 ECPrivateKey DER (RFC 5915 §3). */
function ecScalarFromKeyObject(key: KeyObject): Uint8Array {
  const der = key.export({ format: 'der', type: 'sec1' });
  try {
    // SEQUENCE { INTEGER 1, OCTET STRING (32) ... }: 30 len 02 01 01 04 20 <scalar>
    if (der[2] !== 0x02 || der[3] !== 0x01 || der[4] !== 0x01 || der[5] !== 0x04 || der[6] !== 0x20) throw invalid('Unexpected EC private key layout.');
    return Uint8Array.from(der.subarray(7, 39));
  } finally {
    der.fill(0);
  }
}

function fromPkcs8(pem: Uint8Array, wanted: Algorithm | undefined): ImportedSecret {
  let key: KeyObject;
  try {
    const view = Buffer.from(pem.buffer, pem.byteOffset, pem.byteLength);
    // DER (a SEQUENCE, 0x30) from programs; PEM text from people.
    key = pem[0] === 0x30 ? createPrivateKey({ key: view, format: 'der', type: 'pkcs8' }) : createPrivateKey({ key: view, format: 'pem' });
  } catch {
    throw invalid('The material is not a readable unencrypted PKCS#8 (or PKCS#1/SEC1) private key, in PEM or DER.');
  }
  switch (key.asymmetricKeyType) {
    case 'ed25519': {
      const der = key.export({ format: 'der', type: 'pkcs8' });
      const seed = Uint8Array.from(der.subarray(der.length - 32));
      der.fill(0);
      return { algorithm: checkWanted('ed25519', wanted), secret: seed };
    }
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      const found: Algorithm | null = curve === 'prime256v1' ? 'p256' : curve === 'secp256k1' ? 'secp256k1' : null;
      if (!found) throw invalid(`EC keys on curve ${curve} are not supported (p256 and secp256k1 are).`);
      return { algorithm: checkWanted(found, wanted), secret: ecScalarFromKeyObject(key) };
    }
    case 'rsa': {
      const bits = key.asymmetricKeyDetails?.modulusLength;
      const found = `rsa-${bits}` as Algorithm;
      if (!(found in ALGORITHM_INFO)) throw invalid(`RSA keys of ${bits} bits are not supported (2048, 3072 and 4096 are).`);
      const der = key.export({ format: 'der', type: 'pkcs8' });
      const secret = Uint8Array.from(der);
      der.fill(0);
      return { algorithm: checkWanted(found, wanted), secret };
    }
    default:
      throw invalid(`Keys of type ${key.asymmetricKeyType} are not supported.`);
  }
}

function fromOpenSsh(text: Uint8Array, wanted: Algorithm | undefined): ImportedSecret {
  let parsed;
  try {
    parsed = parseOpenSshPrivateKey(text);
  } catch (e) {
    throw invalid(`The OpenSSH private key cannot be imported: ${(e as Error).message}`);
  }
  if (parsed.algorithm === 'rsa') {
    const found = `rsa-${parsed.bits}` as Algorithm;
    return { algorithm: checkWanted(found, wanted), secret: parsed.pkcs8 };
  }
  return { algorithm: checkWanted(parsed.algorithm, wanted), secret: parsed.secret };
}

/**
 * CometBFT's `priv_validator_key.json` (FilePV): amino-JSON with the key type name and the
 * base64 private key (Ed25519: seed ‖ public key, 64 bytes; secp256k1: the 32-byte scalar).
 * The stored public key must match the private one.
 */
function fromCometBft(material: Uint8Array, wanted: Algorithm | undefined): ImportedSecret {
  let doc: { pub_key?: { type?: string; value?: string }; priv_key?: { type?: string; value?: string } };
  try {
    doc = JSON.parse(Buffer.from(material).toString('utf8'));
  } catch {
    throw invalid('The material is not a priv_validator_key.json (not JSON).');
  }
  const type = doc.priv_key?.type;
  const value = doc.priv_key?.value;
  if (typeof type !== 'string' || typeof value !== 'string') throw invalid('priv_validator_key.json has no priv_key {type, value}.');
  let raw: Uint8Array;
  try {
    raw = base64ToBytes(value, 'priv_key.value');
  } catch {
    throw invalid('priv_validator_key.json priv_key.value is not base64.');
  }
  let result: ImportedSecret;
  if (type === 'tendermint/PrivKeyEd25519') {
    if (raw.length !== 64) throw invalid(`An Ed25519 priv_key is 64 bytes (seed ‖ public key); got ${raw.length}.`);
    result = { algorithm: checkWanted('ed25519', wanted), secret: Uint8Array.from(raw.subarray(0, 32)) };
  } else if (type === 'tendermint/PrivKeySecp256k1') {
    result = { algorithm: checkWanted('secp256k1', wanted), secret: Uint8Array.from(raw) };
  } else {
    throw invalid(`priv_validator_key.json key type ${type.slice(0, 64)} is not supported (Ed25519 and secp256k1 are).`);
  }
  const storedPub = doc.pub_key?.value;
  try {
    validateSecret(result.algorithm, result.secret);
    const derived = publicKeyFromSecret(result.algorithm, result.secret);
    const ok = typeof storedPub === 'string' && Buffer.from(derived).toString('base64') === storedPub && (type !== 'tendermint/PrivKeyEd25519' || Buffer.compare(Buffer.from(raw.subarray(32)), Buffer.from(derived)) === 0);
    if (!ok) throw invalid('priv_validator_key.json: the public key does not belong to the private key.');
  } catch (e) {
    wipe(result.secret);
    throw e;
  } finally {
    wipe(raw);
  }
  return result;
}

/** `material` is wiped by the caller; the returned secret belongs to the caller too. */
export function importSecret(format: ImportFormat, material: Uint8Array, wanted: Algorithm | undefined): ImportedSecret {
  let result: ImportedSecret;
  switch (format) {
    case 'raw':
      result = { algorithm: requireAlgorithm(wanted, 'raw'), secret: Uint8Array.from(material) };
      break;
    case 'hex': {
      const text = Buffer.from(material).toString('ascii').trim();
      let bytes: Uint8Array;
      try {
        bytes = hexToBytes(text.startsWith('0x') ? text.slice(2) : text);
      } catch {
        throw invalid('The hex key material is not valid hex.');
      }
      result = { algorithm: requireAlgorithm(wanted, 'hex'), secret: bytes };
      break;
    }
    case 'pkcs8':
      result = fromPkcs8(material, wanted);
      break;
    case 'openssh':
      result = fromOpenSsh(material, wanted);
      break;
    case 'cometbft':
      result = fromCometBft(material, wanted);
      break;
  }
  try {
    validateSecret(result.algorithm, result.secret);
  } catch (e) {
    wipe(result.secret);
    throw e;
  }
  return result;
}
