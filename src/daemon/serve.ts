/**
 * The `custos serve` process: unseal, listen, and shut down cleanly on SIGINT/SIGTERM
 * (stop accepting, finish requests in flight, flush the audit log, write a checkpoint).
 * Also the dev mode, which builds a throwaway vault in a temporary directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { wipe } from '../core/bytes.js';
import { CustosError } from '../core/errors.js';
import { parseSealRecord, type SealRecord } from '../keystore/seal.js';
import { hsmRootAd } from '../keystore/hsm-seal.js';
import { tokenAnchorPlace, tokenBackends, tokenRootWrapper } from './hsm.js';
import type { AnchorPlace } from '../audit/anchor.js';
import { buildHttpServer, assertLoopback } from '../frontends/http/server.js';
import { Metrics } from '../frontends/http/metrics.js';
import { SshAgent } from '../frontends/ssh-agent/agent.js';
import { PrivvalConnector } from '../frontends/privval/connector.js';
import { initVault, openStoreOnly, openVault, SYSTEM, CONFIG_FILE, type OpenVault } from '../vault/open.js';
import { DEFAULT_UNSEAL_LIMITS, SealedStore, ShareGate } from './unseal.js';
import { AGENT_DEFAULTS, loadConfig, type ServeConfig } from './config.js';

export { VERSION } from '../core/version.js';
import { VERSION } from '../core/version.js';

export interface RunningServer {
  url: string;
  /** The ssh-agent sockets, when enabled (the first one is `agentSocket`). */
  agentSocket?: string;
  agentSockets: string[];
  /** Logs that the server is ready; call once signal handlers are in place. */
  announce(): void;
  close(): Promise<void>;
}

export interface ServeOptions {
  dataDir: string;
  /** For a passphrase seal. Vaults sealed by shares or an HSM need none. */
  passphrase?: Uint8Array;
  config: ServeConfig;
}

