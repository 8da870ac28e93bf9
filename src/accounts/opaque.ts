/**
 * The server's side of OPAQUE (RFC 9807, through `@serenity-kit/opaque`): account passwords
 * that the vault never learns. What this module adds to the library:
 *
 * - The server setup (the OPRF seed and the server's static key pair) is made once and kept
 *   sealed under a subkey of the vault root (`sealSetup`), like key material.
 * - Each account's OPRF key is bound to its `user_seed` (sealed with the account), through the
 *   credential identifier the library derives it from: HMAC-SHA256(user_seed, domain). An
 *   account's record is useless with another account's seed.
 * - An unknown user name runs the same protocol against a fake record, with a credential
 *   identifier that is stable per name (so two attempts for one unknown name answer alike) and
 *   derived from the root (so no one can tell it from a real one): no account enumeration.
 * - The server's login state between the two messages is sealed and handed to the client, with
 *   its deadline and credential identifier bound in: any node sharing the root can finish a
 *   login, and no node keeps state for logins that never finish.
 *
 * The library takes and returns base64url strings, its setup included: the setup is rebuilt as
 * a string for each call and left to the garbage collector (the one secret this code holds in a
 * string, because the library's API has no other form). Session keys leave as bytes.
 */
import * as opaque from '@serenity-kit/opaque';
import { createHmac, randomBytes } from 'node:crypto';
import { CustosError } from '../core/errors.js';
import { concatBytes, utf8, wipe } from '../core/bytes.js';
import { open, seal } from '../crypto/aead.js';
import { deriveSubkey } from '../crypto/kdf.js';

/** How long a started login may wait for its finish. */
export const LOGIN_WINDOW_MS = 60_000;
/** The most a client message may be (OPAQUE's are a few hundred base64url characters). */
const MAX_MESSAGE = 4096;
const B64URL = /^[A-Za-z0-9_-]+$/;

const setupKey = (root: Uint8Array, vaultId: string) => deriveSubkey(root, utf8(vaultId), 'custos/v1/opaque-setup');

