/**
 * BIP32 derivation paths (`m/84'/0'/0'/0/5`, or `m/84h/0h/0h/0/5`): strict parsing, one canonical
 * formatting, and the subtree test the policy engine uses ("may this principal sign under
 * m/84'/0'/1'?"). A path is an array of child indices with the hardened bit (2^31) folded in,
 * the form BIP32 serialises and PSBT BIP32_DERIVATION fields carry.
 */
import { CustosError } from '../core/errors.js';

export const HARDENED_OFFSET = 0x8000_0000;
/** BIP32 serialises depth in one byte, so no extended key is deeper than 255. */
export const MAX_PATH_DEPTH = 255;

/** Child indices from the master, hardened ones with bit 31 set. `[]` is the master itself. */
export type DerivationPath = readonly number[];

export interface PathLimits {
  /** Most components accepted; at most 255 (the default). A policy may ask for fewer. */
  maxDepth?: number;
}

// One component: decimal without leading zeros, then an optional hardened marker. BIP32 writes
// `'`; descriptors (BIP380) also allow `h`/`H`, which survive shells and JSON unescaped.
const COMPONENT_RE = /^(0|[1-9][0-9]{0,9})(['hH]?)$/;

const bad = (sentence: string) => new CustosError('invalid_derivation_path', sentence);

function depthLimit(limits: PathLimits | undefined): number {
  const max = limits?.maxDepth ?? MAX_PATH_DEPTH;
  if (!Number.isInteger(max) || max < 0 || max > MAX_PATH_DEPTH) {
    throw new RangeError(`maxDepth must be an integer from 0 to ${MAX_PATH_DEPTH}`);
  }
  return max;
}

export function isHardened(index: number): boolean {
  return index >= HARDENED_OFFSET;
}

/**
 * Parses `m`, `m/0`, `m/44'/0'/0'/1/7`, `m/44h/0h`. Refuses (invalid_derivation_path) anything
 * else: a missing `m`, empty components (`m//1`, trailing `/`), leading zeros, signs or spaces,
 * an index of 2^31 or more before hardening, and paths deeper than the limit.
 */
export function parsePath(text: string, limits?: PathLimits): number[] {
  const max = depthLimit(limits);
  if (typeof text !== 'string') throw bad('A derivation path must be a string such as m/84\'/0\'/0\'/0/5.');
  // Checked before splitting, so a megabyte of slashes costs nothing: 12 characters per level at most.
  if (text.length > 1 + max * 12) throw bad(`The derivation path is longer than a path of depth ${max} can be.`);
  if (text === 'm') return [];
  if (!text.startsWith('m/')) throw bad('A derivation path starts with "m/" (or is just "m").');
  const parts = text.slice(2).split('/');
  if (parts.length > max) throw bad(`The derivation path has ${parts.length} levels; at most ${max} are allowed.`);
  const out: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === '') throw bad(`Level ${i + 1} of the derivation path is empty.`);
    const m = COMPONENT_RE.exec(part);
    if (!m) throw bad(`Level ${i + 1} of the derivation path ("${part.slice(0, 16)}") is not a decimal index with an optional ' or h.`);
    const index = Number(m[1]);
    if (index >= HARDENED_OFFSET) {
      throw bad(`Level ${i + 1} of the derivation path is ${m[1]}; an index is below 2^31 (2147483648), with ' or h for hardened.`);
    }
    out.push(m[2] ? index + HARDENED_OFFSET : index);
  }
  return out;
}

/** Checks a path given as numbers (from a PSBT field or an API body): uint32 indices, depth limit. */
export function checkPath(path: readonly number[], limits?: PathLimits): number[] {
  const max = depthLimit(limits);
  if (!Array.isArray(path)) throw bad('A derivation path must be an array of child indices.');
  if (path.length > max) throw bad(`The derivation path has ${path.length} levels; at most ${max} are allowed.`);
  for (let i = 0; i < path.length; i++) {
    const index = path[i];
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index > 0xffff_ffff) {
      throw bad(`Level ${i + 1} of the derivation path is not a 32-bit child index.`);
    }
  }
  return [...path];
}

/** The canonical text of a path: `m/84'/0'/0'/0/5`, or with `h` markers when asked. */
export function formatPath(path: DerivationPath, hardenedMarker: "'" | 'h' = "'"): string {
  checkPath(path);
  let s = 'm';
  for (const index of path) s += isHardened(index) ? `/${index - HARDENED_OFFSET}${hardenedMarker}` : `/${index}`;
  return s;
}

/** Accepts a path either as text or as indices, checked the same way. */
export function toPath(path: string | DerivationPath, limits?: PathLimits): number[] {
  return typeof path === 'string' ? parsePath(path, limits) : checkPath(path, limits);
}

/**
 * Whether `path` lies in the subtree rooted at `prefix`: every level of the prefix matches,
 * hardened-ness included (m/84'/0' is not under m/84/0). The prefix itself counts as under it,
 * so "m" is the whole tree.
 */
export function isUnder(path: string | DerivationPath, prefix: string | DerivationPath): boolean {
  const p = toPath(path);
  const q = toPath(prefix);
  if (q.length > p.length) return false;
  for (let i = 0; i < q.length; i++) if (p[i] !== q[i]) return false;
  return true;
}
