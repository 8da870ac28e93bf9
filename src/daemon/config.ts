/** `custos.toml`: read, validated with precise errors, and overridden by command-line flags. */
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'smol-toml';
import { CustosError } from '../core/errors.js';

export interface ServeConfig {
  api: { host: string; port: number };
  sshAgent: { enabled: boolean; name: string; socket: string; keys: string[]; allowSha1: boolean; allowConfirm: boolean; maxConnections: number };
  approvals: { timeoutSeconds: number };
  audit: { checkpointEvery: number };
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent' };
}

export const DEFAULTS: ServeConfig = {
  api: { host: '127.0.0.1', port: 8200 },
  sshAgent: { enabled: false, name: 'default', socket: 'agent/agent.sock', keys: [], allowSha1: true, allowConfirm: false, maxConnections: 128 },
  approvals: { timeoutSeconds: 60 },
  audit: { checkpointEvery: 1000 },
  log: { level: 'info' },
};

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'];

function fail(path: string, what: string): never {
  throw new CustosError('config_invalid', `${path}: ${what}`);
}

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
  const known: Record<string, string[]> = {
    api: ['host', 'port'],
    ssh_agent: ['enabled', 'name', 'socket', 'keys', 'allow_sha1', 'allow_confirm', 'max_connections'],
    approvals: ['timeout_seconds'],
    audit: ['checkpoint_every'],
    log: ['level'],
  };
  for (const [section, value] of Object.entries(doc)) {
    if (!Object.hasOwn(known, section)) fail(path, `unknown section [${section}] (known: ${Object.keys(known).join(', ')})`);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, `[${section}] must be a table`);
    for (const k of Object.keys(value)) if (!known[section]!.includes(k)) fail(path, `unknown key ${section}.${k}`);
  }
  const api = (doc.api ?? {}) as Record<string, unknown>;
  if (api.host !== undefined) {
    if (typeof api.host !== 'string') fail(path, 'api.host must be a string');
    cfg.api.host = api.host;
  }
  if (api.port !== undefined) cfg.api.port = parsePort(api.port, `${path}: api.port`);
  const agent = (doc.ssh_agent ?? {}) as Record<string, unknown>;
  const bool = (v: unknown, what: string): boolean => (typeof v === 'boolean' ? v : fail(path, `${what} must be true or false`));
  if (agent.enabled !== undefined) cfg.sshAgent.enabled = bool(agent.enabled, 'ssh_agent.enabled');
  if (agent.allow_sha1 !== undefined) cfg.sshAgent.allowSha1 = bool(agent.allow_sha1, 'ssh_agent.allow_sha1');
  if (agent.allow_confirm !== undefined) cfg.sshAgent.allowConfirm = bool(agent.allow_confirm, 'ssh_agent.allow_confirm');
  const approvals = (doc.approvals ?? {}) as Record<string, unknown>;
  if (approvals.timeout_seconds !== undefined) {
    const n = typeof approvals.timeout_seconds === 'number' || typeof approvals.timeout_seconds === 'bigint' ? Number(approvals.timeout_seconds) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 86_400) fail(path, 'approvals.timeout_seconds must be an integer from 1 to 86400');
    cfg.approvals.timeoutSeconds = n;
  }
  if (agent.name !== undefined) {
    if (typeof agent.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/.test(agent.name)) fail(path, 'ssh_agent.name must be 1–32 letters, digits, _ or -');
    cfg.sshAgent.name = agent.name;
  }
  if (agent.socket !== undefined) {
    if (typeof agent.socket !== 'string' || agent.socket.length === 0 || agent.socket.length > 100) fail(path, 'ssh_agent.socket must be a path of at most 100 characters');
    cfg.sshAgent.socket = agent.socket;
  }
  if (agent.keys !== undefined) {
    if (!Array.isArray(agent.keys) || agent.keys.some((k) => typeof k !== 'string')) fail(path, 'ssh_agent.keys must be a list of label patterns');
    cfg.sshAgent.keys = agent.keys as string[];
  }
  if (agent.max_connections !== undefined) {
    const n = typeof agent.max_connections === 'number' || typeof agent.max_connections === 'bigint' ? Number(agent.max_connections) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 10_000) fail(path, 'ssh_agent.max_connections must be an integer from 1 to 10000');
    cfg.sshAgent.maxConnections = n;
  }
  const audit = (doc.audit ?? {}) as Record<string, unknown>;
  if (audit.checkpoint_every !== undefined) {
    const n = typeof audit.checkpoint_every === 'number' || typeof audit.checkpoint_every === 'bigint' ? Number(audit.checkpoint_every) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 1_000_000) fail(path, 'audit.checkpoint_every must be an integer from 1 to 1000000');
    cfg.audit.checkpointEvery = n;
  }
  const log = (doc.log ?? {}) as Record<string, unknown>;
  if (log.level !== undefined) {
    if (typeof log.level !== 'string' || !LEVELS.includes(log.level)) fail(path, `log.level must be one of ${LEVELS.join(', ')}`);
    cfg.log.level = log.level as ServeConfig['log']['level'];
  }
  return cfg;
}

export function parsePort(v: unknown, what = 'port'): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' && typeof n !== 'bigint') throw new CustosError('config_invalid', `${what} must be a number from 0 to 65535`);
  const p = Number(n);
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new CustosError('config_invalid', `${what} must be a number from 0 to 65535`);
  return p;
}
