/**
 * The server's side of OPAQUE (RFC 9807, through `@serenity-kit/opaque`): account passwords
 * that the vault never learns. What this module adds to the library:
 *
 * - The server setup (the OPRF seed and the server's static key pair) is made once and kept
 *   sealed under a subkey of the vault root (`sealSetup`), like key material.
 * - Each user name's `user_seed` is derived from a subkey of the root and the name (HKDF), and
 *   the credential identifier the library derives the OPRF key from is HMAC(user_seed, domain).
 *   Because the seed depends only on the name, a name answers with the same OPRF key before its
 *   account exists, after, and if it never does: nothing an observer can replay tells them
 *   apart (a random seed would change the OPRF answer the moment an account was made).
 * - An unknown user name runs the same protocol against the library's fake record.
 * - The server's login state between the two messages is sealed and handed to the client,
 *   bound to its credential, deadline, start id, source address and password version: any
 *   node sharing the root can finish it, once (the vault records the start id), from the
 *   address that started it, and not after a password change.
 *
 * The library takes and returns base64url strings, its setup included: the setup string is
 * kept for the life of the server object (one copy, rather than one per call), the one secret
 * this code holds as text because the library's API has no other form. Everything decoded from
 * the library's strings is decoded into memory of its own, so a wipe leaves no copy behind.
 */
import * as opaque from '@serenity-kit/opaque';
import { createHmac, randomBytes } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { concatBytes, decodeUnpooled, utf8, wipe } from '../core/bytes.js';
import { open, seal } from '../crypto/aead.js';
import { deriveSubkey } from '../crypto/kdf.js';

/** How long a started login may wait for its finish. */
export const LOGIN_WINDOW_MS = 60_000;
/** The most a client message may be (OPAQUE's are a few hundred base64url characters). */
const MAX_MESSAGE = 4096;
const B64URL = /^[A-Za-z0-9_-]+$/;
const START_ID_BYTES = 16;

const setupKey = (key: Uint8Array, vaultId: string) => deriveSubkey(key, utf8(vaultId), 'custos/v1/opaque-setup');

/** A new server setup, sealed under the accounts key: stored once per vault. */
export async function sealSetup(key: Uint8Array, vaultId: string): Promise<Uint8Array> {
  await opaque.ready;
  const setup = decodeUnpooled(opaque.server.createSetup(), 'base64url');
  const k = setupKey(key, vaultId);
  try {
    return seal(k, setup, utf8(`custos-opaque-setup-v1\n${vaultId}`));
  } finally {
    wipe(setup);
    wipe(k);
  }
}

function message(m: unknown, what: string): string {
  if (typeof m !== 'string' || m.length === 0 || m.length > MAX_MESSAGE || !B64URL.test(m)) {
    throw new CustosError('bad_request', `The ${what} is not an OPAQUE message (base64url, at most ${MAX_MESSAGE} characters).`);
  }
  return m;
}

/** Runs a library call on client input; its failure is the client's (a malformed message). */
function protocol<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch {
    throw new CustosError('bad_request', `The ${what} could not be read as an OPAQUE message.`);
  }
}

export interface LoginStart {
  /** KE2, for the client. */
  response: string;
  /** The server's state, sealed: the client returns it with its finish (any node can finish). */
  state: string;
  /** What the vault records so that the state is finished once. */
  startId: string;
}

/** What a login state is bound to besides its own deadline and start id. */
export interface LoginBinding {
  credentialId: string;
  address: string;
  passwordVersion: number;
}

export class OpaqueServer {
  private constructor(
    private readonly setup: string,
    private readonly seedKey: Uint8Array,
    private readonly stateKey: Uint8Array,
  ) {}

  /** Opens the sealed setup; fails closed with a sentence when it does not open. */
  static async open(sealed: Uint8Array, key: Uint8Array, vaultId: string): Promise<OpaqueServer> {
    await opaque.ready;
    const k = setupKey(key, vaultId);
    const setup = open(k, sealed, utf8(`custos-opaque-setup-v1\n${vaultId}`));
    wipe(k);
    if (!setup) throw new CustosError('database_corrupt', 'The accounts\' OPAQUE setup does not open under this vault\'s root: it was altered or copied from another vault. Restore the database from a backup.');
    const text = Buffer.from(setup.buffer, setup.byteOffset, setup.byteLength).toString('base64url');
    wipe(setup);
    return new OpaqueServer(text, deriveSubkey(key, utf8(vaultId), 'custos/v1/opaque-user-seed'), deriveSubkey(key, utf8(vaultId), 'custos/v1/opaque-login-state'));
  }

  /** The server's static public key (clients may pin it: OPAQUE authenticates the server too). */
  publicKey(): string {
    return opaque.server.getPublicKey(this.setup);
  }

  /** A user name's seed: the same for a name whether or not it has an account. The caller wipes it. */
  userSeed(name: string): Uint8Array {
    return deriveSubkey(this.seedKey, utf8(name), 'custos/v1/user-seed');
  }

  /** The identifier the library derives a name's OPRF key from: from its user_seed, with a domain separator. */
  credentialId(name: string): string {
    const seed = this.userSeed(name);
    try {
      return createHmac('sha256', seed).update('custos/v1/opaque-oprf-key').digest('hex');
    } finally {
      wipe(seed);
    }
  }

