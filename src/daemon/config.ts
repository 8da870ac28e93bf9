/** `custos.toml`: read, validated with precise errors, and overridden by command-line flags. */
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'smol-toml';
import { CustosError, isCustosError } from '../core/errors.js';
import { DEFAULT_UNSEAL_LIMITS } from './unseal-limits.js';
import { parseNodePin } from '../crypto/cometbft/node-id.js';
import { parsePrivvalAddress } from '../frontends/privval/address.js';
import { PRIVVAL_VERSIONS, type PrivvalVersion } from '../core/privval-version.js';
import { parsePostgresUrl } from '../store/postgres-url.js';
import { DEFAULT_GUARD, type GuardPolicy } from '../accounts/guard.js';
import { DEFAULT_SESSION_LIMITS, type SessionLimits } from '../vault/sessions.js';
import type { ClusterConfig, PeerConfig } from '../cluster/peers.js';

export interface AgentSocketConfig {
  enabled: boolean;
  name: string;
  /** Relative paths are under the data directory. */
  socket: string;
  keys: string[];
  /** Tor keys (purpose tor) reachable through this socket's Tor extensions: labels or patterns with `*`. */
  torKeys: string[];
  allowSha1: boolean;
  allowConfirm: boolean;
  maxConnections: number;
  /** A request not answered by then gets FAILURE (a slow or vanished HSM never hangs a client). */
  requestTimeoutSeconds: number;
}


/** The privval wire encoding of a version: v0.34–v0.38 share `tendermint.privval`. */
export function wireDialect(v: PrivvalVersion): 'v0.38' | 'v1' {
  return v === 'v1' ? 'v1' : 'v0.38';
}

export interface PrivvalConfig {
  name: string;
  chainId: string;
  address: string;
  key: string;
  identityKey: string;
  /** The node's CometBFT version line (see core/privval-version.ts): v0.34, v0.37, v0.38 or v1. */
  dialect: PrivvalVersion;
  allowSignBytes: boolean;
  /**
   * The node id every connection must authenticate as (40 lowercase hex digits), from
   * `tcp://<node-id>@host:port` and/or `node_key`; tcp:// only.
   */
  nodeId?: string;
  /** The node's Ed25519 public key (64 hex digits), when `node_key` was given in that form. */
  nodeKey?: string;
  /** Drop and redial a node silent for this long; absent = the connector's default (10 s). */
  readTimeoutSeconds?: number;
}

/** A PKCS#11 token (`[[pkcs11]]`): its keys are `pkcs11:<name>` in the vault. */
export interface Pkcs11Config {
  name: string;
  module: string;
  tokenLabel?: string;
  serial?: string;
  /** The user PIN comes from a file or an environment variable, never from a flag or this file. */
  pinFile?: string;
  pinEnv?: string;
  sessions: number;
  /** The AES key wrapped keys are wrapped under (created on first use). */
  wrappingKey: string;
}

export interface ServeConfig {
  /** `tls`: certificate chain and key (PEM); relative paths are under the data directory. */
  api: { host: string; port: number; tls?: { cert: string; key: string; clientCa?: string } };
  /** One entry per ssh-agent socket (`[ssh_agent]` or `[[ssh_agent]]` in TOML). */
  sshAgents: AgentSocketConfig[];
  /** CometBFT nodes to sign for (`[[privval]]`). */
  privval: PrivvalConfig[];
  pkcs11: Pkcs11Config[];
  /** `[seal.pkcs11]`: for a vault sealed by an HSM, which token and AES key unseal it. */
  seal: { pkcs11?: { token: string; keyLabel: string; anchorIntervalSeconds: number } };
  approvals: { timeoutSeconds: number };
  /** `anchor_interval_seconds`: how often the anchor file follows the head (0: only at start and stop). */
  audit: { checkpointEvery: number; anchorIntervalSeconds: number };
  /** Refused unseal attempts: more than `maxFailures` within `windowSeconds` get 429 (daemon/unseal.ts). */
  unseal: { maxFailures: number; windowSeconds: number };
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent' };
  /** `[store] url`: a PostgreSQL database instead of the data directory's SQLite file. */
  store: { url?: string };
  /** `[accounts]`: login limits and session lifetimes (vault/accounts.ts, vault/sessions.ts). */
  accounts: { guard: GuardPolicy; sessions: SessionLimits };
  /** `[cluster]`: absent, this node holds no threshold shares with anyone. */
  cluster?: ClusterConfig;
  /**
   * `[lightning]`: where Lightning state records are streamed (a directory, an https:// PUT
   * endpoint, or a postgresql:// database), and a file holding the Authorization header value
   * for an HTTP endpoint. Absent: records are only in the vault's store.
   */
  lightning: { backup?: string; backupAuthorizationFile?: string };
}

