/**
 * Sealing by operator shares: the root key is sealed under a random unseal key, and the
 * unseal key is split into N Shamir shares of which any T rebuild it (the audited
 * `shamir-secret-sharing` package does the splitting; nothing here does field arithmetic).
 *
 * A share travels as one line of text an operator can paste or keep in a file:
 *
 *     custos-share-v1.<vault id>.<T>.<base64url share>.<check>
 *
 * `check` (8 hex digits of SHA-256 over the rest of the line) catches a mistyped or cut
 * line before it is used. The seal record keeps a commitment (SHA-256) to each current
 * share, so a share that is well-formed but wrong (from another vault, from before a
 * re-key, altered) is refused on arrival with one sentence that says nothing about which
 * bytes differ; a share's 33 random bytes make the commitment useless to a guesser.
 * Partial progress lives only in memory: a restart forgets the shares given so far.
 */
import { createHash, randomBytes } from 'node:crypto';
import { combine, split } from 'shamir-secret-sharing';
import { CustosError } from '../core/errors.js';
import { base64ToBytes, bytesToBase64, equalBytes, hexToBytes, utf8, wipe } from '../core/bytes.js';
import { open, seal } from '../crypto/aead.js';
import { sha256hex } from '../crypto/digest.js';

/** The part of a seal record that shares unlock: the root sealed under the unseal key. */
export interface SharesRecord {
  threshold: number;
  shares: number;
  /** XChaCha20-Poly1305 of the root key under the combined unseal key. */
  sealedRoot: string;
  /** SHA-256 commitments to the current shares, hex, in no particular order. */
  commitments: string[];
  /** When these shares were made (init or the last re-key). */
  createdAt: string;
}

const PREFIX = 'custos-share-v1';
const SHARE_BYTES = 33; // a 32-byte unseal key plus the x coordinate
const MAX_LINE = 200;

const rootAd = (vaultId: string, purpose: string) => utf8(`custos-root-v1\n${vaultId}\n${purpose}`);

function commitment(vaultId: string, share: Uint8Array): string {
  return createHash('sha256').update(utf8(`custos-share-commit-v1\n${vaultId}\n`)).update(share).digest('hex');
}

function checksum(body: string): string {
  return sha256hex(body).slice(0, 8);
}

export function encodeShare(vaultId: string, threshold: number, share: Uint8Array): string {
  const body = `${PREFIX}.${vaultId}.${threshold}.${Buffer.from(share).toString('base64url')}`;
  return `${body}.${checksum(body)}`;
}

export interface DecodedShare {
  vaultId: string;
  threshold: number;
  /** The share bytes; wipe when done. */
  bytes: Uint8Array;
}

const malformed = () =>
  new CustosError('invalid_share', 'That is not a Custos operator share: a share is one line starting "custos-share-v1.", as written by `custos init --shares` or `custos operator rekey`. Check that the whole line was copied.');

/** Parses a share line; a damaged line is refused before anything is combined. */
export function decodeShare(text: string): DecodedShare {
  const line = text.trim();
  if (line.length > MAX_LINE || !line.startsWith(`${PREFIX}.`)) throw malformed();
  const parts = line.split('.');
  if (parts.length !== 5) throw malformed();
  const [, vaultId, t, b64, check] = parts as [string, string, string, string, string];
  if (!/^[0-9a-f-]{36}$/.test(vaultId) || !/^[0-9]{1,3}$/.test(t) || !/^[A-Za-z0-9_-]{44}$/.test(b64) || !/^[0-9a-f]{8}$/.test(check)) throw malformed();
  const body = line.slice(0, line.length - check.length - 1);
  if (checksum(body) !== check) {
    throw new CustosError('invalid_share', 'The share line is damaged (its check digits do not match): it was mistyped or cut. Copy it again from the share file.');
  }
  const bytes = new Uint8Array(Buffer.from(b64, 'base64url'));
  if (bytes.length !== SHARE_BYTES || bytes[SHARE_BYTES - 1] === 0) throw malformed();
  const threshold = Number(t);
  if (threshold < 2 || threshold > 255) throw malformed();
  return { vaultId, threshold, bytes };
}