  /** The answer to a registration request (password set or changed). */
  registrationResponse(credentialId: string, request: unknown): string {
    const registrationRequest = message(request, 'registration request');
    return protocol('registration request', () => opaque.server.createRegistrationResponse({ serverSetup: this.setup, userIdentifier: credentialId, registrationRequest })).registrationResponse;
  }

  /**
   * Checks a client's registration record before it is stored: its form, and that a login
   * against it runs (a record the library cannot use would make the name answer unlike others).
   */
  checkRecord(credentialId: string, record: unknown): string {
    const r = message(record, 'registration record');
    if (r.length !== 256) throw new CustosError('bad_request', 'The registration record has the wrong length for this server\'s OPAQUE suite.');
    const probe = opaque.client.startLogin({ password: randomBytes(16).toString('hex') });
    protocol('registration record', () => opaque.server.startLogin({ serverSetup: this.setup, registrationRecord: r, startLoginRequest: probe.startLoginRequest, userIdentifier: credentialId }));
    return r;
  }

  /**
   * KE1 in, KE2 out. `record` null: the user name has no account (or none with a password);
   * the library answers from a fake record, so the answer looks the same. A record the library
   * cannot use was stored by something other than this code: `database_corrupt`.
   */
  startLogin(b: LoginBinding, record: string | null, request: unknown, now = Date.now()): LoginStart {
    const startLoginRequest = message(request, 'login request');
    let started: { serverLoginState: string; loginResponse: string };
    try {
      started = opaque.server.startLogin({ serverSetup: this.setup, registrationRecord: record, startLoginRequest, userIdentifier: b.credentialId });
    } catch {
      // The same call against the fake record tells whose fault it is.
      protocol('login request', () => opaque.server.startLogin({ serverSetup: this.setup, registrationRecord: null, startLoginRequest, userIdentifier: b.credentialId }));
      throw new CustosError('database_corrupt', 'A stored registration record cannot be used; restore the database from a backup.');
    }
    const deadline = now + LOGIN_WINDOW_MS;
    const startId = randomBytes(START_ID_BYTES).toString('hex');
    const state = decodeUnpooled(started.serverLoginState, 'utf8');
    try {
      const sealed = seal(this.stateKey, state, this.stateAd(b, deadline, startId));
      const head = new Uint8Array(8 + START_ID_BYTES);
      new DataView(head.buffer).setBigUint64(0, BigInt(deadline));
      head.set(Buffer.from(startId, 'hex'), 8);
      return { response: started.loginResponse, state: Buffer.from(concatBytes(head, sealed)).toString('base64url'), startId };
    } finally {
      wipe(state);
    }
  }

  /** The start id a sealed state names (not yet authenticated: `finishLogin` checks it). */
  static startIdOf(sealedState: unknown): string | null {
    if (typeof sealedState !== 'string' || sealedState.length > MAX_MESSAGE || !B64URL.test(sealedState)) return null;
    const raw = Buffer.from(sealedState, 'base64url');
    return raw.length < 8 + START_ID_BYTES + 40 ? null : raw.subarray(8, 8 + START_ID_BYTES).toString('hex');
  }

  /**
   * KE3 in: the session key (the caller wipes it) when the password was right, null when it was
   * not (a wrong password, or a fake record). Throws `bad_request` for a state that is not this
   * server's, for another credential, address or password version, or past its deadline.
   */
  finishLogin(b: LoginBinding, sealedState: unknown, finish: unknown, now = Date.now()): Uint8Array | null {
    const finishLoginRequest = message(finish, 'login finish');
    const startId = OpaqueServer.startIdOf(sealedState);
    if (startId === null) throw new CustosError('bad_request', 'The login state is not one this server issued.');
    const raw = Buffer.from(sealedState as string, 'base64url');
    const deadline = Number(raw.readBigUInt64BE(0));
    const state = open(this.stateKey, new Uint8Array(raw.subarray(8 + START_ID_BYTES)), this.stateAd(b, deadline, startId));
    if (!state) throw new CustosError('bad_request', 'The login state is not one this server issued for this user, address and password.');
    try {
      if (now > deadline) throw new CustosError('bad_request', 'The login took too long; start it again.', { tag: 'login_expired' });
      const serverLoginState = Buffer.from(state.buffer, state.byteOffset, state.byteLength).toString('utf8');
      let sessionKey: string;
      try {
        ({ sessionKey } = opaque.server.finishLogin({ serverLoginState, finishLoginRequest }));
      } catch {
        // A finish that does not match: the password was wrong (or the record was a fake).
        return null;
      }
      return decodeUnpooled(sessionKey, 'base64url');
    } finally {
      wipe(state);
    }
  }

  private stateAd(b: LoginBinding, deadline: number, startId: string): Uint8Array {
    return utf8(`custos-opaque-login-v2\n${b.credentialId}\n${deadline}\n${startId}\n${b.passwordVersion}\n${b.address}`);
  }

  destroy(): void {
    wipe(this.seedKey);
    wipe(this.stateKey);
  }
}
