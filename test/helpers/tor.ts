/**
 * A real `tor` (Debian's) for tests, never on the public network: a throwaway DataDirectory, a
 * DirAuthority line pointing only at 127.0.0.1 (nothing listens there), PublishServerDescriptor
 * 0, AssumeReachable 1, ORPort and ControlPort on 127.0.0.1, no SocksPort, and /etc/tor/torrc
 * ignored. Stopped by PID. Keys are loaded before any network use, so a relay's key setup is
 * checked without reaching anything.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A relay's DataDirectory with an empty keys directory (0700, as tor wants). */
export function relayDataDir(root: string): { data: string; keys: string } {
  const data = join(root, 'tor-data');
  const keys = join(data, 'keys');
  mkdirSync(keys, { recursive: true, mode: 0o700 });
  chmodSync(data, 0o700);
  chmodSync(keys, 0o700);
  return { data, keys };
}

/** `tor --keygen` in a DataDirectory: tor's own unencrypted master key and first signing key and certificate. */
export function torKeygen(data: string): void {
  const r = spawnSync('tor', ['--keygen', '--DataDirectory', data, '--defaults-torrc', '/dev/null', '-f', '/dev/null', '--SigningKeyLifetime', '2 days'], { input: '\n\n', encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`tor --keygen failed: ${r.stdout}${r.stderr}`);
}

export interface RunningTor {
  /** Everything tor has logged so far. */
  log(): string;
  /** Resolves when tor logs a line matching `re`, or rejects when it exits or the time runs out. */
  waitFor(re: RegExp, ms?: number): Promise<string>;
  /** Resolves to tor's exit code once it exits on its own. */
  exited: Promise<number | null>;
  /** A control-port command's reply (no authentication is configured: loopback only, test only). */
  control(command: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startRelay(data: string, opts: { offlineMasterKey?: boolean } = {}): Promise<RunningTor> {
  const [orPort, controlPort, fakeDir, fakeOr] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const torrc = join(data, '..', 'torrc');
  writeFileSync(
    torrc,
    [
      `DataDirectory ${data}`,
      'SocksPort 0',
      `ORPort 127.0.0.1:${orPort}`,
      'Address 127.0.0.1',
      `ControlPort 127.0.0.1:${controlPort}`,
      // The only authority: 127.0.0.1, where nothing answers. Never tor's built-in ones.
      `DirAuthority fake orport=${fakeOr} no-v2 v3ident=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA 127.0.0.1:${fakeDir} BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB`,
      'PublishServerDescriptor 0',
      'AssumeReachable 1',
      'ExitRelay 0',
      'Nickname custostest',
      'ContactInfo custos-test',
      ...(opts.offlineMasterKey ? ['OfflineMasterKey 1'] : []),
      'Log notice stdout',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('tor', ['-f', torrc, '--defaults-torrc', '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const waiters = new Set<() => void>();
  const onData = (b: Buffer) => {
    text += b.toString('utf8');
    for (const w of [...waiters]) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    for (const w of [...waiters]) w();
    resolve(code);
  }));
  let done = false;
  void exited.then(() => (done = true));
  const waitFor = (re: RegExp, ms = 30_000) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`tor did not log ${re} in ${ms} ms:\n${text.slice(-3000)}`));
      }, ms);
      const check = () => {
        const m = re.exec(text);
        if (m) {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(m[0]);
        } else if (done) {
          clearTimeout(timer);
          waiters.delete(check);
          reject(new Error(`tor exited before logging ${re}:\n${text.slice(-3000)}`));
        }
      };
      waiters.add(check);
      check();
    });
  const control = (command: string) =>
    new Promise<string>((resolve, reject) => {
      const s = connect(controlPort, '127.0.0.1', () => s.write(`AUTHENTICATE ""\r\n${command}\r\nQUIT\r\n`));
      let reply = '';
      s.on('data', (d) => (reply += d.toString('utf8')));
      s.on('end', () => resolve(reply));
      s.on('error', reject);
      s.setTimeout(10_000, () => s.destroy(new Error('tor control port did not answer')));
    });
  return {
    log: () => text,
    waitFor,
    exited,
    control,
    stop: async () => {
      if (!done) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}