/** Makes a fresh unseal key, seals `root` under it, and splits it into share lines. */
export async function sealToShares(root: Uint8Array, vaultId: string, shares: number, threshold: number, purpose = 'shares'): Promise<{ record: SharesRecord; lines: string[] }> {
  if (!Number.isInteger(threshold) || !Number.isInteger(shares) || threshold < 2 || shares < threshold || shares > 32) {
    throw new CustosError('bad_request', 'Give 2 ≤ threshold ≤ shares ≤ 32 (a threshold of 1 would make every share the whole key; use a passphrase instead).');
  }
  const unsealKey = new Uint8Array(randomBytes(32));
  let parts: Uint8Array[] = [];
  try {
    parts = await split(unsealKey, shares, threshold);
    const record: SharesRecord = {
      threshold,
      shares,
      sealedRoot: bytesToBase64(seal(unsealKey, root, rootAd(vaultId, purpose))),
      commitments: parts.map((p) => commitment(vaultId, p)),
      createdAt: new Date().toISOString(),
    };
    return { record, lines: parts.map((p) => encodeShare(vaultId, threshold, p)) };
  } finally {
    wipe(unsealKey, ...parts);
  }
}

export function checkSharesRecord(r: unknown): r is SharesRecord {
  const x = r as SharesRecord;
  return (
    typeof x === 'object' && x !== null &&
    Number.isInteger(x.threshold) && Number.isInteger(x.shares) && x.threshold >= 2 && x.shares >= x.threshold && x.shares <= 32 &&
    typeof x.sealedRoot === 'string' && Array.isArray(x.commitments) && x.commitments.length === x.shares &&
    x.commitments.every((c) => typeof c === 'string' && /^[0-9a-f]{64}$/.test(c))
  );
}

export interface UnsealProgress {
  sealed: boolean;
  threshold: number;
  /** Distinct valid shares given since this process started. */
  progress: number;
}

/**
 * Collects shares until the threshold is reached, then yields the root key. Each share is
 * checked against the record's commitments on arrival; duplicates are ignored.
 */
export class ShareCollector {
  private readonly given: Uint8Array[] = [];

  constructor(private readonly record: SharesRecord, private readonly vaultId: string, private readonly purpose = 'shares') {}

  get progress(): UnsealProgress {
    return { sealed: true, threshold: this.record.threshold, progress: this.given.length };
  }

  /** Adds a share; returns the root key once `threshold` distinct shares are in, else null. */
  async add(line: string): Promise<Uint8Array | null> {
    const share = decodeShare(line);
    if (share.vaultId !== this.vaultId) {
      wipe(share.bytes);
      throw new CustosError('invalid_share', 'This share belongs to another vault (its vault id differs). Use a share made for this vault.');
    }
    const c = hexToBytes(commitment(this.vaultId, share.bytes), 'commitment');
    // Compare against every commitment in constant time per entry, without stopping early.
    let known = false;
    for (const k of this.record.commitments) known = equalBytes(hexToBytes(k, 'commitment'), c) || known;
    if (!known) {
      wipe(share.bytes);
      throw new CustosError('invalid_share', 'This share is not one of this vault\'s current shares (it was altered, or replaced by a re-key). Nothing was recorded; the shares given so far still count.');
    }
    if (this.given.some((g) => equalBytes(g, share.bytes))) {
      wipe(share.bytes);
      return null;
    }
    this.given.push(share.bytes);
    if (this.given.length < this.record.threshold) return null;
    let unsealKey: Uint8Array | undefined;
    try {
      unsealKey = await combine(this.given);
      const root = open(unsealKey, base64ToBytes(this.record.sealedRoot, 'sealed root key'), rootAd(this.vaultId, this.purpose));
      if (!root) throw new CustosError('database_corrupt', 'The shares are this vault\'s, but the sealed root key does not open with them: the seal record was altered. Restore the database from a backup.');
      return root;
    } finally {
      wipe(unsealKey);
      this.reset();
    }
  }

  /** Forgets every share given so far. */
  reset(): void {
    wipe(...this.given);
    this.given.length = 0;
  }
}

/** Rebuilds the root from share lines in one go (CLI re-key, tests). */
export async function rootFromShares(record: SharesRecord, vaultId: string, lines: string[], purpose = 'shares'): Promise<Uint8Array> {
  const c = new ShareCollector(record, vaultId, purpose);
  for (const l of lines) {
    const root = await c.add(l);
    if (root) return root;
  }
  c.reset();
  throw new CustosError('invalid_share', `These shares are not enough: ${record.threshold} distinct shares are needed.`);
}
