/**
 * What every benchmark measures its figures against, in the same run: percentiles, and the
 * durability floor (an fsync of a 256-byte write in a temporary file).
 */
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { generateKeyPairSync, randomBytes, sign as nodeSign } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The p-th percentile (nearest rank) of `xs`. */
export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const round = (x: number): number => Number(x.toFixed(4));

/** `n` fsyncs of a 256-byte write, in milliseconds each. */
export function fsyncFloor(n: number): number[] {
  const dir = mkdtempSync(join(tmpdir(), 'custos-bench-fsync-'));
  const fd = openSync(join(dir, 'f'), 'a');
  const buf = randomBytes(256);
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      writeSync(fd, buf);
      fsyncSync(fd);
      out.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

/**
 * `n` raw node:crypto Ed25519 signatures, in milliseconds each: the signing floor. Over the
 * given messages in turn (a vote's sign bytes), or a random 120-byte message.
 */
export function signFloor(n: number, messages: readonly Uint8Array[] = [randomBytes(120)]): number[] {
  const { privateKey } = generateKeyPairSync('ed25519');
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    nodeSign(null, messages[i % messages.length]!, privateKey);
    out.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return out;
}
