/**
 * `custos lightning`: a Lightning node's key over the HTTP API (info), and the restore of
 * every object's latest state into a vault from a backup and the node's seed alone.
 */
import { Command, Option } from 'commander';
import { CustosError, isCustosError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import { HistoryCheck, openBackupSource } from '../../lightning/backup.js';
import { nodeKeys } from '../../lightning/keys.js';
import { recordVerifier } from '../../crypto/lightning-record.js';
import { masterFromSeed, seedFromMnemonic, wipeMaster } from '../../wallet/hd.js';
import { clientFrom, out, readInput, withApi } from '../common.js';
import { EXIT } from '../exit.js';

/** Records per restore request. */
const BATCH = 200;

export function registerLightning(program: Command): void {
  const ln = program.command('lightning').description("A Lightning node's key: state records, backups, restore, the hsmd hook");

  withApi(ln.command('info').description("A node key's record and backup public keys, its object count, and where its records are backed up").argument('<key>', 'the node key (made with keys create-hd --purpose lightning)')).action(async (ref: string, o) => {
    const r = await clientFrom(o).lightningInfo(ref);
    out(o.json ? JSON.stringify(r, null, 2) : `${r.key}: node ${r.node}\n  objects: ${r.objects}\n  backup: ${r.backup ?? 'none (records only in the vault)'}\n  backup key: ${r.backup_public_key}`);
  });

  withApi(
    ln
      .command('restore')
      .description("Rebuild every object's latest state into this vault from a backup and the node's seed: every record's signature, version and chain are checked first")
      .requiredOption('--backup <where>', 'the backup: a directory (as [lightning] backup wrote it) or a postgresql:// URL')
      .requiredOption('--mnemonic-file <file>', "the node's BIP39 mnemonic (- for stdin)")
      .option('--passphrase-env <var>', 'its BIP39 passphrase, from this environment variable')
      .requiredOption('--label <label>', 'the node key to restore into (created from the mnemonic if absent)')
      .addOption(new Option('--check-only', 'check the backup and stop: nothing is sent to the vault')),
  ).action(async (o) => {
    const words = Buffer.from(readInput(o.mnemonicFile));
    const seed = seedFromMnemonic(words.toString('utf8').trim().replace(/\s+/g, ' '), o.passphraseEnv ? (process.env[o.passphraseEnv] ?? '') : '');
    let keys;
    try {
      const master = masterFromSeed(seed, 'secp256k1');
      try {
        keys = nodeKeys(master);
      } finally {
        wipeMaster(master);
      }
    } finally {
      wipe(seed);
    }
    // 1. The whole backup is checked before anything is restored.
    const verifier = recordVerifier(keys.recordPublic);
    const source = await openBackupSource(o.backup);
    const latest: Uint8Array[] = [];
    let records = 0;
    const tty = process.stderr.isTTY;
    try {
      for await (const obj of source.objects(keys.node)) {
        const check = new HistoryCheck(verifier, obj.objectId);
        for await (const r of obj.records) check.add(r.filedAs, r.bytes);
        const h = check.result();
        latest.push(h.bytes);
        records += h.count;
        if (tty && latest.length % 1000 === 0) process.stderr.write(`\rcustos: checked ${latest.length} objects (${records} records)`);
      }
    } catch (e) {
      if (isCustosError(e) && (e.tag ?? '').startsWith('backup_')) {
        process.stderr.write(`${tty ? '\n' : ''}custos: ${e.message} Nothing was restored.\n`);
        process.exitCode = EXIT.checkFailed;
        return;
      }
      throw e;
    } finally {
      await source.close();
    }
    if (tty) process.stderr.write('\n');
    const summary = { node: keys.node, objects: latest.length, records, applied: 0, kept: 0 };
    if (o.checkOnly) return out(o.json ? JSON.stringify(summary) : `backup sound: ${latest.length} objects, ${records} records, node ${keys.node}`);
    // 2. The node key, from the same mnemonic (or the one already there, if it is this node's).
    const client = clientFrom(o);
    let info = await client.lightningInfo(o.label).catch((e: unknown) => {
      if (isCustosError(e) && (e.code === 'key_not_found' || e.code === 'not_found')) return null;
      throw e;
    });
    if (!info) {
      await client.createHdKey({ label: o.label, curve: 'secp256k1', mnemonic: words.toString('utf8').trim().replace(/\s+/g, ' '), purpose: 'lightning', ...(o.passphraseEnv ? { passphrase: process.env[o.passphraseEnv] ?? '' } : {}) });
      info = await client.lightningInfo(o.label);
    }
    wipe(words);
    if (info.node !== keys.node) throw new CustosError('conflict', `The key ${o.label} in the vault is another node's (${info.node}), not this mnemonic's (${keys.node}): restore into another label.`);
    // 3. Each object's latest record, newer than what the vault holds.
    for (let i = 0; i < latest.length; i += BATCH) {
      const r = await client.lightningRestore(o.label, latest.slice(i, i + BATCH));
      summary.applied += r.applied;
      summary.kept += r.kept;
      if (tty) process.stderr.write(`\rcustos: restored ${Math.min(i + BATCH, latest.length)} of ${latest.length} objects`);
    }
    if (tty) process.stderr.write('\n');
    out(o.json ? JSON.stringify(summary) : `restored ${summary.applied} objects (${summary.kept} already as new or newer) from ${records} records into ${o.label}`);
  });
}
