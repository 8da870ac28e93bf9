/**
 * Bitcoin test transactions built with bitcoinjs-lib (an independent implementation), for the
 * wallet policy tests.
 */
import * as bitcoin from 'bitcoinjs-lib';
import * as ecc from '@bitcoinerlab/secp256k1';
import { deriveChild, masterFingerprint, masterFromSeed, seedFromMnemonic } from '../../src/wallet/hd.js';

bitcoin.initEccLib(ecc);
export const network = bitcoin.networks.regtest;

/**
 * A PSBT spending one P2WPKH output of `value` sats paid to the HD child at `path` of the
 * mnemonic's master (with its BIP32 derivation field), to a foreign address for `pay` sats;
 * the rest is fee, or with `change` some of it back to the HD child at its path (with its
 * BIP32 derivation, so the vault counts it as change). `seed` makes each previous
 * transaction distinct. Built with bitcoinjs-lib.
 */
export function hdSpend(mnemonic: string, path: string, seed: number, value: bigint, pay: bigint, change?: { path: string; value: bigint }): bitcoin.Psbt {
  const master = masterFromSeed(seedFromMnemonic(mnemonic), 'secp256k1');
  const fp = masterFingerprint(master);
  const pub = deriveChild(master, path).publicKey;
  const ours = bitcoin.payments.p2wpkh({ pubkey: pub, network });
  const prev = new bitcoin.Transaction();
  prev.addInput(new Uint8Array(32).fill(seed), 0);
  prev.addOutput(ours.output!, value);
  const psbt = new bitcoin.Psbt({ network });
  const fpBytes = Uint8Array.of(fp >>> 24, (fp >>> 16) & 0xff, (fp >>> 8) & 0xff, fp & 0xff);
  psbt.addInput({ hash: prev.getId(), index: 0, nonWitnessUtxo: prev.toBuffer(), witnessUtxo: { script: ours.output!, value }, bip32Derivation: [{ masterFingerprint: fpBytes, path, pubkey: pub }] });
  psbt.addOutput({ address: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080', value: pay });
  if (change) {
    const back = deriveChild(master, change.path).publicKey;
    psbt.addOutput({ script: bitcoin.payments.p2wpkh({ pubkey: back, network }).output!, value: change.value, bip32Derivation: [{ masterFingerprint: fpBytes, path: change.path, pubkey: back }] });
  }
  return psbt;
}

