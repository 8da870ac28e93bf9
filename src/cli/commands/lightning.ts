/**
 * `custos lightning`: a Lightning node's key over the HTTP API (info), and the restore of
 * every object's latest state into a vault from a backup and the node's seed alone.
 */
import { Command, Option } from 'commander';
import { CustosError, isCustosError } from '../../core/errors.js';
import { bytesToHex, wipe } from '../../core/bytes.js';
import { clientFrom, out, readInput, withApi } from '../common.js';
import { EXIT } from '../exit.js';


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
      .addOption(new Option('--check-only', 'check the backup and stop: nothing is sent to the vault'))
      .addOption(new Option('--partial', 'restore the objects whose history checks out, and list the others (exit 1); without it, one refused object stops the restore before anything is sent'))
      .option('--prefer <object=record...>', 'where the backup holds two newest records of an object and cannot tell which was committed: the one the node holds (its record hash, or the first 16 hex digits the refusal names)'),
  ).action(async (o) => {
    const read = readInput(o.mnemonicFile);
    const words = Buffer.from(read.buffer, read.byteOffset, read.byteLength);
    try {
      await restore(o, words);
    } finally {
      words.fill(0);
    }
  });
}

/** Requests carry at most this many record bytes (base64 makes it 4/3; the route takes 16 MiB)... */
const BATCH_BYTES = 8 * 1024 * 1024;
/** ...and at most this many records (the route takes 1,000). */
const BATCH_RECORDS = 500;

