/**
 * `custos tor`: a relay's master identity key in the vault, and the files a relay run with
 * `OfflineMasterKey 1` reads from its keys directory: a fresh medium-term signing key (made
 * here, on the relay host; its secret never goes to the vault) and its type-4 certificate,
 * signed by the master in the vault.
 */
import { Command, Option } from 'commander';
import { closeSync, constants, existsSync, lstatSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync, chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CustosError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import { clientFrom, out, printKey, readInput, withApi } from '../common.js';

/** `30d`, `12h`, `2w`: a whole number of hours. */
export function parseHours(s: string, what: string): number {
  const m = /^([1-9][0-9]{0,5})([hdw])$/.exec(String(s).trim());
  if (!m) throw new CustosError('bad_request', `${what} is a whole number of hours, days or weeks: 12h, 30d, 2w (not ${String(s).slice(0, 20)}).`);
  return Number(m[1]) * { h: 1, d: 24, w: 168 }[m[2] as 'h' | 'd' | 'w'];
}

export function registerTor(program: Command): void {
  const tor = program.command('tor').description("Tor: a relay's master identity key in the vault, and the signing key and certificate a relay with OfflineMasterKey 1 reads");

  withApi(
    tor
      .command('relay-master')
      .description("Make a relay master identity key in the vault, or import a relay's ed25519_master_id_secret_key (it then signs only signing certificates)")
      .requiredOption('--label <label>', 'the key label')
      .addOption(new Option('--create', 'make a new master key in the vault').conflicts('import'))
      .option('--import <file>', "a relay's ed25519_master_id_secret_key (unencrypted: `tor --keygen --newpass` with an empty passphrase first)")
      .option('--max-lifetime <duration>', 'the longest signing certificate it issues: 12h, 30d, 2w', '30d'),
  ).action(async (o) => {
    const max = parseHours(o.maxLifetime, '--max-lifetime');
    const client = clientFrom(o);
    if (!o.create && !o.import) throw new CustosError('bad_request', 'Give --create (a new master key) or --import <ed25519_master_id_secret_key>.');
    let k;
    if (o.import) {
      const file = readInput(o.import);
      try {
        k = await client.torImportRelayMaster({ label: o.label, file, max_lifetime_hours: max });
      } finally {
        wipe(file);
      }
    } else {
      k = await client.torCreateRelayMaster({ label: o.label, max_lifetime_hours: max });
    }
    printKey(k, !!o.json);
    if (!o.json) out(`Relay ed25519 identity: ${k.public_key.raw.replace(/=+$/, '')}\nNow, on the relay: custos tor relay-keys --key ${k.label} --out <DataDirectory>/keys, and OfflineMasterKey 1 in its torrc.${o.import ? '\nThen move the relay\'s ed25519_master_id_secret_key somewhere offline (or destroy it): the vault holds the master now.' : ''}`);
  });

  withApi(
    tor
      .command('relay-keys')
      .description("Issue a fresh medium-term signing key and its certificate (signed by the master in the vault) into a relay's keys directory; with --renew-before, only when the current one is that close to expiring (for a timer)")
      .requiredOption('--key <key>', 'the relay master key in the vault')
      .requiredOption('--out <dir>', "the relay's keys directory (<DataDirectory>/keys)")
      .option('--lifetime <duration>', 'how long the certificate is valid: 12h, 30d, 2w', '30d')
      .option('--renew-before <duration>', 'do nothing while the current certificate is valid for longer than this'),
  ).action(async (o) => {
    const lifetime = parseHours(o.lifetime, '--lifetime');
    const renewBefore = o.renewBefore ? parseHours(o.renewBefore, '--renew-before') : undefined;
    const client = clientFrom(o);
    const master = await client.getKey(o.key);
    const masterPublic = Uint8Array.from(Buffer.from(master.public_key.raw, 'base64'));
    if (!existsSync(o.out)) mkdirSync(o.out, { recursive: true, mode: 0o700 });
    if (lstatSync(o.out).isSymbolicLink() || !statSync(o.out).isDirectory()) throw new CustosError('bad_request', `${o.out} is not a directory (a symbolic link is refused: give the real path).`);
    chmodSync(o.out, 0o700);
    // One run at a time per directory (a timer and an operator at once would interleave the files).
    const lock = join(o.out, '.custos-relay-keys.lock');
    const takeLock = () => openSync(lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    let lockFd: number;
    try {
      lockFd = takeLock();
    } catch {
      // A lock left by a run that died (its process is gone) is taken over; a live one is not.
      let holder = NaN;
      try {
        if (lstatSync(lock).isFile() && lstatSync(lock).size < 32) holder = Number(readFileSync(lock, 'utf8').trim());
      } catch {
        // unreadable: treated as held
      }
      let alive = true;
      if (Number.isInteger(holder) && holder > 0) {
        try {
          process.kill(holder, 0);
        } catch (e) {
          alive = (e as NodeJS.ErrnoException).code !== 'ESRCH';
        }
      }
      if (alive) throw new CustosError('conflict', `Another custos tor relay-keys (pid ${Number.isNaN(holder) ? '?' : holder}) is writing ${o.out}; if none runs, remove ${lock}.`);
      unlinkSync(lock);
      lockFd = takeLock();
    }
    writeSync(lockFd, `${process.pid}\n`);
    try {
      // (The certificate code is loaded only here, not with the command list.)
      const { issue } = await import('./tor-relay-keys.js');
      await issue(o, renewBefore, client, masterPublic, lifetime);
    } finally {
      closeSync(lockFd);
      unlinkSync(lock);
    }
  });

  withApi(
    tor
      .command('onion-service')
      .description("Make an onion service's identity key K_hs_id in the vault, or import its hs_ed25519_secret_key: it then signs only as its blinded keys, and never leaves")
      .requiredOption('--label <label>', 'the key label')
      .addOption(new Option('--create', 'make a new identity key in the vault').conflicts('import'))
      .option('--import <file>', "an onion service's hs_ed25519_secret_key"),
  ).action(async (o) => {
    const client = clientFrom(o);
    if (!o.create && !o.import) throw new CustosError('bad_request', 'Give --create (a new identity key) or --import <hs_ed25519_secret_key>.');
    let k;
    if (o.import) {
      const file = readInput(o.import);
      try {
        k = await client.torImportOnionService({ label: o.label, file });
      } finally {
        wipe(file);
      }
    } else k = await client.torCreateOnionService({ label: o.label });
    const info = await client.torOnion(k.label);
    out(o.json ? JSON.stringify({ key: k, ...info }) : `${k.label}: ${info.address}\n  blinded key for period ${info.period_num}: ${info.blinded_public_key}${o.import ? "\nMove the service's hs_ed25519_secret_key offline (or destroy it): the vault holds the identity now." : ''}`);
  });

  withApi(
    tor
      .command('onion-info')
      .description("An onion service's address, and the blinded public key and subcredential of a time period")
      .argument('<key>', 'the onion-service key')
      .option('--period <n>', 'the time period number (default: the current one)')
      .option('--period-length <minutes>', 'the time period length (default 1440)'),
  ).action(async (ref: string, o) => {
    const info = await clientFrom(o).torOnion(ref, { ...(o.period !== undefined ? { num: Number(o.period) } : {}), ...(o.periodLength !== undefined ? { length: Number(o.periodLength) } : {}) });
    out(o.json ? JSON.stringify(info) : `${info.address}\n  period ${info.period_num} (${info.period_length} min): blinded key ${info.blinded_public_key}\n  subcredential ${info.subcredential}`);
  });
}
