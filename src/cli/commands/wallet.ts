/** HD keys and PSBTs, over the HTTP API: `keys create-hd`, `keys xpub`, `sign-psbt`. */
import { Command, Option } from 'commander';
import { writeFileSync } from 'node:fs';
import { base64ToBytes } from '../../core/bytes.js';
import { clientFrom, out, printKey, readInput, withApi } from '../common.js';

export function registerWallet(program: Command): void {
  // `keys create-hd` and `keys xpub` belong to the keys group, registered before this one.
  const keys = program.commands.find((c) => c.name() === 'keys')!;
  withApi(
    keys
      .command('create-hd')
      .description('Create an HD master key (BIP32 secp256k1 / SLIP-10 ed25519): children are derived on demand, never stored')
      .requiredOption('--label <label>', 'unique label')
      .addOption(new Option('--curve <curve>', 'secp256k1 (BIP32) or ed25519 (SLIP-10)').choices(['secp256k1', 'ed25519']).default('secp256k1'))
      .option('--mnemonic-file <file>', 'a BIP39 mnemonic to import (English); else a new random seed')
      .option('--passphrase-env <var>', 'BIP39 passphrase from this environment variable')
      .option('--xprv-file <file>', 'a master xprv/tprv to import')
      .option('--allowed-path <prefix...>', "subtrees the key may sign under, e.g. m/84'/0'")
      .option('--tag <tag...>', 'policy tags; fixed at creation')
      .addOption(new Option('--purpose <purpose>', 'bitcoin (PSBTs and children by path; default for secp256k1), general (raw payloads by path; default for ed25519), or lightning (a Lightning node seed: state records and the hsmd hook)').choices(['bitcoin', 'general', 'lightning'])),
  ).action(async (o) => {
    const text = (f?: string) => (f ? Buffer.from(readInput(f)).toString('utf8').trim().replace(/\s+/g, ' ') : undefined);
    const k = await clientFrom(o).createHdKey({
      label: o.label,
      curve: o.curve,
      ...(o.mnemonicFile ? { mnemonic: text(o.mnemonicFile) } : {}),
      ...(o.passphraseEnv ? { passphrase: process.env[o.passphraseEnv] ?? '' } : {}),
      ...(o.xprvFile ? { xprv: text(o.xprvFile) } : {}),
      ...(o.purpose ? { purpose: o.purpose } : {}),
      ...(o.allowedPath ? { allowed_paths: o.allowedPath } : {}),
      ...(o.tag ? { tags: o.tag } : {}),
    });
    printKey(k, !!o.json);
  });
  withApi(
    keys
      .command('xpub')
      .description('Public key and xpub of an HD key at a path (hardened paths too)')
      .argument('<key>', 'key id or label')
      .requiredOption('--path <path>', "derivation path, e.g. m/84'/0'/0'")
      .addOption(new Option('--network <net>', 'xpub version').choices(['mainnet', 'testnet']).default('mainnet')),
  ).action(async (ref: string, o) => {
    const r = await clientFrom(o).hdPublic(ref, o.path, o.network);
    out(o.json ? JSON.stringify(r) : `${r.path}  ${r.public_key_hex}${r.xpub ? `\n${r.xpub}` : ''}`);
  });

  withApi(
    program
      .command('sign-psbt')
      .description('Sign the inputs of a PSBT that belong to an HD key, after policy; prints the signed PSBT in base64')
      .requiredOption('--key <key>', 'HD key id or label')
      .requiredOption('--in <file>', 'the PSBT, binary or base64 (- for stdin)')
      .addOption(new Option('--network <net>', 'bitcoin network').choices(['bitcoin', 'testnet', 'regtest']).default('bitcoin'))
      .option('--out <file>', 'write the signed PSBT (binary) here'),
  ).action(async (o) => {
    let bytes = readInput(o.in);
    const text = Buffer.from(bytes).toString('utf8').trim();
    if (/^[A-Za-z0-9+/=\s]+$/.test(text) && text.startsWith('cHNidP')) bytes = base64ToBytes(text.replace(/\s+/g, ''), 'PSBT');
    const r = await clientFrom(o).signPsbt(o.key, bytes, o.network);
    if (o.out) writeFileSync(o.out, Buffer.from(r.psbt, 'base64'));
    if (o.json) return out(JSON.stringify(r, null, 2));
    process.stderr.write(`custos: signed inputs ${r.signed_inputs.join(', ')} of ${r.txid}: sends ${r.sent_externally_sats} sats, fee ${r.fee_sats}, change ${r.change_sats}\n`);
    if (!o.out) out(r.psbt);
  });

}
