/** Prometheus metrics for the HTTP API and the vault, on a registry of their own. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Algorithm } from '../../core/types.js';
import type { VaultMetrics } from '../../vault/vault.js';
import type { PrivvalMetrics } from '../privval/connector.js';

export class Metrics implements VaultMetrics, PrivvalMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'custos_http_requests_total', help: 'HTTP requests by route, method and status.', labelNames: ['route', 'method', 'status'], registers: [this.registry] });
  readonly latency = new Histogram({
    name: 'custos_http_request_duration_seconds',
    help: 'HTTP request latency by route.',
    labelNames: ['route'],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });
  readonly signatures = new Counter({ name: 'custos_signatures_total', help: 'Signatures produced, by algorithm.', labelNames: ['algorithm'], registers: [this.registry] });
  readonly denials = new Counter({ name: 'custos_denials_total', help: 'Requests refused, by reason code.', labelNames: ['reason'], registers: [this.registry] });
  readonly unsealRefusals = new Counter({
    name: 'custos_unseal_failures_total',
    help: 'Unseal attempts refused while sealed, by reason code (invalid_share: checked and refused; rate_limited: not checked).',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly lightningForks = new Counter({ name: 'custos_lightning_forks_total', help: 'Lightning objects whose node and vault copies forked (reconcile refused): page on any.', registers: [this.registry] });
  readonly lightningReconciled = new Counter({ name: 'custos_lightning_reconcile_total', help: 'Lightning reconciliations by outcome (in_sync, node_behind, vault_behind).', labelNames: ['status'], registers: [this.registry] });
  readonly lightningUpdates = new Histogram({
    name: 'custos_lightning_update_duration_seconds',
    help: 'One Lightning state update: encrypt, sign, back up, commit.',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1],
    registers: [this.registry],
  });
  /** What vault/lightning.ts reports. */
  readonly lightning = {
    update: (s: number) => this.lightningUpdates.observe(s),
    fork: () => this.lightningForks.inc(),
    reconciled: (status: string) => this.lightningReconciled.inc({ status }),
  };
  readonly commitBatch = new Histogram({
    name: 'custos_audit_commit_batch_units',
    help: 'Units (requests) per durable transaction (group commit).',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers: [this.registry],
  });
  readonly commitSeconds = new Histogram({
    name: 'custos_audit_commit_duration_seconds',
    help: 'Duration of one durable transaction, fsync included.',
    buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25],
    registers: [this.registry],
  });

  readonly privvalSignatures = new Counter({ name: 'custos_privval_signatures_total', help: 'Consensus signatures sent to nodes, by validator and message type.', labelNames: ['validator', 'type'], registers: [this.registry] });
  readonly privvalRefusals = new Counter({ name: 'custos_privval_refusals_total', help: 'Privval requests refused, by validator and reason (policy_denied:double_sign, ...).', labelNames: ['validator', 'reason'], registers: [this.registry] });
  readonly privvalConnectionsRefused = new Counter({ name: 'custos_privval_connections_refused_total', help: 'Node connections dropped before serving them, by validator and reason (node_id_mismatch).', labelNames: ['validator', 'reason'], registers: [this.registry] });
  readonly privvalConnected = new Gauge({ name: 'custos_privval_connected', help: '1 while the validator is connected to its node.', labelNames: ['validator'], registers: [this.registry] });
  readonly privvalLatency = new Histogram({
    name: 'custos_privval_sign_duration_seconds',
    help: 'Time to answer a sign request (watermark commit, signature, outcome commit).',
    labelNames: ['validator'],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [this.registry],
  });

  readonly integrityAlarms = new Counter({
    name: 'custos_integrity_alarms_total',
    help: 'Protected rows that failed their MAC or count (edited, inserted or deleted outside Custos), by table and problem. Page on any increase.',
    labelNames: ['table', 'problem'],
    registers: [this.registry],
  });
  readonly anchorFailures = new Counter({ name: 'custos_audit_anchor_failures_total', help: 'Audit anchor files that could not be written (the log itself stays durable).', registers: [this.registry] });

  /** Set when the daemon wires a logger: every alarm is also an error line naming the row. */
  onIntegrityAlarm?: (table: string, problem: string, pk: string) => void;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'custos_' });
  }

  integrityAlarm(table: string, problem: string, pk: string): void {
    this.integrityAlarms.inc({ table, problem });
    this.onIntegrityAlarm?.(table, problem, pk);
  }

  signed(algorithm: Algorithm): void {
    this.signatures.inc({ algorithm });
  }

  denied(reason: string): void {
    this.denials.inc({ reason });
  }

  unsealRefused(reason: string): void {
    this.unsealRefusals.inc({ reason });
  }

  privvalSigned(validator: string, type: 'prevote' | 'precommit' | 'proposal', seconds: number): void {
    this.privvalSignatures.inc({ validator, type });
    this.privvalLatency.observe({ validator }, seconds);
  }

  privvalRefused(validator: string, reason: string): void {
    this.privvalRefusals.inc({ validator, reason });
  }

  privvalConnectionRefused(validator: string, reason: string): void {
    this.privvalConnectionsRefused.inc({ validator, reason });
  }

  privvalConnection(validator: string, connected: boolean): void {
    this.privvalConnected.set({ validator }, connected ? 1 : 0);
  }

  batch(units: number, seconds: number): void {
    this.commitBatch.observe(units);
    this.commitSeconds.observe(seconds);
  }
}
