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

/** pino's number for `info`. */
export const INFO = 30;
