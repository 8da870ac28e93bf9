/**
 * The daemon's front ends that live in the configuration: one CometBFT connector per
 * `[[privval]]` entry and one ssh-agent socket per `[[ssh_agent]]` entry, keyed by name.
 *
 * The set follows the *wanted* configuration (`want`), applied to the open vault by `open`
 * (start-up, unseal) and by `want` itself once front ends run (reload). Everything runs on one
 * queue, stopping included, so a reload racing an unseal applies the newest configuration
 * after the unseal's, and one racing shutdown starts nothing (after `stopAll` the set is
 * closed for good). Applying touches only what changed: an entry whose settings are identical keeps its connection, a changed one is
 * restarted, a removed one stopped, a new one started. Everything the new configuration asks
 * of the vault is checked first (the keys it names exist, the connectors can be built); if
 * anything is wrong nothing is touched and the error names the entry. This is what SIGHUP and
 * `custos reload` run, and what start-up runs against an empty set.
 */
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { CustosError, isCustosError } from '../core/errors.js';
import type { Vault } from '../vault/vault.js';
import { PrivvalConnector, type PrivvalConnectorStatus } from '../frontends/privval/connector.js';
import { SshAgent } from '../frontends/ssh-agent/agent.js';
import type { Metrics } from '../frontends/http/metrics.js';
import { wireDialect, type AgentSocketConfig, type PrivvalConfig, type ServeConfig } from './config.js';

