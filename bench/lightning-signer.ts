/**
 * The Lightning channel signer (vault/lightning-signer.ts) per channel update, in one run:
 *   - the floors: fsync of a 256-byte write, and a raw secp256k1 ECDSA signature (@noble/curves);
 *   - what one update of a channel costs the signer, call by call, as LDK makes them for one
 *     `commitment_signed`/`revoke_and_ack` round each way: sign the counterparty's commitment
 *     (with `--htlcs` HTLC signatures), validate its revocation, validate the holder's next
 *     commitment (the counterparty's signature checked), release the previous holder secret.
 *     Each call reads the channel's signer state, decides, writes the state record to the
 *     backup target when it changes, and commits it with the audit entry before answering.
 * The vault is real: SQLite on disk, sealed root, row MACs, audit chain; a directory backup.
 *
 *   node --import tsx bench/lightning-signer.ts [--rounds 300] [--htlcs 2]
 *
 * One JSON document on stdout, progress on stderr. Never exits non-zero because of a timing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { Transaction, OutScript } from '@scure/btc-signer';
import { sha256 } from '@noble/hashes/sha2.js';
import { initVault, openVault } from '../src/vault/open.js';
import type { Principal } from '../src/core/types.js';
import { DirectoryTarget } from '../src/lightning/backup.js';
import { generateMnemonic } from '../src/wallet/hd.js';
import { derivePublicKey, fundingScript, htlcScript, INITIAL_COMMITMENT_NUMBER, obscuringFactor, pointOf, revocationPublicKey, revokeableScript, signDigest } from '../src/lightning/bolt3.js';
import { p2wpkh } from '../src/lightning/channel-keys.js';
import { fsyncFloor, pct, round } from './lib/floors.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const ROUNDS = Number(arg('--rounds', '300'));
const HTLCS = Number(arg('--htlcs', '2'));
const PASS = new TextEncoder().encode('bench lightning signer passphrase');
const ADMIN: Principal = { id: 'token:admin', kind: 'admin' };
const stats = (xs: number[]) => ({ p50_ms: round(pct(xs, 50)), p99_ms: round(pct(xs, 99)) });
const log = (s: string) => process.stderr.write(`[lightning-signer] ${s}\n`);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
let seq = 0;
const ctx = () => ({ principal: ADMIN, requestId: `bench-${++seq}` });

const root = mkdtempSync(join(tmpdir(), 'custos-bench-lns-'));
try {
  const dataDir = join(root, 'vault');
  await initVault({ dataDir, passphrase: PASS, scrypt: { N: 2 ** 12, r: 8, p: 1 } });
  const v = await openVault({ dataDir, passphrase: PASS, anchorIntervalMs: 1000, lightning: { backup: new DirectoryTarget(join(root, 'backup')) } });
  try {
    await v.vault.createHdKey(ctx(), { label: 'ln', curve: 'secp256k1', mnemonic: generateMnemonic(), purpose: 'lightning' });
    const ch = v.vault.channels;
    const keysId = hex(randomBytes(32));
    const ours = await ch.publicKeys(ctx(), 'ln', keysId);
    const them = Array.from({ length: 5 }, () => secp256k1.utils.randomSecretKey());
    const [tFunding, tRevocation, tPayment, tDelayed, tHtlc] = them.map(pointOf) as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    const fundingTxid = hex(randomBytes(32));
    const value = 10_000_000n;
    await ch.setup(ctx(), 'ln', keysId, { channelType: 'static_remotekey', outbound: true, holderDelay: 144, counterpartyDelay: 144, counterparty: { funding: hex(tFunding), revocation: hex(tRevocation), payment: hex(tPayment), delayed: hex(tDelayed), htlc: hex(tHtlc) }, fundingTxid, fundingIndex: 0, valueSat: value.toString() });
    const factor = obscuringFactor(ours.payment, tPayment);
    const fScript = fundingScript(ours.funding, tFunding);
    /** A commitment spending the funding output at number n, paying `outputs`. */
    const commitment = (n: number, outputs: Array<{ script: Uint8Array; amount: bigint }>) => {
      const o = BigInt(n) ^ factor;
      const tx = new Transaction({ version: 2, lockTime: Number(0x20000000n | (o & 0xffffffn)), allowUnknownOutputs: true });
      tx.addInput({ txid: fundingTxid, index: 0, sequence: Number(0x80000000n | (o >> 24n)) });
      for (const out of outputs) tx.addOutput(out);
      return tx;
    };
    /** The counterparty's commitment n, with its to_local for the point and HTLCs offered by it. */
    const counterpartyCommitment = (n: number, secret: Uint8Array) => {
      const pcp = pointOf(secret);
      const keys = { revocationKey: revocationPublicKey(ours.revocation, pcp), broadcasterHtlcKey: derivePublicKey(tHtlc, pcp), countersignatoryHtlcKey: derivePublicKey(ours.htlc, pcp), broadcasterDelayedKey: derivePublicKey(tDelayed, pcp) };
      const htlcs = Array.from({ length: HTLCS }, (_, i) => ({ offered: true, amountMsat: 100_000_000n, cltvExpiry: 900_000 + i, paymentHash: randomBytes(32), outputIndex: 2 + i }));
      const outputs = [
        { script: OutScript.encode({ type: 'wsh', hash: sha256(revokeableScript(keys.revocationKey, 144, keys.broadcasterDelayedKey)) }), amount: 4_000_000n },
        { script: p2wpkh(ours.payment), amount: 5_000_000n },
        ...htlcs.map((h) => ({ script: OutScript.encode({ type: 'wsh', hash: sha256(htlcScript(h, keys)) }), amount: 100_000n })),
      ];
      return { tx: commitment(n, outputs), pcp, htlcs };
    };

    const fsync = stats(fsyncFloor(500));
    const digest = randomBytes(32);
    const key = secp256k1.utils.randomSecretKey();
    const raw: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const t = performance.now();
      signDigest(digest, key);
      raw.push(performance.now() - t);
    }

    const times: Record<string, number[]> = { sign_counterparty: [], validate_revocation: [], validate_holder: [], release_secret: [], round: [] };
    const time = async (name: string, f: () => Promise<unknown>) => {
      const t = performance.now();
      await f();
      times[name]!.push(performance.now() - t);
    };
    const secrets: Uint8Array[] = [];
    const holderTx = (n: number) => commitment(n, [{ script: p2wpkh(tPayment), amount: 4_000_000n }]);
    const holderSig = (tx: Transaction) => signDigest(tx.preimageWitnessV0(0, fScript, 1, value), them[0]!);
    // Round 0: the first commitments each way.
    secrets.push(secp256k1.utils.randomSecretKey());
    const c0 = counterpartyCommitment(0, secrets[0]!);
    await ch.signCounterparty(ctx(), 'ln', keysId, { tx: c0.tx.toBytes(true, false), perCommitmentPoint: c0.pcp, feeratePerKw: 253, htlcs: c0.htlcs });
    const h0 = holderTx(0);
    await ch.validateHolder(ctx(), 'ln', keysId, { tx: h0.toBytes(true, false), counterpartySignature: holderSig(h0) });
    log(`${ROUNDS} rounds, ${HTLCS} HTLCs per counterparty commitment`);
    for (let n = 1; n <= ROUNDS; n++) {
      secrets.push(secp256k1.utils.randomSecretKey());
      const c = counterpartyCommitment(n, secrets[n]!);
      const h = holderTx(n);
      const sig = holderSig(h);
      const t = performance.now();
      await time('sign_counterparty', () => ch.signCounterparty(ctx(), 'ln', keysId, { tx: c.tx.toBytes(true, false), perCommitmentPoint: c.pcp, feeratePerKw: 253, htlcs: c.htlcs }));
      await time('validate_revocation', () => ch.validateRevocation(ctx(), 'ln', keysId, INITIAL_COMMITMENT_NUMBER - BigInt(n - 1), secrets[n - 1]!));
      await time('validate_holder', () => ch.validateHolder(ctx(), 'ln', keysId, { tx: h.toBytes(true, false), counterpartySignature: sig }));
      await time('release_secret', () => ch.releaseSecret(ctx(), 'ln', keysId, INITIAL_COMMITMENT_NUMBER - BigInt(n - 1)));
      times.round!.push(performance.now() - t);
      if (n % 100 === 0) log(`${n} rounds`);
    }
    const per = Object.fromEntries(Object.entries(times).map(([k, xs]) => [k, { ...stats(xs), p50_vs_fsync: round(pct(xs, 50) / fsync.p50_ms) }]));
    console.log(JSON.stringify({ benchmark: 'lightning-signer', rounds: ROUNDS, htlcs_per_commitment: HTLCS, floors: { fsync, raw_ecdsa_sign: stats(raw) }, calls: per, note: 'each call is one durable commit (state record to the backup directory, fsynced, then the row and its audit entry); a round is the four calls of one update of a channel, each way' }, null, 2));
  } finally {
    await v.close();
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
