/** Prometheus metrics for the HTTP API and the vault, on a registry of their own. */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Algorithm } from '../../core/types.js';
import type { VaultMetrics } from '../../vault/vault.js';

export class Metrics implements VaultMetrics {
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

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'custos_' });
  }

  signed(algorithm: Algorithm): void {
    this.signatures.inc({ algorithm });
  }

  denied(reason: string): void {
    this.denials.inc({ reason });
  }

  batch(units: number, seconds: number): void {
    this.commitBatch.observe(units);
    this.commitSeconds.observe(seconds);
  }
}
