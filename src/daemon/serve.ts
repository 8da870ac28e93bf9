/**
 * The `custos serve` process: unseal, listen, and shut down cleanly on SIGINT/SIGTERM
 * (stop accepting, finish requests in flight, flush the audit log, write a checkpoint).
 * Also the dev mode, which builds a throwaway vault in a temporary directory.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openBackupTarget } from '../lightning/backup.js';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { wipe } from '../core/bytes.js';
import { CustosError, isCustosError } from '../core/errors.js';
import { parseSealRecord, type SealRecord } from '../keystore/seal.js';
import { hsmRootAd } from '../keystore/hsm-seal.js';
import { tokenAnchorPlace, tokenBackends, tokenRootWrapper } from './hsm.js';
import type { AnchorPlace } from '../audit/anchor.js';
import { buildHttpServer, assertLoopback } from '../frontends/http/server.js';
import { Metrics } from '../frontends/http/metrics.js';
import { FrontEnds, type ApplyReport } from './frontends.js';
import { loadTls } from './tls.js';
import { startCluster } from './cluster.js';
import type { Cluster } from '../cluster/cluster.js';
import { ThresholdBackend } from '../backends/threshold.js';
import type { SecureContextOptions } from 'node:tls';
import { initVault, openStoreOnly, openVault, storeUrlIn, SYSTEM, CONFIG_FILE, type OpenVault } from '../vault/open.js';
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
  /** Re-reads the configuration and applies its [[privval]] and [[ssh_agent]] entries. */
  reload(): Promise<ReloadReport>;
  close(): Promise<void>;
}

export interface ServeOptions {
  dataDir: string;
  /** Re-reads the configuration (file and flags) for SIGHUP and `custos reload`. */
  reloadConfig?: () => ServeConfig;
  /** For a passphrase seal. Vaults sealed by shares or an HSM need none. */
  passphrase?: Uint8Array;
  config: ServeConfig;
}