async function restore(o: { backup: string; passphraseEnv?: string; label: string; checkOnly?: boolean; partial?: boolean; prefer?: string[]; json?: boolean } & Parameters<typeof clientFrom>[0], words: Buffer): Promise<void> {
  // Loaded here, not with the command list: only a restore needs the wallet and record code.
  const [{ HistoryCheck, openBackupSource }, { nodeKeys }, { recordHash, recordVerifier }, { masterFromSeed, seedFromMnemonic, wipeMaster }] = await Promise.all([
    import('../../lightning/backup.js'),
    import('../../lightning/keys.js'),
    import('../../crypto/lightning-record.js'),
    import('../../wallet/hd.js'),
  ]);
  const prefer = new Map<string, string>();
  for (const p of o.prefer ?? []) {
    const m = /^([^=]{1,128})=([0-9a-f]{16,64})$/.exec(p);
    if (!m) throw new CustosError('bad_request', `--prefer takes object=record (the record's hash, 16 to 64 hex digits): ${p.slice(0, 80)}`);
    prefer.set(m[1]!, m[2]!);
  }
  const mnemonic = () => words.toString('utf8').trim().replace(/\s+/g, ' ');
  const seed = seedFromMnemonic(mnemonic(), o.passphraseEnv ? (process.env[o.passphraseEnv] ?? '') : '');
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
  const verifier = recordVerifier(keys.recordPublic);
  const tty = process.stderr.isTTY;
  // 1. The whole backup is checked before anything is restored; only each object's latest
  //    version and hash are kept (a backup of 100,000 channels is never in memory).
  const source = await openBackupSource(o.backup);
  const latest: Array<{ objectId: string; version: bigint; hash: string }> = [];
  const summary = { node: keys.node, objects: 0, records: 0, side_branches: 0, applied: 0, kept: 0, refused: [] as Array<{ object: string; version: string; code: string; reason: string }> };
  try {
    try {
      for await (const obj of source.objects(keys.node)) {
        const check = new HistoryCheck(verifier, obj.objectId);
        let h;
        try {
          for await (const r of obj.records) check.add(r.filedAs, r.bytes, r.hashPrefix);
          h = check.result(prefer.get(obj.objectId));
        } catch (e) {
          if (!o.partial || !isCustosError(e) || !(e.tag ?? '').startsWith('backup_')) throw e;
          // --partial: this object is listed, not restored; the others go on.
          summary.refused.push({ object: obj.objectId, version: '', code: e.fullCode, reason: e.message });
          continue;
        }
        latest.push({ objectId: obj.objectId, version: h.latest.version, hash: bytesToHex(recordHash(h.bytes)) });
        summary.records += h.count;
        summary.side_branches += h.sideBranches;
        if (tty && latest.length % 1000 === 0) process.stderr.write(`\rcustos: checked ${latest.length} objects (${summary.records} records)`);
      }
    } catch (e) {
      if (isCustosError(e) && (e.tag ?? '').startsWith('backup_')) {
        process.stderr.write(`${tty ? '\n' : ''}custos: ${e.message} Nothing was restored.\n`);
        process.exitCode = EXIT.checkFailed;
        return;
      }
      throw e;
    }
    if (tty) process.stderr.write('\n');
    summary.objects = latest.length;
    if (o.checkOnly) {
      out(o.json ? JSON.stringify(summary) : `${summary.refused.length ? `backup checked: ${summary.refused.length} objects refused, ` : 'backup sound: '}${latest.length} objects, ${summary.records} records${summary.side_branches ? ` (${summary.side_branches} left out: writes whose commit failed)` : ''}, node ${keys.node}`);
      for (const f of summary.refused.slice(0, 20)) process.stderr.write(`custos: ${f.reason}\n`);
      if (summary.refused.length) process.exitCode = EXIT.checkFailed;
      return;
    }
    // 2. The node key, from the same mnemonic (or the one already there, if it is this node's).
    const client = clientFrom(o);
    let info = await client.lightningInfo(o.label).catch((e: unknown) => {
      if (isCustosError(e) && (e.code === 'key_not_found' || e.code === 'not_found')) return null;
      throw e;
    });
    if (!info) {
      await client.createHdKey({ label: o.label, curve: 'secp256k1', mnemonic: mnemonic(), purpose: 'lightning', ...(o.passphraseEnv ? { passphrase: process.env[o.passphraseEnv] ?? '' } : {}) });
      info = await client.lightningInfo(o.label);
    }
    if (info.node !== keys.node) throw new CustosError('conflict', `The key ${o.label} in the vault is another node's (${info.node}), not this mnemonic's (${keys.node}): restore into another label.`);
    // 3. Each object's latest record, read again (and checked to be the one checked above),
    //    sent in requests of bounded size.
    let batch: Uint8Array[] = [];
    let bytes = 0;
    let sent = 0;
    const flush = async () => {
      if (!batch.length) return;
      const r = await client.lightningRestore(o.label, batch);
      summary.applied += r.applied;
      summary.kept += r.kept;
      summary.refused.push(...r.refused);
      sent += batch.length;
      batch = [];
      bytes = 0;
      if (tty) process.stderr.write(`\rcustos: restored ${sent} of ${latest.length} objects`);
    };
    for (const l of latest) {
      const record = await source.record(keys.node, l.objectId, l.version, l.hash.slice(0, 16));
      if (!record || bytesToHex(recordHash(record)) !== l.hash) throw new CustosError('conflict', `The backup changed while it was restored (object ${l.objectId}, version ${l.version}); ${sent} objects were restored. Run the restore again.`);
      if (bytes + record.length > BATCH_BYTES || batch.length >= BATCH_RECORDS) await flush();
      batch.push(record);
      bytes += record.length;
    }
    await flush();
    if (tty) process.stderr.write('\n');
    out(o.json ? JSON.stringify(summary) : `restored ${summary.applied} objects (${summary.kept} already as new or newer) from ${summary.records} records into ${o.label}`);
    if (summary.refused.length) {
      for (const f of summary.refused.slice(0, 20)) process.stderr.write(`custos: not restored: ${f.object}${f.version ? ` version ${f.version}` : ''}: ${f.reason}\n`);
      if (summary.refused.length > 20) process.stderr.write(`custos: ... and ${summary.refused.length - 20} more (--json lists them all)\n`);
      process.exitCode = EXIT.checkFailed;
    }
  } finally {
    await source.close();
  }
}
