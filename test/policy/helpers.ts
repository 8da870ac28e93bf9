/** Builders shared by the policy tests: a request with defaults, a one-document policy, a state map. */
import { parsePolicy } from '../../src/policy/document.js';
import { compilePolicy, evaluate, type CompiledPolicy, type Evaluation } from '../../src/policy/engine.js';
import type { PolicyRequest, PsbtFacts, RuleState, StateUpdate } from '../../src/policy/model.js';

export const T0 = new Date('2026-11-10T15:00:00Z'); // a Tuesday

export function request(over: Partial<PolicyRequest> = {}): PolicyRequest {
  return {
    principal: { id: 'token:bot', kind: 'token' },
    key: { id: 'k1', label: 'hot', algorithm: 'secp256k1', tags: ['treasury'] },
    operation: 'sign',
    payloadType: 'raw',
    now: T0,
    facts: {},
    ...over,
  };
}

/** A PSBT paying `amounts` to external addresses `ext0`, `ext1`, ... plus one change output. */
export function psbt(amounts: bigint[], over: Partial<PsbtFacts> = {}): PsbtFacts {
  const outputs = amounts.map((amount, i) => ({ address: `ext${i}`, amount, isChange: false }));
  const sent = amounts.reduce((a, b) => a + b, 0n);
  return { outputs: [...outputs, { address: 'change0', amount: 1000n, isChange: true }], fee: 500n, sentExternally: sent, inputCount: 1, vsize: 200, ...over };
}

export function psbtRequest(amounts: bigint[], over: Partial<PolicyRequest> = {}, facts: Partial<PsbtFacts> = {}): PolicyRequest {
  return request({ payloadType: 'psbt', psbt: psbt(amounts, facts), ...over });
}

/** A policy of the given TOML rule blocks, applying to every key. */
export function policyOf(rules: string, id = 'p', version = 1): CompiledPolicy {
  return compilePolicy(parsePolicy(`id = "${id}"\n[applies_to]\nall_keys = true\n${rules}`), version);
}

/** Committed state, as a store would hold it. */
export class StateMap {
  readonly map = new Map<string, RuleState>();
  read = (scope: string): RuleState | undefined => this.map.get(scope);
  commit(updates: readonly StateUpdate[]): void {
    for (const u of updates) this.map.set(u.scope, structuredClone(u.state));
  }
  /** Evaluates and commits an allow's updates, as the vault will. */
  run(p: CompiledPolicy | CompiledPolicy[], req: PolicyRequest): Evaluation {
    const e = evaluate(p, req, this.read);
    if (e.decision.kind === 'allow') this.commit(e.stateUpdates);
    return e;
  }
}