/** What a reload did, by entry name. */
export interface ApplyReport {
  privval: Changes;
  sshAgent: Changes;
}
export interface Changes {
  started: string[];
  restarted: string[];
  stopped: string[];
  unchanged: string[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const emptyChanges = (): Changes => ({ started: [], restarted: [], stopped: [], unchanged: [] });

export class FrontEnds {
  /** Each entry with the vault it was built on: one built on a vault since closed counts as changed. */
  private readonly connectors = new Map<string, { cfg: PrivvalConfig; connector: PrivvalConnector; vault: Vault }>();
  private readonly agents = new Map<string, { cfg: AgentSocketConfig; agent: SshAgent; vault: Vault }>();
  /** One change at a time: applies and the final stop, in the order asked. */
  private turn: Promise<unknown> = Promise.resolve();
  private wanted: ServeConfig | undefined;
  /** The vault the front ends run on; set from the moment `open` is queued. */
  private vault: Vault | undefined;
  private closed = false;

  constructor(
    private readonly dataDir: string,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  /**
   * Starts the front ends on an opened vault with the wanted configuration (the newest by the
   * time the queue gets to it). A failure stops everything this call started.
   */
  open(vault: Vault, config?: ServeConfig): Promise<ApplyReport> {
    if (config) this.wanted = config;
    this.vault = vault;
    return this.queue(async () => {
      try {
        // `wanted` stays what the operator wrote even if an entry fails here: the next unseal
        // tries it again.
        return await this.applyNow(vault, this.wanted!);
      } catch (e) {
        // At start-up or unseal, an entry that cannot start stops the start (loudly).
        await this.stopNow();
        if (this.vault === vault) this.vault = undefined;
        throw e;
      }
    });
  }

  /**
   * A new configuration. Applied at once when the front ends run (its report; a check that
   * fails changes nothing and throws); kept for `open` otherwise (null).
   */
  want(config: ServeConfig): Promise<ApplyReport | null> {
    if (this.closed) return Promise.reject(new CustosError('vault_sealed', 'The server is shutting down; nothing was reloaded.'));
    if (!this.vault) {
      this.wanted = config;
      return Promise.resolve(null);
    }
    return this.queue(async () => {
      // The vault as it is at this turn: an unseal queued before may have failed meanwhile.
      const vault = this.vault;
      if (!vault) {
        this.wanted = config;
        return null;
      }
      try {
        const report = await this.applyNow(vault, config);
        this.wanted = config;
        return report;
      } catch (e) {
        // Partly applied: what runs is the new configuration without the entries that failed.
        if (isCustosError(e) && e.tag === 'partly_applied') this.wanted = { ...config, sshAgents: config.sshAgents.filter((a) => !a.enabled || this.agents.has(a.name)) };
        throw e;
      }
    });
  }

  /** The configuration the running set was last brought to (or will be, at `open`). */
  get current(): ServeConfig | undefined {
    return this.wanted;
  }

  private queue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.turn.then(() => {
      if (this.closed) throw new CustosError('vault_sealed', 'The server is shutting down; nothing was started.');
      return fn();
    });
    this.turn = run.catch(() => {});
    return run;
  }

  private async applyNow(vault: Vault, config: ServeConfig): Promise<ApplyReport> {
    const report: ApplyReport = { privval: emptyChanges(), sshAgent: emptyChanges() };
    // 1. Check and build everything new before touching anything running.
    const newConnectors: Array<{ cfg: PrivvalConfig; connector: PrivvalConnector; replaces: boolean }> = [];
    for (const p of config.privval) {
      const running = this.connectors.get(p.name);
      if (running && running.vault === vault && same(running.cfg, p)) {
        report.privval.unchanged.push(p.name);
        continue;
      }
      await checkKey(vault, p.name, 'key', p.key);
      if (p.identityKey) await checkKey(vault, p.name, 'identity_key', p.identityKey);
      let connector: PrivvalConnector;
      try {
        connector = this.buildConnector(vault, p);
      } catch (e) {
        throw new CustosError('config_invalid', `[[privval]] "${p.name}": ${isCustosError(e) ? e.message : (e as Error).message}`);
      }
      newConnectors.push({ cfg: p, connector, replaces: running !== undefined });
    }
    const enabledAgents = config.sshAgents.filter((a) => a.enabled);
    const newAgents: Array<{ cfg: AgentSocketConfig; replaces: boolean }> = [];
    for (const a of enabledAgents) {
      const running = this.agents.get(a.name);
      if (running && running.vault === vault && same(running.cfg, a)) report.sshAgent.unchanged.push(a.name);
      else newAgents.push({ cfg: a, replaces: running !== undefined });
    }
    // 2. Stop what is gone or changed.
    const keepPrivval = new Set(report.privval.unchanged);
    for (const [name, { connector }] of [...this.connectors]) {
      if (keepPrivval.has(name)) continue;
      this.connectors.delete(name);
      await connector.stop();
      if (!config.privval.some((p) => p.name === name)) report.privval.stopped.push(name);
    }
    const keepAgents = new Set(report.sshAgent.unchanged);
    for (const [name, { agent }] of [...this.agents]) {
      if (keepAgents.has(name)) continue;
      this.agents.delete(name);
      await agent.close();
      if (!enabledAgents.some((a) => a.name === name)) report.sshAgent.stopped.push(name);
    }
    // 3. Start what is new or changed. A socket that cannot be bound is reported by name; the
    // entries already started stay up.
    const failures: string[] = [];
    for (const { cfg, replaces } of newAgents) {
      const agent = new SshAgent(vault, { name: cfg.name, socketPath: resolve(this.dataDir, cfg.socket), keys: cfg.keys, torKeys: cfg.torKeys, allowSha1: cfg.allowSha1, requestTimeoutMs: cfg.requestTimeoutSeconds * 1000, allowConfirm: cfg.allowConfirm, maxConnections: cfg.maxConnections, privateDirHint: resolve(this.dataDir, 'agent') }, this.logger);
      try {
        await agent.listen();
      } catch (e) {
        failures.push(`[[ssh_agent]] "${cfg.name}": ${(e as Error).message}`);
        await agent.close().catch(() => {}); // whatever it bound, it releases
        continue;
      }
      this.agents.set(cfg.name, { cfg, agent, vault });
      (replaces ? report.sshAgent.restarted : report.sshAgent.started).push(cfg.name);
    }
    for (const { cfg, connector, replaces } of newConnectors) {
      this.connectors.set(cfg.name, { cfg, connector, vault });
      connector.start();
      (replaces ? report.privval.restarted : report.privval.started).push(cfg.name);
    }
    if (failures.length > 0) {
      const done = (what: string, c: Changes) => (['started', 'restarted', 'stopped'] as const).filter((k) => c[k].length).map((k) => `${what} ${k}: ${c[k].join(', ')}.`);
      const applied = [...done('[[privval]]', report.privval), ...done('[[ssh_agent]]', report.sshAgent)].join(' ');
      throw new CustosError('config_invalid', `${failures.join(' ')} Every other entry was applied.${applied ? ` ${applied}` : ''}`, { tag: 'partly_applied' });
    }
    return report;
  }

  private buildConnector(vault: Vault, p: PrivvalConfig): PrivvalConnector {
    const log = {
      info: (msg: string, fields?: Record<string, unknown>) => this.logger.info({ privval: p.name, ...fields }, msg),
      warn: (msg: string, fields?: Record<string, unknown>) => this.logger.warn({ privval: p.name, ...fields }, msg),
    };
    return new PrivvalConnector(
      vault,
      {
        name: p.name,
        chainId: p.chainId,
        address: p.address,
        consensusKey: p.key,
        identityKey: p.identityKey,
        dialect: wireDialect(p.dialect),
        versionLabel: p.dialect,
        allowSignBytes: p.allowSignBytes,
        ...(p.nodeId ? { expectedNodeId: p.nodeId } : {}),
        ...(p.nodeKey ? { expectedNodeKey: new Uint8Array(Buffer.from(p.nodeKey, 'hex')) } : {}),
        ...(p.readTimeoutSeconds ? { readTimeoutMs: p.readTimeoutSeconds * 1000 } : {}),
      },
      log,
      this.metrics,
    );
  }

  /** Stops every connector and socket for good (shutdown): after the change in hand, before any later one. */
  stopAll(): Promise<void> {
    const run = this.turn.then(() => this.stopNow());
    this.closed = true;
    this.turn = run.catch(() => {});
    return run;
  }

  private async stopNow(): Promise<void> {
    for (const [name, { connector }] of [...this.connectors]) {
      this.connectors.delete(name);
      await connector.stop();
    }
    for (const [name, { agent }] of [...this.agents]) {
      this.agents.delete(name);
      await agent.close();
    }
  }

  get agentSockets(): string[] {
    return [...this.agents.values()].map((a) => a.agent.config.socketPath);
  }

  /** Each configured agent socket as it runs (configured ones that do not run are the caller's to add). */
  agentStatus(): Array<{ cfg: AgentSocketConfig; status: ReturnType<SshAgent['status']> }> {
    return [...this.agents.values()].map(({ cfg, agent }) => ({ cfg, status: agent.status() }));
  }

  privvalStatus(): Array<{ cfg: PrivvalConfig; status: PrivvalConnectorStatus }> {
    return [...this.connectors.values()].map(({ cfg, connector }) => ({ cfg, status: connector.status() }));
  }
}

async function checkKey(vault: Vault, entry: string, field: string, ref: string): Promise<void> {
  try {
    await vault.getKey(ref);
  } catch (e) {
    if (isCustosError(e) && (e.code === 'key_not_found' || e.code === 'not_found')) {
      throw new CustosError('key_not_found', `[[privval]] "${entry}": ${field} = "${ref}" names no key in the vault. Import it first (custos privval setup, or custos keys import --format cometbft), or fix the entry.`);
    }
    throw e;
  }
}
