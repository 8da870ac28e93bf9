/** A validator's votes and files for switching tests: votes to send, and FilePV-style key and state that really signed. */
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { voteSignBytes, type BlockId } from '../../src/crypto/cometbft/sign-bytes.js';
import type { Vote } from '../../src/frontends/privval/messages.js';

export const TS = { seconds: 1_700_000_000n, nanos: 0 };

export const blockId = (n: number): BlockId => ({ hash: new Uint8Array(32).fill(n), partSetHeader: { total: 1, hash: new Uint8Array(32).fill(n + 1) } });

export function vote(type: 1 | 2, height: number, round: number, bid: BlockId): Vote {
  return {
    type,
    height: BigInt(height),
    round,
    blockId: bid,
    timestamp: TS,
    validatorAddress: new Uint8Array(20).fill(7),
    validatorIndex: 0,
    signature: new Uint8Array(0),
    extension: new Uint8Array(0),
    extensionSignature: new Uint8Array(0),
  };
}

export const voteBytes = (chain: string, v: Vote) => voteSignBytes(chain, { type: v.type === 1 ? 'prevote' : 'precommit', height: v.height, round: v.round, blockId: v.blockId, timestamp: v.timestamp });

/** An Ed25519 validator key as priv_validator_key.json, and a state whose signature is genuine over `last` on `chain`. */
export function filePv(chain: string, last: Vote) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(16);
  const pub = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
  const keyJson = JSON.stringify({ address: 'X', pub_key: { type: 'tendermint/PubKeyEd25519', value: Buffer.from(pub).toString('base64') }, priv_key: { type: 'tendermint/PrivKeyEd25519', value: Buffer.concat([seed, pub]).toString('base64') } });
  const signbytes = voteBytes(chain, last);
  const signature = new Uint8Array(nodeSign(null, signbytes, privateKey));
  const stateJson = JSON.stringify({ height: last.height.toString(), round: last.round, step: last.type === 1 ? 2 : 3, signature: Buffer.from(signature).toString('base64'), signbytes: Buffer.from(signbytes).toString('hex').toUpperCase() });
  return { seed, pub, keyJson, stateJson, signature };
}
