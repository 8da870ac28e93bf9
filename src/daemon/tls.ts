/**
 * TLS for the HTTP API, with Node's own TLS (OpenSSL): the certificate chain and key from
 * `[api] tls_cert` / `tls_key`, checked before they are used (the key is the user's own and
 * private, the certificate is current and belongs to the key), TLS 1.2 at least with AEAD
 * suites and forward secrecy only, TLS 1.3 preferred. `reloadable` re-reads the files for
 * SIGHUP: new handshakes get the new certificate, connections already up keep theirs, so
 * nothing in flight fails.
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { constants as cryptoConstants, createPrivateKey, X509Certificate } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';
import { CustosError } from '../core/errors.js';

/**
 * TLS 1.2 suites: ECDHE with AES-GCM or ChaCha20-Poly1305 only (no CBC, no RSA key exchange,
 * no SHA-1 MACs). TLS 1.3's own suites are all AEAD and are kept at OpenSSL's defaults.
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

export interface TlsFiles {
  cert: string;
  key: string;
  /** Mutual TLS: the CA client certificates must chain to. */
  clientCa?: string;
}

/** The server's secure context options from its files; throws a sentence naming the file. */
export function loadTls(files: TlsFiles): SecureContextOptions & { fingerprint256: string; notAfter: string } {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new CustosError('config_invalid', `Cannot read the TLS ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}.`);
    }
  };
  const cert = read(files.cert, 'certificate');
  // The key is checked and read through one descriptor: no swap between the check and the read.
  let key: Buffer;
  let fd: number;
  try {
    fd = openSync(files.key, 'r');
  } catch (e) {
    throw new CustosError('config_invalid', `Cannot read the TLS key ${files.key}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}.`);
  }
  try {
    const st = fstatSync(fd);
    if ((st.mode & 0o077) !== 0 || (process.getuid && st.uid !== process.getuid() && st.uid !== 0)) {
      throw new CustosError('config_invalid', `The TLS key ${files.key} must be the user's own and private: chmod 600 ${files.key}${process.getuid && st.uid !== process.getuid() ? `; chown ${process.getuid()} ${files.key}` : ''}.`);
    }
    key = readFileSync(fd);
  } finally {
    closeSync(fd);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    key.fill(0);
    throw new CustosError('config_invalid', `${files.cert} is not a PEM certificate.`);
  }
  try {
    const k = createPrivateKey(key);
    if (!leaf.checkPrivateKey(k)) throw new CustosError('config_invalid', `The TLS key ${files.key} does not belong to the certificate ${files.cert}.`);
  } catch (e) {
    key.fill(0);
    if (e instanceof CustosError) throw e;
    throw new CustosError('config_invalid', `${files.key} is not a PEM private key (an encrypted key cannot be used: the daemon starts unattended).`);
  }
  let clientCa: Buffer | undefined;
  if (files.clientCa) {
    clientCa = read(files.clientCa, 'client CA');
    try {
      if (!new X509Certificate(clientCa).ca) throw new Error('not a CA');
    } catch {
      key.fill(0);
      throw new CustosError('config_invalid', `${files.clientCa} is not a PEM CA certificate (api.client_ca: the CA client certificates chain to).`);
    }
  }
  const now = Date.now();
  if (Date.parse(leaf.validTo) < now || Date.parse(leaf.validFrom) > now) {
    key.fill(0);
    throw new CustosError('config_invalid', `The TLS certificate ${files.cert} is not valid now (valid from ${leaf.validFrom} to ${leaf.validTo}); renew it (custos tls init makes a new one).`);
  }
  return {
    cert,
    key,
    // Mutual TLS: ask for a certificate and verify it against client_ca, but let the
    // connection up without one, so that the HTTP layer can say why it is refused (and
    // bearer tokens keep working); a certificate must also be bound to a principal.
    ...(clientCa ? { ca: clientCa, requestCert: true, rejectUnauthorized: false } : {}),
    // No renegotiation: a TLS 1.2 client could otherwise present a second certificate after a
    // verified one, and Node keeps `authorized` from the first handshake.
    secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
    minVersion: 'TLSv1.2',
    ciphers: TLS12_CIPHERS,
    honorCipherOrder: true,
    fingerprint256: leaf.fingerprint256,
    notAfter: leaf.validTo,
  };
}