/** A new server setup, sealed under the root: stored once per vault (meta `accounts.opaque_setup`). */
export async function sealSetup(root: Uint8Array, vaultId: string): Promise<Uint8Array> {
  await opaque.ready;
  const setup = new Uint8Array(Buffer.from(opaque.server.createSetup(), 'base64url'));
  const key = setupKey(root, vaultId);
  try {
    return seal(key, setup, utf8(`custos-opaque-setup-v1\n${vaultId}`));
  } finally {
    wipe(setup);
    wipe(key);
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
}

export class OpaqueServer {
  private constructor(
    private readonly setup: Uint8Array,
    private readonly fakeIdKey: Uint8Array,
    private readonly stateKey: Uint8Array,
  ) {}

  /** Opens the sealed setup; `unsealed` fails closed with a sentence when it does not open. */
  static async open(sealed: Uint8Array, root: Uint8Array, vaultId: string): Promise<OpaqueServer> {
    await opaque.ready;
    const key = setupKey(root, vaultId);
    const setup = open(key, sealed, utf8(`custos-opaque-setup-v1\n${vaultId}`));
    wipe(key);
    if (!setup) throw new CustosError('database_corrupt', 'The accounts\' OPAQUE setup does not open under this vault\'s root: it was altered or copied from another vault. Restore the database from a backup.');
    return new OpaqueServer(setup, deriveSubkey(root, utf8(vaultId), 'custos/v1/opaque-fake-id'), deriveSubkey(root, utf8(vaultId), 'custos/v1/opaque-login-state'));
  }

  private setupString(): string {
    return Buffer.from(this.setup).toString('base64url');
  }

  /** The server's static public key (clients may pin it: OPAQUE authenticates the server too). */
  publicKey(): string {
    return opaque.server.getPublicKey(this.setupString());
  }

  /** The identifier an account's OPRF key is derived from: bound to its user_seed. */
  static credentialId(userSeed: Uint8Array): string {
    return createHmac('sha256', userSeed).update('custos/v1/opaque-oprf-key').digest('hex');
  }

  /** For a user name with no account: stable per name, indistinguishable from a real one. */
  fakeCredentialId(userName: string): string {
    return createHmac('sha256', this.fakeIdKey).update(utf8(userName)).digest('hex');
  }

  /** The answer to a registration request (password set or changed). */
  registrationResponse(credentialId: string, request: unknown): string {
    const registrationRequest = message(request, 'registration request');
    return protocol('registration request', () => opaque.server.createRegistrationResponse({ serverSetup: this.setupString(), userIdentifier: credentialId, registrationRequest })).registrationResponse;
  }

  /** Checks a client's registration record (its upload) before it is stored. */
  static checkRecord(record: unknown): string {
    const r = message(record, 'registration record');
    // The record is the client's public key, masking key and envelope: 256 characters in this suite.
    if (r.length !== 256) throw new CustosError('bad_request', 'The registration record has the wrong length for this server\'s OPAQUE suite.');
    return r;
  }

  /**
   * KE1 in, KE2 out. `record` null: the user name has no account (or none with a password);
   * the library answers from a fake record, so the answer looks the same.
   */
  startLogin(credentialId: string, record: string | null, request: unknown, now = Date.now()): LoginStart {
    const startLoginRequest = message(request, 'login request');
    const { serverLoginState, loginResponse } = protocol('login request', () => opaque.server.startLogin({ serverSetup: this.setupString(), registrationRecord: record, startLoginRequest, userIdentifier: credentialId }));
    const deadline = now + LOGIN_WINDOW_MS;
    const state = utf8(serverLoginState);
    try {
      const sealed = seal(this.stateKey, state, this.stateAd(credentialId, deadline));
      const d = new Uint8Array(8);
      new DataView(d.buffer).setBigUint64(0, BigInt(deadline));
      return { response: loginResponse, state: Buffer.from(concatBytes(d, sealed)).toString('base64url') };
    } finally {
      wipe(state);
    }
  }

  /**
   * KE3 in: the session key (32+ bytes, the caller wipes it) when the password was right, null
   * when it was not (a wrong password, or a fake record). Throws `bad_request` for a state that
   * is not this server's, for another credential, or past its deadline.
   */
  finishLogin(credentialId: string, sealedState: unknown, finish: unknown, now = Date.now()): Uint8Array | null {
    const finishLoginRequest = message(finish, 'login finish');
    const raw = Buffer.from(message(sealedState, 'login state'), 'base64url');
    if (raw.length < 8 + 40) throw new CustosError('bad_request', 'The login state is not one this server issued.');
    const deadline = Number(raw.readBigUInt64BE(0));
    const state = open(this.stateKey, new Uint8Array(raw.subarray(8)), this.stateAd(credentialId, deadline));
    if (!state) throw new CustosError('bad_request', 'The login state is not one this server issued for this user.');
    try {
      if (now > deadline) throw new CustosError('bad_request', 'The login took too long; start it again.', { tag: 'login_expired' });
      const serverLoginState = Buffer.from(state).toString('utf8');
      let sessionKey: string;
      try {
        ({ sessionKey } = opaque.server.finishLogin({ serverLoginState, finishLoginRequest }));
      } catch {
        // A finish that does not match: the password was wrong (or the record was a fake).
        return null;
      }
      return new Uint8Array(Buffer.from(sessionKey, 'base64url'));
    } finally {
      wipe(state);
    }
  }

  private stateAd(credentialId: string, deadline: number): Uint8Array {
    return utf8(`custos-opaque-login-v1\n${credentialId}\n${deadline}`);
  }

  destroy(): void {
    wipe(this.setup);
    wipe(this.fakeIdKey);
    wipe(this.stateKey);
  }
}

/** A fresh per-account seed (sealed with the account like key material). */
export function newUserSeed(): Uint8Array {
  return new Uint8Array(randomBytes(32));
}