type Connectors = Array<{ cfg: ServeConfig['privval'][number]; connector: PrivvalConnector }>;

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  assertLoopback(opts.config.api.host);
  const logger = pino({ level: opts.config.log.level, base: { service: 'custos' }, redact: ['req.headers.authorization'] });
  const metrics = new Metrics();
  metrics.onIntegrityAlarm = (table, problem, pk) => logger.error({ table, problem, row: pk.slice(0, 120) }, 'a protected row failed its integrity check: it was changed outside Custos and is not obeyed');
  const agents: SshAgent[] = [];
  const connectors: Connectors = [];
  const tokens = tokenBackends(opts.config.pkcs11);
  const openWith = (unlock: { passphrase?: Uint8Array; root?: Uint8Array }, anchorPlaces: AnchorPlace[] = []) =>
    openVault({
      anchorIntervalMs: opts.config.audit.anchorIntervalSeconds * 1000,
      anchorPlaces,
      dataDir: opts.dataDir,
      ...unlock,
      checkpointEvery: opts.config.audit.checkpointEvery,
      metrics,
      approvalTimeoutMs: opts.config.approvals.timeoutSeconds * 1000,
      backends: tokens,
      onAnchorError: (e, where) => {
        metrics.anchorFailures.inc();
        logger.warn({ err: e.message, anchor: where }, 'the audit anchor could not be written; the log is durable, the anchor will be retried');
      },
    });
  try {
    return await serveWith();
  } catch (e) {
    for (const t of tokens) await t.close();
    throw e;
  }
  async function serveWith(): Promise<RunningServer> {

  // Front ends that need the unsealed vault: started at once, or when the last share arrives.
  const startFrontends = async (opened: OpenVault) => {
    try {
      for (const p of opts.config.privval) {
        // Fail at start, with a sentence, rather than in a reconnect loop.
        await opened.vault.getKey(p.key);
        if (p.identityKey) await opened.vault.getKey(p.identityKey);
        const connector = new PrivvalConnector(
          opened.vault,
          {
            name: p.name,
            chainId: p.chainId,
            address: p.address,
            consensusKey: p.key,
            identityKey: p.identityKey,
            dialect: p.dialect,
            allowSignBytes: p.allowSignBytes,
            ...(p.nodeId ? { expectedNodeId: p.nodeId } : {}),
            ...(p.nodeKey ? { expectedNodeKey: new Uint8Array(Buffer.from(p.nodeKey, 'hex')) } : {}),
            ...(p.readTimeoutSeconds ? { readTimeoutMs: p.readTimeoutSeconds * 1000 } : {}),
          },
          { info: (msg, fields) => logger.info({ privval: p.name, ...fields }, msg), warn: (msg, fields) => logger.warn({ privval: p.name, ...fields }, msg) },
          metrics,
        );
        connectors.push({ cfg: p, connector });
      }
      for (const a of opts.config.sshAgents.filter((x) => x.enabled)) {
        const agent = new SshAgent(opened.vault, { name: a.name, socketPath: resolve(opts.dataDir, a.socket), keys: a.keys, allowSha1: a.allowSha1, allowConfirm: a.allowConfirm, maxConnections: a.maxConnections, privateDirHint: resolve(opts.dataDir, 'agent') }, logger);
        await agent.listen();
        agents.push(agent);
      }
      for (const c of connectors) c.connector.start();
    } catch (e) {
      await stopFrontends();
      throw e;
    }
  };
  const stopFrontends = async () => {
    for (const c of connectors.splice(0)) await c.connector.stop();
    for (const a of agents.splice(0)) await a.close();
  };

  const { store: metaStore, vaultId } = await openStoreOnly(opts.dataDir);
  let record: SealRecord;
  try {
    record = parseSealRecord(await metaStore.getMeta('seal'));
  } finally {
    await metaStore.close();
  }
  let opened: OpenVault | null = null;
  let gate: ShareGate | null = null;
  if (record.kind === 'passphrase') {
    if (!opts.passphrase) throw new CustosError('vault_sealed', 'This vault is sealed by a passphrase: give it with --passphrase-file or CUSTOS_PASSPHRASE.');
    opened = await openWith({ passphrase: opts.passphrase });
  } else {
    let root: Uint8Array | undefined;
    let reason: string | undefined;
    let tokenAnchor: AnchorPlace[] = [];
    if (record.kind === 'hsm') {
      // Auto-unseal through the token; when it cannot be used, wait for recovery shares.
      try {
        const sp = opts.config.seal.pkcs11;
        if (!sp) throw new CustosError('config_invalid', 'The vault is sealed by an HSM but the configuration has no [seal.pkcs11] table.');
        const backend = tokens.find((t) => t.tokenName === sp.token)!;
        // The token keeps a copy of the audit anchor, consulted however the root is rebuilt:
        // recovery shares too (if the token answers), so that spoiling the seal record to
        // force recovery does not also skip the token's anchor.
        tokenAnchor = [tokenAnchorPlace(backend, vaultId, sp.anchorIntervalSeconds * 1000)];
        const wrapper = tokenRootWrapper(backend, record.tokenLabel, record.keyLabel);
        root = await wrapper.unwrap(new Uint8Array(Buffer.from(record.wrappedRoot, 'base64')), hsmRootAd(vaultId));
      } catch (e) {
        reason = `The HSM could not unseal the vault: ${(e as Error).message} Give recovery shares to unseal it.`;
        logger.warn({ seal: 'hsm', code: (e as CustosError).code }, reason);
      }
    }
    gate = new ShareGate({
      seal: record.kind,
      record: record.kind === 'shares' ? record.shares : record.recovery,
      vaultId,
      onRoot: async (r) => {
        const o = await openWith({ root: r }, tokenAnchor);
        try {
          await startFrontends(o);
        } catch (e) {
          await o.close();
          throw e;
        }
        logger.info({ vault_id: vaultId }, 'unsealed by operator shares');
        return o;
      },
      ...(reason ? { reason } : {}),
      sealedStore: new SealedStore(opts.dataDir),
      logger,
      onRefused: (code) => metrics.unsealRefused(code),
      limits: { ...DEFAULT_UNSEAL_LIMITS, maxFailures: opts.config.unseal.maxFailures, windowSeconds: opts.config.unseal.windowSeconds },
    });
    if (root) {
      try {
        opened = await openWith({ root }, tokenAnchor);
      } finally {
        wipe(root);
      }
      gate.openedBy(opened);
      logger.info({ vault_id: vaultId }, 'unsealed by the HSM');
    }
  }
  const app = await buildHttpServer({
    ...(gate ? { gate } : { vault: opened!.vault }),
    health: () => tokens.map((t) => ({ component: t.name, ...t.health() })),
    metrics,
    logger,
    version: VERSION,
    privvalStatus: () => connectors.map(({ cfg, connector }) => ({ name: cfg.name, chainId: cfg.chainId, address: cfg.address, ...connector.status() })),
  });
  const current = () => gate?.openVault ?? opened;
  try {
    if (opened) await startFrontends(opened);
    await app.listen({ host: opts.config.api.host, port: opts.config.api.port });
  } catch (e) {
    await stopFrontends();
    await current()?.close();
    throw e;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.config.api.port;
  const host = opts.config.api.host.includes(':') ? `[${opts.config.api.host}]` : opts.config.api.host;
  const url = `http://${host}:${port}`;
  let closing: Promise<void> | null = null;
  return {
    url,
    get agentSocket() {
      return agents[0]?.config.socketPath;
    },
    get agentSockets() {
      return agents.map((a) => a.config.socketPath);
    },
    announce: () =>
      logger.info({ url, data_dir: opts.dataDir, vault_id: vaultId, sealed: !current(), ssh_agents: agents.map((a) => a.config.socketPath) }, current() ? 'listening' : 'listening sealed: waiting for operator shares (custos operator unseal)'),
    close: () =>
      (closing ??= (async () => {
        // The gate first: unseal attempts waiting out a delay are refused now, not after it,
        // and an unseal already opening the vault has started its front ends before they stop.
        await gate?.close();
        await stopFrontends();
        await app.close();
        await current()?.close();
        for (const t of tokens) await t.close();
        logger.info('stopped');
      })()),
  };
  }
}