export const AGENT_DEFAULTS: AgentSocketConfig = { enabled: true, name: 'default', socket: 'agent/agent.sock', keys: [], torKeys: [], allowSha1: true, allowConfirm: false, maxConnections: 128, requestTimeoutSeconds: 30 };

export const DEFAULTS: ServeConfig = {
  api: { host: '127.0.0.1', port: 8200 },
  sshAgents: [],
  privval: [],
  pkcs11: [],
  seal: {},
  approvals: { timeoutSeconds: 60 },
  audit: { checkpointEvery: 1000, anchorIntervalSeconds: 1 },
  unseal: { maxFailures: DEFAULT_UNSEAL_LIMITS.maxFailures, windowSeconds: DEFAULT_UNSEAL_LIMITS.windowSeconds },
  log: { level: 'info' },
  store: {},
  accounts: { guard: { ...DEFAULT_GUARD }, sessions: { ...DEFAULT_SESSION_LIMITS } },
  lightning: {},
};

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'];

function fail(path: string, what: string): never {
  throw new CustosError('config_invalid', `${path}: ${what}`);
}

const KNOWN: Record<string, string[]> = {
  api: ['host', 'port', 'tls_cert', 'tls_key', 'client_ca'],
  ssh_agent: ['enabled', 'name', 'socket', 'keys', 'tor_keys', 'allow_sha1', 'allow_confirm', 'max_connections', 'request_timeout_seconds'],
  privval: ['name', 'chain_id', 'address', 'key', 'identity_key', 'dialect', 'allow_sign_bytes', 'node_key', 'read_timeout_seconds'],
  pkcs11: ['name', 'module', 'token_label', 'serial', 'pin_file', 'pin_env', 'sessions', 'wrapping_key'],
  seal: ['pkcs11'],
  approvals: ['timeout_seconds'],
  audit: ['checkpoint_every', 'anchor_interval_seconds'],
  unseal: ['max_failures', 'window_seconds'],
  log: ['level'],
  store: ['url'],
  accounts: ['max_failures', 'window_seconds', 'lock_seconds', 'max_delay_seconds', 'address_max_failures', 'session_idle_seconds', 'session_max_seconds'],
  cluster: ['name', 'client_cert', 'client_key', 'ca', 'timeout_seconds', 'peer'],
  'cluster.peer': ['name', 'url', 'certificate_sha256'],
  lightning: ['backup', 'backup_authorization_file'],
};