export interface ReloadReport {
  /** False when the vault is sealed: the entries start when it is unsealed. */
  applied: boolean;
  privval: ApplyReport['privval'] | null;
  sshAgent: ApplyReport['sshAgent'] | null;
  /** Sections that changed but are read only at start. */
  restartNeeded: string[];
}
const emptyReload = (): ReloadReport => ({ applied: false, privval: null, sshAgent: null, restartNeeded: [] });

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const tlsFiles = (c: ServeConfig) =>
    c.api.tls ? { cert: resolve(opts.dataDir, c.api.tls.cert), key: resolve(opts.dataDir, c.api.tls.key), ...(c.api.tls.clientCa ? { clientCa: resolve(opts.dataDir, c.api.tls.clientCa) } : {}) } : undefined;
  const tlsAtStart = tlsFiles(opts.config);
  if (!tlsAtStart) assertLoopback(opts.config.api.host);
  const https = tlsAtStart ? loadTls(tlsAtStart) : undefined;
  const logger = pino({ level: opts.config.log.level, base: { service: 'custos' }, redact: ['req.headers.authorization'] });
  const metrics = new Metrics();
  metrics.onIntegrityAlarm = (table, problem, pk) => logger.error({ table, problem, row: pk.slice(0, 120) }, 'a protected row failed its integrity check: it was changed outside Custos and is not obeyed');
  let config = opts.config;
  const frontends = new FrontEnds(opts.dataDir, logger, metrics);
  void frontends.want(config); // kept until a vault opens
  const tokens = tokenBackends(opts.config.pkcs11);
  // A threshold key signs with its cosigners ([cluster]), found once the vault is open.
  let cluster: Cluster | null = null;
  const threshold = new ThresholdBackend(() => cluster?.coordinator ?? null);
  // Lightning state records go to their backup target before they commit ([lightning] backup).
  const lightningBackup = opts.config.lightning.backup
    ? await openBackupTarget(/^(https?|postgres(ql)?):\/\//.test(opts.config.lightning.backup) ? opts.config.lightning.backup : resolve(opts.dataDir, opts.config.lightning.backup.replace(/^dir:/, '')), {
        headers: opts.config.lightning.backupAuthorizationFile ? { authorization: readFileSync(resolve(opts.dataDir, opts.config.lightning.backupAuthorizationFile), 'utf8').trim() } : {},
      })
    : null;
  const openWith = (unlock: { passphrase?: Uint8Array; root?: Uint8Array }, anchorPlaces: AnchorPlace[] = []) =>
    openVault({
      lightning: { backup: lightningBackup, metrics: metrics.lightning },
      anchorIntervalMs: opts.config.audit.anchorIntervalSeconds * 1000,
      anchorPlaces,
      dataDir: opts.dataDir,
      ...unlock,
      checkpointEvery: opts.config.audit.checkpointEvery,
      metrics,
      approvalTimeoutMs: opts.config.approvals.timeoutSeconds * 1000,
      loginGuard: opts.config.accounts.guard,
      sessionLimits: opts.config.accounts.sessions,
      backends: [...tokens, threshold],
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
  // (On failure `open` has stopped whatever it started.)
  const startFrontends = async (o: OpenVault) => {
    await frontends.open(o.vault);
  };
  const stopFrontends = () => frontends.stopAll();

  // Every tool finds the database through the data directory's custos.toml: a --config
  // elsewhere cannot point this daemon at another one.
  if (opts.config.store.url !== undefined && opts.config.store.url !== storeUrlIn(opts.dataDir)) {
    throw new CustosError('config_invalid', `[store] url belongs in ${join(opts.dataDir, CONFIG_FILE)} (every custos command finds the database there), not only in the --config file.`);
  }
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
  if (opts.config.cluster) {
    cluster = startCluster(opts.dataDir, opts.config.cluster, () => {
      const v = current()?.vault;
      if (!v) throw new CustosError('vault_sealed', 'This cosigner is sealed: its operators must unseal it first.');
      return v;
    });
  }
  const app = await buildHttpServer({
    cluster: () => cluster,
    ...(gate ? { gate } : { vault: opened!.vault }),
    health: () => {
      const db = current()?.store.health?.();
      return [...(db ? [{ component: 'database', ...db }] : []), ...tokens.map((t) => ({ component: t.name, ...t.health() }))];
    },
    metrics,
    logger,
    version: VERSION,
    ...(https ? { https } : {}),
    privvalStatus: () => privvalStatus(),
    agentStatus: () => agentStatus(),
    reload: () => reload(),
  });
  const current = () => gate?.openVault ?? opened;
  /**
   * SIGHUP and `custos reload`: re-read the configuration and bring the [[privval]] and
   * [[ssh_agent]] entries to it (see FrontEnds.apply). A file that does not parse or names a
   * missing key changes nothing. Other sections need a restart and are reported as such; the
   * log level is taken at once.
   */
  let reloading: Promise<ReloadReport> = Promise.resolve(emptyReload());
  async function reload(): Promise<ReloadReport> {
    const run = reloading.catch(() => emptyReload()).then(async () => {
      if (!opts.reloadConfig) throw new CustosError('bad_request', 'This server was started without a configuration file to reload.');
      let next: ServeConfig;
      try {
        next = opts.reloadConfig();
      } catch (e) {
        logger.error({ err: (e as Error).message }, 'reload refused: the configuration is unchanged');
        throw e;
      }
      // The certificate and key are read again (renewed files); a bad pair changes nothing.
      const tlsNow = tlsFiles(next);
      // The address, and TLS or mutual TLS on or off, are read at start only: then the running
      // context stays as it is too (a context without client_ca would verify clients against
      // the public roots).
      const apiChanged = next.api.host !== config.api.host || next.api.port !== config.api.port || !!tlsNow !== !!https || !!next.api.tls?.clientCa !== !!config.api.tls?.clientCa;
      let secure: ReturnType<typeof loadTls> | undefined;
      if (https && tlsNow && !apiChanged) {
        try {
          secure = loadTls(tlsNow);
        } catch (e) {
          logger.error({ err: (e as Error).message }, 'reload refused: the configuration is unchanged');
          throw e;
        }
      }
      const restartNeeded = [...(apiChanged ? (['api'] as const) : []), ...(['pkcs11', 'seal', 'approvals', 'audit', 'unseal', 'accounts', 'cluster'] as const).filter((k) => JSON.stringify(next[k]) !== JSON.stringify(config[k]))];
      let applied: ApplyReport | null = null;
      function takeCertificate() {
        if (!secure) return;
        (app.server as unknown as { setSecureContext(o: SecureContextOptions): void }).setSecureContext(secure);
        logger.info({ certificate_sha256: secure.fingerprint256, not_after: secure.notAfter }, 'TLS certificate reloaded: new connections get it');
      }
      const keepRunning = (c: ServeConfig): ServeConfig => ({ ...c, ...Object.fromEntries(restartNeeded.map((k) => [k, config[k]])) });
      try {
        applied = await frontends.want(next);
      } catch (e) {
        if (isCustosError(e) && e.tag === 'partly_applied') {
          config = keepRunning(frontends.current ?? config);
          takeCertificate();
          logger.error({ err: e.message }, 'reload partly applied: the entries named did not start, every other change took effect');
        } else logger.error({ err: (e as Error).message }, 'reload refused: the configuration is unchanged');
        if (secure) (secure.key as Buffer).fill(0);
        throw e;
      }
      const open = applied !== null;
      takeCertificate();
      if (secure) (secure.key as Buffer).fill(0);
      // Sections that need a restart keep their running values until then.
      config = keepRunning(next);
      if (next.log.level !== logger.level) logger.level = next.log.level;
      const report: ReloadReport = { applied: applied !== null, privval: applied?.privval ?? null, sshAgent: applied?.sshAgent ?? null, restartNeeded: [...restartNeeded] };
      logger.info({ privval: report.privval, ssh_agent: report.sshAgent, restart_needed: report.restartNeeded, sealed: !open }, open ? 'configuration reloaded' : 'configuration reloaded; its front ends start when the vault is unsealed');
      if (restartNeeded.length) logger.warn({ sections: restartNeeded }, `changes to ${restartNeeded.map((k) => `[${k}]`).join(', ')} take effect at the next restart`);
      return report;
    });
    reloading = run;
    return run;
  }
  /** Each configured ssh-agent socket: where it listens, and how it runs (or that it does not). */
  function agentStatus() {
    const live = new Map(frontends.agentStatus().map((x) => [x.cfg.name, x]));
    const wanted = (frontends.current?.sshAgents ?? config.sshAgents).filter((a) => a.enabled);
    const entries = [...wanted, ...[...live.values()].map((x) => x.cfg).filter((c) => !wanted.some((w) => w.name === c.name))];
    return entries.map((a) => {
      const run = live.get(a.name);
      return { name: a.name, socket: resolve(opts.dataDir, a.socket), keys: a.keys, torKeys: a.torKeys, maxConnections: a.maxConnections, ...(run ? run.status : { listening: false, connections: 0, locked: false }) };
    });
  }
  /** Each configured validator: its connection, and its watermark as stored (survives restarts). */
  async function privvalStatus() {
    const open = current();
    const running = frontends.privvalStatus();
    const live = new Map(running.map((x) => [x.cfg.name, x.status]));
    const wanted = frontends.current?.privval ?? config.privval;
    // Configured entries, and any still running that the configuration no longer names.
    const entries = [...wanted, ...running.map((x) => x.cfg).filter((c) => !wanted.some((w) => w.name === c.name))];
    return Promise.all(
      entries.map(async (p) => {
        const st = live.get(p.name) ?? { state: 'stopped' as const, refusals: 0, signatures: 0 };
        let watermark: { height: string; round: number; step: number } | null = null;
        if (open) {
          const w = await open.vault.getWatermark({ principal: SYSTEM, requestId: 'privval-status' }, p.key, p.chainId).catch(() => null);
          if (w) watermark = { height: w.height.toString(), round: w.round, step: w.step };
        }
        return { name: p.name, chainId: p.chainId, address: p.address, dialect: p.dialect, key: p.key, ...st, watermark };
      }),
    );
  }
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
  const url = `${https ? 'https' : 'http'}://${host}:${port}`;
  if (https) {
    (https.key as Buffer).fill(0); // OpenSSL holds its own copy now
    logger.info({ certificate_sha256: https.fingerprint256, not_after: https.notAfter }, 'TLS on');
  }
  let closing: Promise<void> | null = null;
  return {
    url,
    get agentSocket() {
      return frontends.agentSockets[0];
    },
    get agentSockets() {
      return frontends.agentSockets;
    },
    reload,
    announce: () =>
      logger.info({ url, data_dir: opts.dataDir, vault_id: vaultId, sealed: !current(), ssh_agents: frontends.agentSockets }, current() ? 'listening' : 'listening sealed: waiting for operator shares (custos operator unseal)'),
    close: () =>
      (closing ??= (async () => {
        // The gate first: unseal attempts waiting out a delay are refused now, not after it,
        // and an unseal already opening the vault has started its front ends before they stop.
        await gate?.close();
        await stopFrontends();
        await app.close();
        cluster?.close();
        await current()?.close();
        for (const t of tokens) await t.close();
        await lightningBackup?.close();
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
  // SIGHUP re-reads the configuration, as sshd and most daemons do; the outcome is logged.
  process.on('SIGHUP', () => {
    if (!signalled) server.reload().catch(() => {});
  });
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
    server: { url: server.url, agentSocket: server.agentSocket, agentSockets: server.agentSockets, announce: server.announce, reload: server.reload, close: async () => { await close(); rmSync(dataDir, { recursive: true, force: true }); } },
    token: adminToken,
    dataDir,
  };
}
