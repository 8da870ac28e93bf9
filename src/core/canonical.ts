/** Canonical JSON for small flat records: sorted keys, so equal content gives equal bytes. */
export function canonicalJson(d: Record<string, unknown>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(d).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}
