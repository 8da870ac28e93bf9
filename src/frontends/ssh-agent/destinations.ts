/**
 * Destination restriction (`ssh-add -h`, restrict-destination-v00@openssh.com), enforced as
 * OpenSSH's agent does (`identity_permitted` in ssh-agent.c): the connection's session binds
 * form a path of hops, origin → host 1 → host 2 ...; every hop must be allowed by one of the
 * key's constraints, hops before the last must be forwarding binds, and the user is matched
 * only at the last hop. A constrained key signs only userauth requests for the most recently
 * bound session and host key.
 *
 * Host certificates matched through a CA entry (`@cert-authority` in the known_hosts given to
 * ssh-add -H) are not supported yet: such entries match nothing, so the key is refused
 * (fail closed) rather than allowed.
 */
import { equalBytes } from '../../core/bytes.js';
import type { DestinationConstraint } from './codec.js';

export interface SessionBind {
  hostKey: Uint8Array;
  sessionId: Uint8Array;
  isForwarding: boolean;
}

/** The stored form (key attribute `ssh.destinations`): JSON with base64 key blobs. */
interface StoredHop {
  user: string;
  hostname: string;
  keys: Array<{ blob: string; ca: boolean }>;
}
interface Stored {
  from: StoredHop;
  to: StoredHop;
}

export function encodeDestinations(cs: DestinationConstraint[]): string {
  const hop = (h: DestinationConstraint['from']): StoredHop => ({
    user: h.user,
    hostname: h.hostname,
    keys: h.hostKeys.map((k) => ({ blob: Buffer.from(k.blob).toString('base64'), ca: k.isCa })),
  });
  return JSON.stringify(cs.map((c) => ({ from: hop(c.from), to: hop(c.to) })));
}

interface Hop {
  user: string;
  hostname: string;
  keys: Array<{ blob: Uint8Array; ca: boolean }>;
}
export interface Destination {
  from: Hop;
  to: Hop;
}

export function decodeDestinations(json: string): Destination[] {
  const hop = (h: StoredHop): Hop => ({ user: h.user, hostname: h.hostname, keys: h.keys.map((k) => ({ blob: new Uint8Array(Buffer.from(k.blob, 'base64')), ca: k.ca })) });
  return (JSON.parse(json) as Stored[]).map((c) => ({ from: hop(c.from), to: hop(c.to) }));
}

function matchKeyHop(key: Uint8Array, hop: Hop): boolean {
  return hop.keys.some((k) => !k.ca && equalBytes(k.blob, key));
}

/** OpenSSH's match_pattern: `*` and `?` wildcards. */
function matchPattern(s: string, pattern: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(s);
}

function permittedBy(fromKey: Uint8Array | null, toKey: Uint8Array | null, dests: Destination[], user: string | null): boolean {
  return dests.some((d) => {
    if (fromKey === null) {
      // The first hop starts at the origin: only a constraint whose "from" is empty.
      if (d.from.hostname !== '' || d.from.keys.length !== 0) return false;
    } else if (!matchKeyHop(fromKey, d.from)) return false;
    if (toKey !== null && !matchKeyHop(toKey, d.to)) return false;
    if (d.to.user !== '' && user !== null && !matchPattern(user, d.to.user)) return false;
    return true;
  });
}

/**
 * Whether a constrained key may be used on a connection with these binds. `user` is given
 * for a sign request (and then the last hop must be an authentication bind), null for a
 * listing or removal.
 */
export function identityPermitted(dests: Destination[], binds: SessionBind[], bindAttempted: boolean, user: string | null): boolean {
  // A connection that tried to bind and has no bind is not "local use" (OpenSSH 9.6+).
  if (bindAttempted && binds.length === 0) return false;
  if (binds.length === 0) return true; // local use: the agent's own host
  let fromKey: Uint8Array | null = null;
  for (let i = 0; i < binds.length; i++) {
    const b = binds[i]!;
    const last = i === binds.length - 1;
    if (last) {
      if (b.isForwarding && user !== null) return false; // signing on a forwarding hop
    } else if (!b.isForwarding) return false; // forwarding through an authentication bind
    if (!permittedBy(fromKey, b.hostKey, dests, last ? user : null)) return false;
    fromKey = b.hostKey;
  }
  // Listing through a forwarded agent: show the key only if it may go further from here.
  const lastBind = binds[binds.length - 1]!;
  if (lastBind.isForwarding && user === null && !permittedBy(lastBind.hostKey, null, dests, null)) return false;
  return true;
}
