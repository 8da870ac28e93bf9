/**
 * `custos tor`: a relay's master identity key in the vault, and the files a relay run with
 * `OfflineMasterKey 1` reads from its keys directory: a fresh medium-term signing key (made
 * here, on the relay host; its secret never goes to the vault) and its type-4 certificate,
 * signed by the master in the vault.
 */
import { fsyncDir } from '../../core/files.js';
import { Command, Option } from 'commander';
import { closeSync, constants, existsSync, fchmodSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync, chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { CustosError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import { decodeCert, decodeTagged, encodeTagged, CERT_TYPE_SIGNING } from '../../crypto/tor-cert.js';
import { prepareSigner } from '../../crypto/algorithms.js';
import { clientFrom, out, printKey, readInput, withApi } from '../common.js';

/** `30d`, `12h`, `2w`: a whole number of hours. */
export function parseHours(s: string, what: string): number {
  const m = /^([1-9][0-9]{0,5})([hdw])$/.exec(String(s).trim());
  if (!m) throw new CustosError('bad_request', `${what} is a whole number of hours, days or weeks: 12h, 30d, 2w (not ${String(s).slice(0, 20)}).`);
  return Number(m[1]) * { h: 1, d: 24, w: 168 }[m[2] as 'h' | 'd' | 'w'];
}

/**
 * Writes a file whole (0600), fsynced, then renamed over the old one. The temporary file has a
 * random name and is created exclusively, never through a link (O_EXCL | O_NOFOLLOW), so
 * nothing planted in the directory can receive the secret or loosen its mode.
 */
function writeAtomic(dir: string, name: string, bytes: Uint8Array): void {
  const tmp = join(dir, `.${name}.${randomBytes(8).toString('hex')}.tmp`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, name));
}


/** The certificate in a keys directory and when it expires, if there is a sound one for `master`. */
function currentCert(dir: string, master: Uint8Array): { expires: Date } | null {
  const path = join(dir, 'ed25519_signing_cert');
  if (!existsSync(path)) return null;
  try {
    if (!lstatSync(path).isFile() || lstatSync(path).size > 4096) return null; // (a FIFO or a link is not read)
    const c = decodeCert(decodeTagged(readFileSync(path), 'ed25519v1-cert', 'type4').body);
    if (c.certType !== CERT_TYPE_SIGNING || !c.signingKey || Buffer.compare(Buffer.from(c.signingKey), Buffer.from(master)) !== 0) return null;
    if (!ed25519.verify(c.signature, c.signed, master)) return null;
    // The certificate must be for the signing key on disk (a run stopped between the files leaves them apart).
    const secretPath = join(dir, 'ed25519_signing_secret_key');
    if (!lstatSync(secretPath).isFile() || lstatSync(secretPath).size !== 96) return null;
    const secret = decodeTagged(readFileSync(secretPath), 'ed25519v1-secret', 'type4').body;
    const signer = prepareSigner('ed25519-expanded', secret);
    try {
      const probe = new Uint8Array(32);
      if (!ed25519.verify(signer.sign({ kind: 'message', bytes: probe }, {}).signature, probe, c.certifiedKey)) return null;
    } finally {
      signer.destroy();
      wipe(secret);
    }
    return { expires: new Date(c.expiresHours * 3_600_000) };
  } catch {
    return null;
  }
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
      await issue(o, client, masterPublic, lifetime);
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

async function issue(o: { key: string; out: string; renewBefore?: string; json?: boolean }, client: ReturnType<typeof clientFrom>, masterPublic: Uint8Array, lifetime: number): Promise<void> {
  if (o.renewBefore) {
    const within = parseHours(o.renewBefore, '--renew-before');
    const cur = currentCert(o.out, masterPublic);
    if (cur && cur.expires.getTime() > Date.now() + within * 3_600_000) {
      out(o.json ? JSON.stringify({ renewed: false, expires_at: cur.expires.toISOString() }) : `The signing certificate is valid until ${cur.expires.toISOString()}: nothing to do.`);
      return;
    }
  }
  // The medium-term key: made here, stored only in the relay's keys directory (tor keeps the expanded form a‖RH).
  const seed: Uint8Array = randomBytes(32);
  const h: Uint8Array = createHash('sha512').update(seed).digest(); // wiped below (no copy made)
  const expanded = new Uint8Array(64);
  try {
    expanded.set(h);
    expanded[0]! &= 248;
    expanded[31]! &= 63;
    expanded[31]! |= 64;
    const signingPublic = ed25519.getPublicKey(seed);
    const r = await client.torRelayCert(o.key, { signing_public_key: signingPublic, lifetime_hours: lifetime });
    const cert = Uint8Array.from(Buffer.from(r.cert, 'base64'));
    // Checked before anything is written: the vault's certificate is for this key, by this master, and verifies.
    const c = decodeCert(cert);
    if (c.certType !== CERT_TYPE_SIGNING || Buffer.compare(Buffer.from(c.certifiedKey), Buffer.from(signingPublic)) !== 0 || !c.signingKey || Buffer.compare(Buffer.from(c.signingKey), Buffer.from(masterPublic)) !== 0 || !ed25519.verify(c.signature, c.signed, masterPublic)) {
      throw new CustosError('internal', 'The certificate the vault returned is not for this signing key and master: nothing was written.');
    }
    writeAtomic(o.out, 'ed25519_master_id_public_key', encodeTagged('ed25519v1-public', 'type0', masterPublic));
    writeAtomic(o.out, 'ed25519_signing_secret_key', encodeTagged('ed25519v1-secret', 'type4', expanded));
    writeAtomic(o.out, 'ed25519_signing_cert', encodeTagged('ed25519v1-cert', 'type4', cert));
    fsyncDir(o.out);
    const summary = { renewed: true, expires_at: r.expires_at, master_public_key: r.master_public_key, signing_public_key: Buffer.from(signingPublic).toString('hex'), dir: o.out };
    out(o.json ? JSON.stringify(summary) : `Wrote a signing key and its certificate (valid until ${r.expires_at}) to ${o.out}.\nTell tor to load them: kill -HUP <tor pid> (or restart it). Renew before that date: custos tor relay-keys --key ${o.key} --out ${o.out} --renew-before 7d (from a daily timer).`);
  } finally {
    wipe(seed, h, expanded);
  }
}
