/**
 * A node's own operator's consent to a key set its peers propose: before a peer can have this
 * node generate a key with it (DKG), send it a dealt share, or make it join or lose members in
 * a refresh, this node's admin says so (`custos cluster expect`), naming the label, purpose,
 * threshold and members. A peer alone can then neither plant keys here nor choose what a
 * share here may sign; a coordinator that told members different things meets a member whose
 * operator expected something else. Kept in memory for a limited time and used once.
 */
import { CustosError } from '../core/errors.js';
import { MAX_PARTICIPANTS } from '../crypto/frost.js';

export interface Expectation {
  label: string;
  /** `keygen` (DKG), `split` (a dealt share), `reshare` (a refresh that changes the members). */
  kind: 'keygen' | 'split' | 'reshare';
  purpose: string;
  threshold: number;
  members: string[];
  /** The peer that will drive it. */
  coordinator: string;
  algorithm?: string;
  expires: number;
}

const MAX_EXPECTATIONS = 64;

export class Consent {
  private readonly expected: Expectation[] = [];

  expect(e: Omit<Expectation, 'expires'> & { minutes: number }): Expectation {
    this.sweep();
    if (this.expected.length >= MAX_EXPECTATIONS) throw new CustosError('rate_limited', 'Too many key sets are expected here; let some expire or use them first.');
    if (e.members.length < 2 || e.members.length > MAX_PARTICIPANTS || new Set(e.members).size !== e.members.length) throw new CustosError('bad_request', 'The members are 2 to 16 distinct names.');
    if (!e.members.includes(e.coordinator)) throw new CustosError('bad_request', 'The coordinator must be a member.');
    const x: Expectation = { label: e.label, kind: e.kind, purpose: e.purpose, threshold: e.threshold, members: [...e.members].sort(), coordinator: e.coordinator, ...(e.algorithm ? { algorithm: e.algorithm } : {}), expires: Date.now() + e.minutes * 60_000 };
    this.expected.push(x);
    return x;
  }

  /**
   * Takes the expectation matching exactly what a peer proposes, or refuses with what this
   * node's operator must run. `from` is the authenticated peer; this node's own admin (`self`)
   * needs none: its request is the consent.
   */
  take(p: { from: string; self: string; label: string; kind: Expectation['kind']; purpose: string; threshold: number; members: string[]; algorithm?: string }): void {
    if (p.from === p.self) return;
    this.sweep();
    const members = [...p.members].sort().join(',');
    const i = this.expected.findIndex(
      (e) => e.label === p.label && e.kind === p.kind && e.purpose === p.purpose && e.threshold === p.threshold && e.members.join(',') === members && e.coordinator === p.from && (e.algorithm === undefined || e.algorithm === p.algorithm),
    );
    if (i < 0) {
      throw new CustosError(
        'forbidden',
        `This node's operator has not agreed to ${p.kind === 'keygen' ? 'generate' : p.kind === 'split' ? 'receive a share of' : 'reshare'} ${p.label} (${p.purpose}, ${p.threshold}-of-${p.members.length}: ${p.members.join(', ')}, driven by ${p.from}). On this node: custos cluster expect --${p.kind} --label ${p.label} --purpose ${p.purpose} --threshold ${p.threshold} --members ${p.members.join(',')} --coordinator ${p.from}`,
        { tag: 'consent' },
      );
    }
    this.expected.splice(i, 1);
  }

  list(): Expectation[] {
    this.sweep();
    return this.expected.map((e) => ({ ...e, members: [...e.members] }));
  }

  private sweep(): void {
    const now = Date.now();
    for (let i = this.expected.length - 1; i >= 0; i--) if (this.expected[i]!.expires < now) this.expected.splice(i, 1);
  }
}