/** Installs SIGINT/SIGTERM handlers: first signal shuts down cleanly, a second one exits at once. */
export function closeOnSignals(server: RunningServer, after?: () => void): void {
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) process.exit(1);
    signalled = true;
    process.stderr.write(`custos: ${sig}, shutting down\n`);
    server
      .close()
      .then(() => {
        after?.();
        process.exit(0);
      })
      .catch((e) => {
        process.stderr.write(`custos: shutdown failed: ${(e as Error).message}\n`);
        after?.();
        process.exit(1);
      });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/**
 * `custos serve --dev`: a throwaway unsealed vault with two demo keys, `demo` (general: signs
 * over the API) and `demo-ssh` (ssh: offered by the agent socket), since a key has one
 * purpose. Nothing persists.
 */
export async function startDevServer(overrides: { port?: number; logLevel?: ServeConfig['log']['level'] }): Promise<{ server: RunningServer; token: string; dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'custos-dev-'));
  const passphrase = new Uint8Array(randomBytes(32));
  // Dev vaults are deleted on exit: a cheap scrypt cost keeps startup instant.
  const { adminToken } = await initVault({ dataDir, passphrase, scrypt: { N: 2 ** 12, r: 8, p: 1 } });
  const seeded = await openVault({ dataDir, passphrase });
  try {
    await seeded.vault.createKey({ principal: SYSTEM, requestId: 'dev-demo-key' }, { label: 'demo', algorithm: 'ed25519', exportable: false, purpose: 'general' });
    await seeded.vault.createKey({ principal: SYSTEM, requestId: 'dev-demo-ssh-key' }, { label: 'demo-ssh', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  } finally {
    await seeded.close();
  }
  const config = loadConfig(join(dataDir, CONFIG_FILE));
  config.api.port = overrides.port ?? 8200;
  config.log.level = overrides.logLevel ?? 'warn';
  config.sshAgents = [{ ...AGENT_DEFAULTS, keys: ['demo-ssh'] }];
  let server: RunningServer;
  try {
    server = await startServer({ dataDir, passphrase, config });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || overrides.port !== undefined) throw e;
    config.api.port = 0;
    server = await startServer({ dataDir, passphrase, config });
  } finally {
    wipe(passphrase);
  }
  const close = server.close;
  return {
    server: { url: server.url, agentSocket: server.agentSocket, agentSockets: server.agentSockets, announce: server.announce, close: async () => { await close(); rmSync(dataDir, { recursive: true, force: true }); } },
    token: adminToken,
    dataDir,
  };
}
