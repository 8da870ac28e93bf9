/** Plain-text tables for the CLI's human output (never for --json, which carries values as they are). */
import { printable } from '../core/text.js';

/**
 * Each column is as wide as its widest cell, header included, so a long value (the
 * `ssh:<agent>:SHA256:…` label of a key added through the ssh-agent) widens its column instead
 * of running into the next one. Cells are made printable and cut at `max` characters with
 * "..."; vault labels are at most 64 characters, so with the default no label is ever cut.
 */
export function formatTable(header: string[], rows: string[][], max = 64): string {
  const cells = [header, ...rows].map((r) => r.map((c) => printable(c, max)));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]?.length ?? 0)));
  // Two spaces between columns; the last column is not padded, so no line ends in blanks.
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
