/**
 * Test helpers for the ssh-agent front end: one raw-protocol connection to an agent socket
 * (Custos's or OpenSSH's own), key pairs in the form the protocol carries them, an OpenSSH
 * `ssh-agent` to compare answers with, and a pino logger whose lines the test can read.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync } from 'node:fs';
import { Writable } from 'node:stream';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import pino from 'pino';
import { SshWriter } from '../../src/crypto/openssh.js';
import {
  decodeResponse,
  encodePublicKeyBlob,
  encodeRequest,
  frame,
  FrameReader,
  type AgentPrivateKey,
  type AgentRequest,
  type AgentResponse,
} from '../../src/frontends/ssh-agent/codec.js';

/** One connection; each `send` writes one request and resolves with its answer, in order. */
export function agentSession(path: string) {
  const s = connect(path);
  const reader = new FrameReader();
  const waiting: Array<(r: AgentResponse) => void> = [];
  s.on('data', (d) => {
    for (const b of reader.push(d)) waiting.shift()?.(decodeResponse(b));
  });
  const ready = new Promise((r) => s.once('connect', r));
  return {
    async send(req: AgentRequest): Promise<AgentResponse> {
      await ready;
      const p = new Promise<AgentResponse>((r) => waiting.push(r));
      s.write(frame(encodeRequest(req)));
      return p;
    },
    close: () => s.destroy(),
  };
}

export interface Ed25519Pair {
  privateKey: KeyObject;
  seed: Uint8Array;
  pub: Uint8Array;
  blob: Uint8Array;
  /** As ADD_IDENTITY carries it. */
  agentKey(comment: string): AgentPrivateKey;
}

export function ed25519Pair(): Ed25519Pair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const seed = new Uint8Array(der.subarray(der.length - 32));
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const pub = new Uint8Array(spki.subarray(spki.length - 32));
  return {
    privateKey,
    seed,
    pub,
    blob: encodePublicKeyBlob({ keyType: 'ssh-ed25519', publicKey: pub }),
    agentKey: (comment) => ({ keyType: 'ssh-ed25519', publicKey: pub, seed: seed.slice(), comment }),
  };
}

export interface RsaPair {
  publicKey: KeyObject;
  blob: Uint8Array;
  agentKey(comment: string): AgentPrivateKey;
}

export function rsaPair(bits = 2048): RsaPair {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  const jwk = privateKey.export({ format: 'jwk' });
  const b = (s: string | undefined) => new Uint8Array(Buffer.from(s!, 'base64url'));
  return {
    publicKey,
    blob: encodePublicKeyBlob({ keyType: 'ssh-rsa', e: b(jwk.e), n: b(jwk.n) }),
    agentKey: (comment) => ({ keyType: 'ssh-rsa', n: b(jwk.n), e: b(jwk.e), d: b(jwk.d), iqmp: b(jwk.qi), p: b(jwk.p), q: b(jwk.q), comment }),
  };
}

/** OpenSSH's own `ssh-agent` in the foreground on `path`; `stop()` ends that one process. */
export async function startOpenSshAgent(path: string): Promise<{ path: string; proc: ChildProcess; stop(): Promise<void> }> {
  const proc = spawn('ssh-agent', ['-D', '-a', path], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  for (let i = 0; i < 200 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 10));
  if (!existsSync(path)) throw new Error(`ssh-agent did not create ${path}`);
  return {
    path,
    proc,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** A pino logger at its default level (info) that keeps every line it writes, parsed. */
export function capturedLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown> & { level: number; msg: string }>; text(): string } {
  const lines: Array<Record<string, unknown> & { level: number; msg: string }> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      done();
    },
  });
  const logger = pino({}, sink);
  return { logger, lines, text: () => lines.map((l) => JSON.stringify(l)).join('\n') };
}

/**
 * An unencrypted OpenSSH private key file (PROTOCOL.key, cipher "none") for an Ed25519 pair
 * given as parts, so a test can hand `ssh-add` a key whose seed does not belong to its
 * public key: ssh-add checks that the file's two copies of the public key agree, not that
 * the seed derives it, and passes such a key on to the agent.
 */
export function openSshEd25519File(publicKey: Uint8Array, seed: Uint8Array, comment: string): string {
  const blob = encodePublicKeyBlob({ keyType: 'ssh-ed25519', publicKey });
  const sk = new Uint8Array(64);
  sk.set(seed, 0);
  sk.set(publicKey, 32);
  const priv = new SshWriter().u32(0x5eed5eed).u32(0x5eed5eed).string('ssh-ed25519').string(publicKey).string(sk).string(comment);
  let section = priv.finish();
  const padded = new Uint8Array(Math.ceil(section.length / 8) * 8);
  padded.set(section);
  for (let i = section.length, n = 1; i < padded.length; i++, n++) padded[i] = n;
  section = padded;
  const body = new SshWriter().raw(new TextEncoder().encode('openssh-key-v1\0')).string('none').string('none').string('').u32(1).string(blob).string(section).finish();
  const b64 = Buffer.from(body).toString('base64').replace(/(.{70})/g, '$1\n');
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64.trimEnd()}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

/** pino's number for `info`. */
export const INFO = 30;
