/**
 * PostgreSQL URLs as libpq reads them (several hosts, `target_session_attrs`), parsed without
 * loading the driver: the config check and `custos init` read them too.
 */
import { CustosError } from '../core/errors.js';
import { printable } from '../core/text.js';

export interface PgTarget {
  host: string;
  port: number;
}

export interface PgLocation {
  targets: PgTarget[];
  user?: string;
  password?: string;
  database?: string;
  /** `read-write` (default: only a primary will do) or `any`. */
  sessionAttrs: 'read-write' | 'any';
  /** Query parameters passed on to the connection (sslmode, application_name, connect_timeout). */
  params: Record<string, string>;
}

/** Parses a libpq-style URL, several hosts included; throws `bad_request` with a sentence. */
export function parsePostgresUrl(url: string): PgLocation {
  const bad = (why: string) => new CustosError('bad_request', `The store URL is not a PostgreSQL URL Custos can use (${why}); write it as postgresql://user@host:5432/database, with more hosts separated by commas.`);
  // The user information runs to the LAST @ (a password may hold an unencoded @ or /), so
  // nothing of a password is ever taken for a host and shown.
  const m = /^(postgres(?:ql)?):\/\/(?:(.*)@)?([^@/?#]*)(?:\/([^?#]*))?(?:\?([^#]*))?$/s.exec(url);
  if (!m) throw bad('its shape');
  const [, , userinfo, hosts, database, query] = m;
  const colon = userinfo === undefined ? -1 : userinfo.indexOf(':');
  const user = userinfo === undefined ? undefined : colon < 0 ? userinfo : userinfo.slice(0, colon);
  const password = userinfo === undefined || colon < 0 ? undefined : userinfo.slice(colon + 1);
  const decode = (v: string, what: string) => {
    try {
      return decodeURIComponent(v);
    } catch {
      throw bad(`the ${what} is not percent-encoded correctly`);
    }
  };
  const targets: PgTarget[] = [];
  for (const h of (hosts ?? '').split(',')) {
    const hm = /^(\[[0-9a-fA-F:]+\]|[^:[\]]+)(?::([0-9]{1,5}))?$/.exec(h);
    if (!hm) throw bad(`host "${printable(h, 60)}"`);
    const port = hm[2] ? Number(hm[2]) : 5432;
    if (port < 1 || port > 65535) throw bad(`port ${port}`);
    targets.push({ host: decode(hm[1]!.replace(/^\[|\]$/g, ''), 'host'), port });
  }
  const params: Record<string, string> = {};
  let sessionAttrs: PgLocation['sessionAttrs'] = 'read-write';
  for (const [k, v] of new URLSearchParams(query ?? '')) {
    if (k === 'target_session_attrs') {
      if (v !== 'read-write' && v !== 'any') throw bad(`target_session_attrs=${printable(v, 30)}: use read-write or any`);
      sessionAttrs = v;
    } else params[k] = v;
  }
  return {
    targets,
    ...(user ? { user: decode(user, 'user') } : {}),
    ...(password !== undefined ? { password: decode(password, 'password') } : {}),
    ...(database ? { database: decode(database, 'database name') } : {}),
    sessionAttrs,
    params,
  };
}

/** The URL for sentences and logs: every host, never the password. */
export function describePostgresUrl(loc: PgLocation): string {
  return `postgresql://${loc.user ? `${loc.user}@` : ''}${loc.targets.map((t) => `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`).join(',')}/${loc.database ?? ''}`;
}
