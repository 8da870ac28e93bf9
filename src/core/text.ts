/** Text helpers for values that come from clients and end up in logs, audit entries or terminals. */

/** Printable ASCII only (anything else becomes "?"), cut to `max` characters with "..." if longer. */
export function printable(s: string, max = 64): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}
