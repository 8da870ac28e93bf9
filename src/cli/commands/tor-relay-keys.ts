/**
 * What `custos tor relay-keys` writes into a relay's keys directory: a fresh medium-term
 * signing key and the certificate the master in the vault signs for it, each file written
 * whole and fsynced; and whether the certificate there is still sound.
 */
import { closeSync, constants, existsSync, fchmodSync, fsyncSync, lstatSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { CustosError } from '../../core/errors.js';
import { wipe } from '../../core/bytes.js';
import { fsyncDir } from '../../core/files.js';
import { decodeCert, decodeTagged, encodeTagged, CERT_TYPE_SIGNING } from '../../crypto/tor-cert.js';
import { prepareSigner } from '../../crypto/algorithms.js';
import type { CustosClient } from '../../client/client.js';
import { out } from '../common.js';

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

/** Writes a fresh signing key and its certificate, unless (`renewBefore` hours) the current one is still good for longer. */
export async function issue(o: { key: string; out: string; json?: boolean }, renewBefore: number | undefined, client: CustosClient, masterPublic: Uint8Array, lifetime: number): Promise<void> {
  if (renewBefore !== undefined) {
    const within = renewBefore;
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
