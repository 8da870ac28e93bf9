/**
 * Fuzzes a running ssh-agent socket: mutated frames built from every request OpenSSH 9.2
 * sends (the captures in ../shared/vectors/ssh-agent, when present, plus our own encodings),
 * pipelined over a few connections, with occasional length lies. The agent must answer
 * every well-framed request, close only connections that lie about length, and serve a
 * real client afterwards.
 *
 *   node --import tsx scripts/fuzz-agent.ts --frames 1000000
 */
import { connect } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeRequest, frame, FrameReader, type AgentRequest } from '../src/frontends/ssh-agent/codec.js';

const TRACE = fileURLToPath(new URL('../../shared/vectors/ssh-agent/openssh-9.2p1-agent-trace.jsonl', import.meta.url));

export function seedBodies(): Uint8Array[] {
  const own: AgentRequest[] = [
    { type: 'request_identities' },
    { type: 'remove_all_rsa_identities' },
    { type: 'extension_query' },
    { type: 'sign_request', keyBlob: new Uint8Array(51), data: new Uint8Array(64), flags: 4 },
    { type: 'unlock', passphrase: new TextEncoder().encode('y') },
  ];
  const seeds = own.map(encodeRequest);
  if (existsSync(TRACE)) {
    for (const line of readFileSync(TRACE, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const m = JSON.parse(line) as { dir?: string; hex?: string };
      // Lock/remove-all bodies would change the agent under test for the rest of the run.
      if (m.dir === 'req' && m.hex && ![19, 22, 9].includes(parseInt(m.hex.slice(0, 2), 16))) seeds.push(new Uint8Array(Buffer.from(m.hex, 'hex')));
    }
  }
  return seeds;
}

/** Sends `frames` mutated requests; returns how many answers came back. Never targets anything but `socketPath`. */
export async function fuzzAgent(socketPath: string, frames: number, seed = 1, only?: Uint8Array[]): Promise<{ sent: number; answered: number; closedOnLie: number }> {
  // `only`: mutate these request bodies instead (the Tor extensions' frames, say).
  const seeds = only ?? seedBodies();
  let s = seed;
  const rand = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % 0x7fffffff;
  let sent = 0;
  let answered = 0;
  let closedOnLie = 0;
  const perConn = 5000;
  while (sent < frames) {
    const n = Math.min(perConn, frames - sent);
    const lieAt = rand() % 4 === 0 ? rand() % n : -1;
    await new Promise<void>((resolve, reject) => {
      const sock = connect(socketPath);
      const reader = new FrameReader();
      let got = 0;
      const expected = lieAt >= 0 ? lieAt : n;
      sock.on('data', (d) => {
        got += reader.push(d).length;
        if (got >= expected && lieAt < 0) sock.end();
      });
      sock.on('close', () => {
        answered += got;
        if (lieAt >= 0) closedOnLie++;
        resolve();
      });
      sock.on('error', (e) => (lieAt >= 0 ? undefined : reject(e)));
      sock.on('connect', () => {
        const chunks: Uint8Array[] = [];
        for (let i = 0; i < n; i++) {
          const base = seeds[rand() % seeds.length]!;
          const body = Uint8Array.from(base.length > 0 ? base : [11]);
          const flips = 1 + (rand() % 4);
          for (let f = 0; f < flips; f++) {
            const kind = rand() % 3;
            const at = rand() % body.length;
            if (kind === 0) body[at] = rand() & 0xff;
            else if (kind === 1 && at + 4 <= body.length) new DataView(body.buffer).setUint32(at, rand() % 1000);
            else body[at]! ^= 1 << (rand() % 8);
          }
          // A mutation that turns into LOCK would lock the agent for the rest of the run, and
          // every later wrong UNLOCK is slowed down by design: keep the agent unlocked.
          if (body[0] === 22) body[0] = 11;
          const truncated = rand() % 5 === 0 ? body.subarray(0, rand() % body.length || 1) : body;
          if (i === lieAt) {
            const lie = new Uint8Array(4);
            new DataView(lie.buffer).setUint32(0, 256 * 1024 + 1 + (rand() % 1000));
            chunks.push(lie);
            break;
          }
          chunks.push(frame(truncated));
        }
        sock.write(Buffer.concat(chunks));
        if (lieAt >= 0) sock.end();
      });
    });
    sent += lieAt >= 0 ? lieAt + 1 : n;
  }
  return { sent, answered, closedOnLie };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--frames');
  const frames = i > 0 ? Number(process.argv[i + 1]) : 100_000;
  const { makeVault } = await import('../test/helpers/tmpvault.js');
  const { SshAgent } = await import('../src/frontends/ssh-agent/agent.js');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const v = await makeVault();
  const dir = mkdtempSync(join(tmpdir(), 'custos-fuzz-agent-'));
  await v.vault.createKey(v.ctx(), { label: 'fuzz-ed', algorithm: 'ed25519', exportable: false, purpose: 'ssh' });
  const agent = new SshAgent(v.vault, { name: 'fuzz', socketPath: join(dir, 'a.sock'), keys: ['fuzz-*'], allowSha1: true, maxConnections: 16 });
  await agent.listen();
  const started = Date.now();
  const r = await fuzzAgent(agent.config.socketPath, frames);
  process.stdout.write(JSON.stringify({ ...r, seconds: (Date.now() - started) / 1000 }) + '\n');
  await agent.close();
  await v.dispose();
  rmSync(dir, { recursive: true, force: true });
}
