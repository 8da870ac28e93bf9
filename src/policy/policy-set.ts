/**
 * Which policy documents apply to a key, and their history. Each upload of a document id gets
 * the next version; old versions are kept (for audit and `policy history`), only the newest is
 * in force, and a retired id applies to nothing until uploaded again. A key is governed by
 * every current document that names its id or label, one of its tags, or `all_keys`, taken in
 * order of document id so that evaluation is deterministic.
 *
 * The set lives in memory. The caller persists each `PolicyVersion` (prepare, commit, then
 * apply) and rebuilds the set with `restore` at start.
 */
import { CustosError } from '../core/errors.js';
import { parsePolicy, detectFormat, POLICY_ID, type PolicyFormat } from './document.js';
import { checkRequest, compilePolicy, coverageWarnings, evaluate, type CompiledPolicy, type Evaluation } from './engine.js';
import type { PolicyKey, PolicyRequest, ReadState } from './model.js';
import { sha256hex } from '../crypto/digest.js';

export interface PolicyVersion {
  id: string;
  version: number;
  format: PolicyFormat;
  /** The document exactly as uploaded; empty for a retirement. */
  source: string;
  /** Hex SHA-256 of `source`, for audit entries. */
  sha256: string;
  uploadedAt: string;
  retired: boolean;
}

export class PolicySet {
  private readonly versions = new Map<string, PolicyVersion[]>();
  private readonly current = new Map<string, CompiledPolicy>();
  private byRef = new Map<string, string[]>();
  private byTag = new Map<string, string[]>();
  private allKeys: string[] = [];

  /** Rebuilds a set from stored versions (any order); each source is validated again. */
  static restore(versions: Iterable<PolicyVersion>): PolicySet {
    const set = new PolicySet();
    const sorted = [...versions].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.version - b.version));
    for (const v of sorted) set.apply(v);
    return set;
  }

  /** Validates a document and returns the version it would become, without applying it. */
  prepare(source: string, opts: { format?: PolicyFormat; at: Date }): PolicyVersion {
    const format = opts.format ?? detectFormat(source);
    const doc = parsePolicy(source, format);
    return { id: doc.id, version: this.nextVersion(doc.id), format, source, sha256: sha256hex(source), uploadedAt: opts.at.toISOString(), retired: false };
  }

  /** What an author should know about a version before relying on it (kinds of request no rule judges). */
  static warnings(v: PolicyVersion): string[] {
    if (v.retired) return [];
    return coverageWarnings(compilePolicy(parsePolicy(v.source, v.format), v.version));
  }

  /** The version that retires `id`, without applying it. */
  prepareRetire(id: string, at: Date): PolicyVersion {
    if (!this.current.has(id)) throw new CustosError('not_found', `There is no policy ${printableId(id)} in force to retire.`);
    return { id, version: this.nextVersion(id), format: 'toml', source: '', sha256: sha256hex(''), uploadedAt: at.toISOString(), retired: true };
  }

  /** Puts a prepared (and persisted) version in force; it must follow the newest one exactly. */
  apply(v: PolicyVersion): void {
    const expected = this.nextVersion(v.id);
    if (v.version !== expected) throw new CustosError('invalid_policy', `Policy ${printableId(v.id)}: version ${v.version} does not follow version ${expected - 1}.`);
    let compiled: CompiledPolicy | undefined;
    if (!v.retired) {
      const doc = parsePolicy(v.source, v.format);
      if (doc.id !== v.id) throw new CustosError('invalid_policy', `Policy ${printableId(v.id)}: version ${v.version} holds a document with id ${doc.id}.`);
      compiled = compilePolicy(doc, v.version);
    }
    this.versions.set(v.id, [...(this.versions.get(v.id) ?? []), v]);
    if (compiled) this.current.set(v.id, compiled);
    else this.current.delete(v.id);
    this.reindex();
  }

  upload(source: string, opts: { format?: PolicyFormat; at: Date }): PolicyVersion {
    const v = this.prepare(source, opts);
    this.apply(v);
    return v;
  }

  retire(id: string, at: Date): PolicyVersion {
    const v = this.prepareRetire(id, at);
    this.apply(v);
    return v;
  }

  /** The document in force for `id`, if any. */
  get(id: string): CompiledPolicy | undefined {
    return this.current.get(id);
  }

  history(id: string): readonly PolicyVersion[] {
    return this.versions.get(id) ?? [];
  }

  /** Ids of the documents in force. */
  ids(): string[] {
    return [...this.current.keys()].sort();
  }

  forKey(key: Pick<PolicyKey, 'id' | 'label' | 'tags'>): CompiledPolicy[] {
    const ids = new Set<string>(this.allKeys);
    for (const id of this.byRef.get(key.id) ?? []) ids.add(id);
    for (const id of this.byRef.get(key.label) ?? []) ids.add(id);
    for (const t of key.tags) for (const id of this.byTag.get(t) ?? []) ids.add(id);
    return [...ids].sort().map((id) => this.current.get(id)!);
  }

  evaluate(req: PolicyRequest, readState: ReadState): Evaluation {
    checkRequest(req);
    return evaluate(this.forKey(req.key), req, readState);
  }

  private nextVersion(id: string): number {
    const h = this.versions.get(id);
    return h && h.length > 0 ? h[h.length - 1]!.version + 1 : 1;
  }

  private reindex(): void {
    const byRef = new Map<string, string[]>();
    const byTag = new Map<string, string[]>();
    const all: string[] = [];
    const add = (m: Map<string, string[]>, k: string, id: string) => m.set(k, [...(m.get(k) ?? []), id]);
    for (const [id, p] of this.current) {
      const a = p.document.appliesTo;
      if (a.allKeys) all.push(id);
      for (const k of new Set(a.keys)) add(byRef, k, id);
      for (const t of new Set(a.tags)) add(byTag, t, id);
    }
    this.byRef = byRef;
    this.byTag = byTag;
    this.allKeys = all;
  }
}

function printableId(id: string): string {
  return POLICY_ID.test(id) ? id : JSON.stringify(id.slice(0, 64));
}
