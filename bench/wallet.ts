/**
 * HD derivation and PSBT signing, against a raw secp256k1 signature measured in the same run:
 *   - baseline: @noble/curves secp256k1 ECDSA over a 32-byte digest (low-S), the floor;
 *   - derive-and-sign at depth 5 (m/84'/0'/0'/0/i): without a cache, with a cold cache (cleared
 *     before each request), and with a warm cache (only the leaf is derived);
 *   - PSBT: analysis alone, and analysis + signing of a 2-input P2WPKH spend (previous
 *     transactions included, keys derived through a warm cache).
 *
 *   node --import tsx bench/wallet.ts [--seconds 2]
 *
 * One JSON document on stdout; `ratio_to_raw_sign` is each case's latency over the raw
 * signature's. Never exits non-zero because of a timing.
 */
import { cpus } from 'node:os';
import { randomBytes } from 'node:crypto';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { Transaction, p2wpkh, TEST_NETWORK } from '@scure/btc-signer';
import { wipe } from '../src/core/bytes.js';
import { DerivationCache, deriveChild, masterFingerprint, masterFromSeed } from '../src/wallet/hd.js';
import { analyzePsbt, deriveFromMaster, ownsKeyFromMaster, signPsbt, type PsbtContext } from '../src/wallet/psbt.js';
import { HARDENED_OFFSET as H } from '../src/wallet/paths.js';
import { pct, round } from './lib/floors.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('--seconds', 2);



/** Runs `fn(i)` in a closed loop for the time budget (after a short warm-up); latency in µs. */
function measure(name: string, fn: (i: number) => void, seconds = SECONDS) {
  for (let i = 0; i < 50; i++) fn(i);
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  let i = 0;
  const t0 = performance.now();
  while (performance.now() < end) {
    const t = performance.now();
    fn(i++);
    lat.push((performance.now() - t) * 1000);
  }
  const elapsed = (performance.now() - t0) / 1000;
  const r = { case: name, ops: i, ops_s: Math.round(i / elapsed), p50_us: round(pct(lat, 50)), p99_us: round(pct(lat, 99)) };
  process.stderr.write(`${JSON.stringify(r)}\n`);
  return r;
}

const master = masterFromSeed(new Uint8Array(randomBytes(32)), 'secp256k1');
const digest = new Uint8Array(randomBytes(32));
const path = (i: number) => [84 + H, H, H, 0, i % 100_000];

// Baseline: one key, sign a digest.
const rawKey = deriveChild(master, path(0)).privateKey;
const raw = measure('raw_secp256k1_sign', () => {
  secp256k1.sign(digest, rawKey, { prehash: false, lowS: true });
});

function deriveAndSign(cache?: { id: string; cache: DerivationCache }) {
  return (i: number) => {
    const k = deriveChild(master, path(i), cache);
    secp256k1.sign(digest, k.privateKey, { prehash: false, lowS: true });
    wipe(k.privateKey);
  };
}

const uncached = measure('derive_and_sign_depth5_no_cache', deriveAndSign());
const coldCache = new DerivationCache();
const cold = measure('derive_and_sign_depth5_cold_cache', (i) => {
  coldCache.clear();
  deriveAndSign({ id: 'bench', cache: coldCache })(i);
});
const warmCache = new DerivationCache();
deriveChild(master, path(0), { id: 'bench', cache: warmCache });
const levelsBefore = warmCache.stats.levelsDerived;
const warm = measure('derive_and_sign_depth5_warm_cache', deriveAndSign({ id: 'bench', cache: warmCache }));
const warmLevelsPerOp = (warmCache.stats.levelsDerived - levelsBefore) / (warm.ops + 50);

// PSBT: 2 P2WPKH inputs of ours (with their previous transactions), one payment, one change.
const fp = masterFingerprint(master);
function p2wpkhAt(p: number[]) {
  const pub = deriveChild(master, p).publicKey;
  return { pub, script: p2wpkh(pub, TEST_NETWORK).script };
}
const tx = new Transaction();
for (let n = 0; n < 2; n++) {
  const p = [84 + H, 1 + H, H, 0, n];
  const { pub, script } = p2wpkhAt(p);
  const prev = new Transaction({ allowUnknownOutputs: true });
  prev.addInput({ txid: new Uint8Array(randomBytes(32)), index: 0, finalScriptSig: new Uint8Array(0) });
  prev.addOutput({ script, amount: 100_000n });
  tx.addInput({
    txid: prev.id,
    index: 0,
    nonWitnessUtxo: prev.toBytes(true, true),
    witnessUtxo: { script, amount: 100_000n },
    bip32Derivation: [[pub, { fingerprint: fp, path: p }]],
  });
}
tx.addOutput({ script: p2wpkh(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true), TEST_NETWORK).script, amount: 150_000n });
const change = p2wpkhAt([84 + H, 1 + H, H, 1, 0]);
tx.addOutput({ script: change.script, amount: 49_000n, bip32Derivation: [[change.pub, { fingerprint: fp, path: [84 + H, 1 + H, H, 1, 0] }]] });
const psbt = tx.toPSBT();

const psbtCache = { id: 'bench-psbt', cache: new DerivationCache() };
const ctx: PsbtContext = { network: 'testnet', ownsKey: ownsKeyFromMaster(master, psbtCache) };
const derive = deriveFromMaster(master, psbtCache);
const check = signPsbt(psbt, ctx, derive);
if (check.signedInputs.length !== 2 || check.analysis.fee !== 1_000n) throw new Error('bench PSBT did not sign as expected');

const analyze = measure('psbt_analyze_2in_p2wpkh', () => {
  analyzePsbt(psbt, ctx);
});
const sign = measure('psbt_analyze_and_sign_2in_p2wpkh', () => {
  signPsbt(psbt, ctx, derive);
});

const ratio = (r: { p50_us: number }) => round(r.p50_us / raw.p50_us);
console.log(
  JSON.stringify(
    {
      machine: { cpus: cpus().length, node: process.version },
      baseline: { raw_secp256k1_sign_ops_s: raw.ops_s, p50_us: raw.p50_us },
      derive_and_sign_depth5: {
        no_cache: { ...uncached, ratio_to_raw_sign: ratio(uncached) },
        cold_cache: { ...cold, ratio_to_raw_sign: ratio(cold) },
        warm_cache: { ...warm, ratio_to_raw_sign: ratio(warm), levels_derived_per_op: round(warmLevelsPerOp) },
        warm_vs_cold_speedup: round(cold.p50_us / warm.p50_us),
      },
      psbt_2in_p2wpkh: {
        analyze: { ...analyze, ratio_to_raw_sign: ratio(analyze) },
        analyze_and_sign: { ...sign, ratio_to_raw_sign: ratio(sign), psbts_s: sign.ops_s, signatures_s: sign.ops_s * 2 },
      },
    },
    null,
    2,
  ),
);