const NODE_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/** `required`: the operator named this file (--config), so its absence is an error. */
export function loadConfig(path: string | undefined, required = false): ServeConfig {
  const cfg: ServeConfig = structuredClone(DEFAULTS);
  if (!path) return cfg;
  if (!existsSync(path)) {
    if (required) throw new CustosError('config_invalid', `The config file ${path} does not exist.`);
    return cfg;
  }
  let doc: Record<string, unknown>;
  try {
    doc = parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    fail(path, `not valid TOML (${(e as Error).message.split('\n')[0]})`);
  }
  const table = (section: string, value: unknown): Record<string, unknown> => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, `[${section}] must be a table`);
    for (const k of Object.keys(value)) if (!KNOWN[section]!.includes(k)) fail(path, `unknown key ${section}.${k}`);
    return value as Record<string, unknown>;
  };
  for (const [section, value] of Object.entries(doc)) {
    if (!Object.hasOwn(KNOWN, section)) fail(path, `unknown section [${section}] (known: ${Object.keys(KNOWN).join(', ')})`);
    if (!((section === 'ssh_agent' || section === 'privval' || section === 'pkcs11') && Array.isArray(value))) table(section, value);
  }
  const bool = (v: unknown, what: string): boolean => (typeof v === 'boolean' ? v : fail(path, `${what} must be true or false`));
  const int = (v: unknown, what: string, min: number, max: number): number => {
    const n = typeof v === 'number' || typeof v === 'bigint' ? Number(v) : NaN;
    if (!Number.isInteger(n) || n < min || n > max) fail(path, `${what} must be an integer from ${min} to ${max}`);
    return n;
  };

  const api = (doc.api ?? {}) as Record<string, unknown>;
  if (api.host !== undefined) {
    if (typeof api.host !== 'string') fail(path, 'api.host must be a string');
    cfg.api.host = api.host;
  }
  if (api.port !== undefined) cfg.api.port = parsePort(api.port, `${path}: api.port`);
  if (api.tls_cert !== undefined || api.tls_key !== undefined) {
    if (typeof api.tls_cert !== 'string' || typeof api.tls_key !== 'string' || !api.tls_cert || !api.tls_key) fail(path, 'give both api.tls_cert and api.tls_key (PEM files), or neither');
    cfg.api.tls = { cert: api.tls_cert, key: api.tls_key };
  }
  if (api.client_ca !== undefined) {
    if (typeof api.client_ca !== 'string' || !api.client_ca) fail(path, 'api.client_ca must be the path of the CA file (PEM) client certificates chain to');
    if (!cfg.api.tls) fail(path, 'api.client_ca (mutual TLS) needs TLS: give api.tls_cert and api.tls_key too');
    cfg.api.tls.clientCa = api.client_ca;
  }

  const agents = doc.ssh_agent === undefined ? [] : Array.isArray(doc.ssh_agent) ? doc.ssh_agent : [doc.ssh_agent];
  for (const raw of agents) {
    const a = table('ssh_agent', raw);
    const c: AgentSocketConfig = { ...AGENT_DEFAULTS, keys: [], torKeys: [] };
    if (a.enabled !== undefined) c.enabled = bool(a.enabled, 'ssh_agent.enabled');
    if (a.allow_sha1 !== undefined) c.allowSha1 = bool(a.allow_sha1, 'ssh_agent.allow_sha1');
    if (a.allow_confirm !== undefined) c.allowConfirm = bool(a.allow_confirm, 'ssh_agent.allow_confirm');
    if (a.name !== undefined) {
      if (typeof a.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/.test(a.name)) fail(path, 'ssh_agent.name must be 1–32 letters, digits, _ or -');
      c.name = a.name;
    }
    if (a.socket !== undefined) {
      if (typeof a.socket !== 'string' || a.socket.length === 0 || a.socket.length > 100) fail(path, 'ssh_agent.socket must be a path of at most 100 characters');
      c.socket = a.socket;
    }
    if (a.request_timeout_seconds !== undefined) c.requestTimeoutSeconds = int(a.request_timeout_seconds, 'ssh_agent.request_timeout_seconds', 1, 3600);
    if (a.tor_keys !== undefined) {
      if (!Array.isArray(a.tor_keys) || a.tor_keys.some((k) => typeof k !== 'string' || k.length === 0 || k.length > 128)) fail(path, 'ssh_agent.tor_keys must be a list of label patterns');
      c.torKeys = a.tor_keys as string[];
    }
    if (a.keys !== undefined) {
      if (!Array.isArray(a.keys) || a.keys.some((k) => typeof k !== 'string')) fail(path, 'ssh_agent.keys must be a list of label patterns');
      c.keys = a.keys as string[];
    }
    if (a.max_connections !== undefined) c.maxConnections = int(a.max_connections, 'ssh_agent.max_connections', 1, 10_000);
    if (cfg.sshAgents.some((o) => o.name === c.name)) fail(path, `two [[ssh_agent]] sockets are named "${c.name}"; give each a distinct name`);
    if (cfg.sshAgents.some((o) => o.socket === c.socket)) fail(path, `two [[ssh_agent]] sockets use the path ${c.socket}`);
    cfg.sshAgents.push(c);
  }

  const validators = doc.privval === undefined ? [] : Array.isArray(doc.privval) ? doc.privval : [doc.privval];
  for (const [i, raw] of validators.entries()) {
    const p = table('privval', raw);
    const entry = typeof p.name === 'string' ? `[[privval]] "${p.name}"` : `[[privval]] number ${i + 1}`;
    const str = (v: unknown, what: string, re: RegExp): string => (typeof v === 'string' && re.test(v) ? v : fail(path, `${entry}: ${what} is missing or invalid`));
    const c: PrivvalConfig = {
      name: str(p.name, 'name', /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/),
      chainId: str(p.chain_id, 'chain_id', /^[\x21-\x7e]{1,50}$/),
      address: str(p.address, 'address', /^(tcp|unix):\/\/\S{1,1000}$/),
      key: str(p.key, 'key', /^\S{1,128}$/),
      identityKey: p.identity_key === undefined ? '' : str(p.identity_key, 'identity_key', /^\S{1,128}$/),
      dialect: p.dialect === undefined ? 'v0.38' : PRIVVAL_VERSIONS.includes(p.dialect as PrivvalVersion) ? (p.dialect as PrivvalVersion) : fail(path, `${entry}: dialect (one of ${PRIVVAL_VERSIONS.join(', ')}) is missing or invalid`),
      allowSignBytes: p.allow_sign_bytes === undefined ? false : bool(p.allow_sign_bytes, `${entry}: allow_sign_bytes`),
    };
    // The node pin: the id in the address (tmkms's form), node_key as the 40-hex id or the
    // 64-hex public key, or both, which must then name the same node.
    let addressNodeId: string | undefined;
    try {
      const ep = parsePrivvalAddress(c.address);
      if (ep.kind === 'tcp') addressNodeId = ep.nodeId;
    } catch (e) {
      fail(path, `privval "${c.name}": ${isCustosError(e) ? e.message : 'the address is invalid.'}`);
    }
    if (p.node_key !== undefined) {
      if (typeof p.node_key !== 'string') fail(path, `privval "${c.name}": node_key must be a string`);
      let pin;
      try {
        pin = parseNodePin(p.node_key);
      } catch (e) {
        fail(path, `privval "${c.name}": node_key is invalid. ${isCustosError(e) ? e.message : ''}`.trim());
      }
      if (addressNodeId !== undefined && addressNodeId !== pin.nodeId) {
        fail(path, `privval "${c.name}": node_key names node ${pin.nodeId} but the address names node ${addressNodeId}; they must agree`);
      }
      c.nodeId = pin.nodeId;
      if (pin.publicKey) c.nodeKey = Buffer.from(pin.publicKey).toString('hex');
    } else if (addressNodeId !== undefined) c.nodeId = addressNodeId;
    if (c.nodeId !== undefined && !c.address.startsWith('tcp://')) {
      fail(path, `privval "${c.name}": node_key needs a tcp:// address; a unix:// socket has no SecretConnection handshake to check it`);
    }
    if (p.read_timeout_seconds !== undefined) c.readTimeoutSeconds = int(p.read_timeout_seconds, `${entry}: read_timeout_seconds`, 1, 3600);
    if (c.address.startsWith('tcp://') && !c.identityKey) fail(path, `privval "${c.name}": a tcp:// node needs identity_key (an ed25519 vault key for SecretConnection)`);
    if (cfg.privval.some((o) => o.name === c.name)) fail(path, `two [[privval]] entries are named "${c.name}"`);
    cfg.privval.push(c);
  }

  const tokens = doc.pkcs11 === undefined ? [] : Array.isArray(doc.pkcs11) ? doc.pkcs11 : [doc.pkcs11];
  for (const raw of tokens) {
    const t = table('pkcs11', raw);
    const str = (v: unknown, what: string, re: RegExp): string => (typeof v === 'string' && re.test(v) ? v : fail(path, `pkcs11.${what} is missing or invalid`));
    const c: Pkcs11Config = {
      name: str(t.name, 'name', /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
      module: str(t.module, 'module', /^\/\S{1,4095}$/),
      sessions: t.sessions === undefined ? 8 : int(t.sessions, 'pkcs11.sessions', 1, 256),
      wrappingKey: t.wrapping_key === undefined ? 'custos-wrapping-key' : str(t.wrapping_key, 'wrapping_key', /^[\x20-\x7e]{1,64}$/),
    };
    if (t.token_label !== undefined) c.tokenLabel = str(t.token_label, 'token_label', /^[\x20-\x7e]{1,32}$/);
    if (t.serial !== undefined) c.serial = str(t.serial, 'serial', /^[\x20-\x7e]{1,16}$/);
    if ((c.tokenLabel === undefined) === (c.serial === undefined)) fail(path, `pkcs11 "${c.name}": give exactly one of token_label and serial`);
    if (t.pin_file !== undefined) c.pinFile = str(t.pin_file, 'pin_file', /^\S{1,4095}$/);
    if (t.pin_env !== undefined) c.pinEnv = str(t.pin_env, 'pin_env', /^[A-Z_][A-Z0-9_]{0,63}$/);
    if ((c.pinFile === undefined) === (c.pinEnv === undefined)) fail(path, `pkcs11 "${c.name}": give the PIN by exactly one of pin_file and pin_env (never in this file)`);
    if (cfg.pkcs11.some((o) => o.name === c.name)) fail(path, `two [[pkcs11]] tokens are named "${c.name}"`);
    cfg.pkcs11.push(c);
  }
  const seal = (doc.seal ?? {}) as Record<string, unknown>;
  if (seal.pkcs11 !== undefined) {
    const sp = seal.pkcs11 as Record<string, unknown>;
    if (typeof sp !== 'object' || sp === null || Array.isArray(sp)) fail(path, '[seal.pkcs11] must be a table');
    for (const k of Object.keys(sp)) if (k !== 'token' && k !== 'key_label' && k !== 'anchor_interval_seconds') fail(path, `unknown key seal.pkcs11.${k}`);
    if (typeof sp.token !== 'string' || !cfg.pkcs11.some((t) => t.name === sp.token)) fail(path, 'seal.pkcs11.token must name a [[pkcs11]] token');
    const keyLabel = sp.key_label === undefined ? 'custos-seal' : sp.key_label;
    if (typeof keyLabel !== 'string' || !/^[\x20-\x7e]{1,64}$/.test(keyLabel)) fail(path, 'seal.pkcs11.key_label must be a printable label');
    const anchorIntervalSeconds = sp.anchor_interval_seconds === undefined ? 60 : int(sp.anchor_interval_seconds, 'seal.pkcs11.anchor_interval_seconds', 0, 86_400);
    cfg.seal.pkcs11 = { token: sp.token, keyLabel, anchorIntervalSeconds };
  }

  const approvals = (doc.approvals ?? {}) as Record<string, unknown>;
  if (approvals.timeout_seconds !== undefined) cfg.approvals.timeoutSeconds = int(approvals.timeout_seconds, 'approvals.timeout_seconds', 1, 86_400);
  const audit = (doc.audit ?? {}) as Record<string, unknown>;
  if (audit.checkpoint_every !== undefined) cfg.audit.checkpointEvery = int(audit.checkpoint_every, 'audit.checkpoint_every', 1, 1_000_000);
  if (audit.anchor_interval_seconds !== undefined) cfg.audit.anchorIntervalSeconds = int(audit.anchor_interval_seconds, 'audit.anchor_interval_seconds', 0, 3600);
  const acc = (doc.accounts ?? {}) as Record<string, unknown>;
  const g = cfg.accounts.guard;
  if (acc.max_failures !== undefined) g.maxFailures = int(acc.max_failures, 'accounts.max_failures', 1, 1000);
  if (acc.window_seconds !== undefined) g.windowSeconds = int(acc.window_seconds, 'accounts.window_seconds', 1, 86_400);
  if (acc.lock_seconds !== undefined) g.lockSeconds = int(acc.lock_seconds, 'accounts.lock_seconds', 0, 30 * 86_400);
  if (acc.max_delay_seconds !== undefined) g.maxDelaySeconds = int(acc.max_delay_seconds, 'accounts.max_delay_seconds', 0, 3600);
  if (acc.address_max_failures !== undefined) g.addressMaxFailures = int(acc.address_max_failures, 'accounts.address_max_failures', 1, 1_000_000);
  if (acc.session_idle_seconds !== undefined) cfg.accounts.sessions.idleSeconds = int(acc.session_idle_seconds, 'accounts.session_idle_seconds', 1, 86_400);
  if (acc.session_max_seconds !== undefined) cfg.accounts.sessions.absoluteSeconds = int(acc.session_max_seconds, 'accounts.session_max_seconds', 1, 30 * 86_400);
  const unseal = (doc.unseal ?? {}) as Record<string, unknown>;
  if (unseal.max_failures !== undefined) cfg.unseal.maxFailures = int(unseal.max_failures, 'unseal.max_failures', 1, 1000);
  if (unseal.window_seconds !== undefined) cfg.unseal.windowSeconds = int(unseal.window_seconds, 'unseal.window_seconds', 1, 3600);
  const log = (doc.log ?? {}) as Record<string, unknown>;
  if (log.level !== undefined) {
    if (typeof log.level !== 'string' || !LEVELS.includes(log.level)) fail(path, `log.level must be one of ${LEVELS.join(', ')}`);
    cfg.log.level = log.level as ServeConfig['log']['level'];
  }
  if (doc.cluster !== undefined) cfg.cluster = clusterSection(path, doc.cluster as Record<string, unknown>, cfg, table, int);
  const ln = (doc.lightning ?? {}) as Record<string, unknown>;
  if (ln.backup !== undefined) {
    if (typeof ln.backup !== 'string' || ln.backup.length === 0 || ln.backup.length > 1024) fail(path, 'lightning.backup is a directory, an https:// URL, or a postgresql:// URL');
    if (/^http:\/\//.test(ln.backup) && !/^http:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(ln.backup)) fail(path, 'lightning.backup over HTTP is https:// (plain http:// only on loopback)');
    // A directory is relative to the data directory, as every other path here.
    cfg.lightning.backup = ln.backup;
  }
  if (ln.backup_authorization_file !== undefined) {
    if (typeof ln.backup_authorization_file !== 'string') fail(path, 'lightning.backup_authorization_file is a path');
    cfg.lightning.backupAuthorizationFile = ln.backup_authorization_file;
  }
  const store = (doc.store ?? {}) as Record<string, unknown>;
  if (store.url !== undefined) {
    if (typeof store.url !== 'string') fail(path, 'store.url must be a postgresql:// URL (or leave [store] out for the SQLite file in the data directory)');
    try {
      parsePostgresUrl(store.url);
    } catch (e) {
      fail(path, `store.url: ${(e as Error).message}`);
    }
    cfg.store.url = store.url;
  }
  return cfg;
}

function clusterSection(
  path: string,
  c: Record<string, unknown>,
  cfg: ServeConfig,
  table: (section: string, v: unknown) => Record<string, unknown>,
  int: (v: unknown, what: string, min: number, max: number) => number,
): ClusterConfig {
  const str = (v: unknown, what: string, re: RegExp, hint: string): string => (typeof v === 'string' && re.test(v) ? v : fail(path, `${what} is missing or invalid: ${hint}`));
  const file = (v: unknown, what: string) => str(v, what, /^\S{1,4095}$/, 'a PEM file');
  const name = str(c.name, 'cluster.name', NODE_NAME, "this node's name among its cosigners (1–32 lowercase letters, digits, _ or -)");
  if (!cfg.api.tls?.clientCa) fail(path, '[cluster] needs mutual TLS on the API (api.tls_cert, api.tls_key and api.client_ca): cosigners know each other by their client certificates');
  const peersRaw = c.peer === undefined ? [] : Array.isArray(c.peer) ? c.peer : [c.peer];
  const peers: PeerConfig[] = [];
  for (const raw of peersRaw) {
    const p = table('cluster.peer', raw);
    const peer: PeerConfig = {
      name: str(p.name, 'cluster.peer.name', NODE_NAME, '1–32 lowercase letters, digits, _ or -'),
      url: str(p.url, 'cluster.peer.url', /^https:\/\/[^\s/]{1,255}\/?$/, 'https://host:port (cosigners talk over mutual TLS only)'),
      certificateSha256: str(typeof p.certificate_sha256 === 'string' ? p.certificate_sha256.replace(/:/g, '').toLowerCase() : p.certificate_sha256, 'cluster.peer.certificate_sha256', /^[0-9a-f]{64}$/, "the SHA-256 of the peer's client certificate (64 hex digits; `custos cluster identity` on the peer prints it)"),
    };
    if (peer.name === name) fail(path, `[[cluster.peer]] "${peer.name}" has this node's own name`);
    if (peers.some((o) => o.name === peer.name)) fail(path, `two [[cluster.peer]] entries are named "${peer.name}"`);
    if (peers.some((o) => o.certificateSha256 === peer.certificateSha256)) fail(path, `two [[cluster.peer]] entries have the certificate ${peer.certificateSha256}`);
    peers.push(peer);
  }
  if (peers.length > 15) fail(path, 'at most 15 [[cluster.peer]] entries (16 cosigners)');
  return {
    name,
    clientCert: file(c.client_cert, 'cluster.client_cert'),
    clientKey: file(c.client_key, 'cluster.client_key'),
    ca: c.ca === undefined ? cfg.api.tls.clientCa : file(c.ca, 'cluster.ca'),
    timeoutSeconds: c.timeout_seconds === undefined ? 5 : int(c.timeout_seconds, 'cluster.timeout_seconds', 1, 300),
    peers,
  };
}

export function parsePort(v: unknown, what = 'port'): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' && typeof n !== 'bigint') throw new CustosError('config_invalid', `${what} must be a number from 0 to 65535`);
  const p = Number(n);
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new CustosError('config_invalid', `${what} must be a number from 0 to 65535`);
  return p;
}
