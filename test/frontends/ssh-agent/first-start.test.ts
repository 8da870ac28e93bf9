// A socket's first start writes its (empty) list of hidden keys, on the record: a daemon
// killed right after it (SIGKILL, power loss) must open again, not find its rows "changed
// outside Custos" against the anchor of the last clean stop (review finding on the row).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FAST_SCRYPT, PASS, tempDir } from '../../helpers/tmpvault.js';
import { ROOT } from '../../helpers/process.js';
import { initVault, openVault } from '../../../src/vault/open.js';

test('a daemon killed right after a socket\'s first start opens again, with the socket\'s list on the record', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const dataDir = join(dir, 'vault');
    await initVault({ dataDir, passphrase: PASS, scrypt: FAST_SCRYPT });
    // A vault in use: started and stopped cleanly once (its anchor then carries the rows' digest).
    await (await openVault({ dataDir, passphrase: PASS })).close();
    const child = join(dir, 'daemon.mts');
    writeFileSync(
      child,
      `import { openVault } from ${JSON.stringify(join(ROOT, 'src/vault/open.ts'))};
import { SshAgent } from ${JSON.stringify(join(ROOT, 'src/frontends/ssh-agent/agent.ts'))};
const v = await openVault({ dataDir: ${JSON.stringify(dataDir)}, passphrase: new TextEncoder().encode('test passphrase') });
const a = new SshAgent(v.vault, { name: 'first', socketPath: ${JSON.stringify(join(dir, 'a.sock'))}, keys: ['*'], allowSha1: false, maxConnections: 4 });
await a.listen();
process.kill(process.pid, 'SIGKILL');
`,
    );
    const r = spawnSync(process.execPath, ['--import', 'tsx', child], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    const v = await openVault({ dataDir, passphrase: PASS });
    try {
      assert.equal(await v.store.getMeta('ssh_agent.first.hidden'), '[]');
      const tail = await v.store.auditTail(5);
      assert.ok(tail.some((e) => e.operation === 'agent_start' && e.details.agent === 'first'), 'the list was made on the record');
    } finally {
      await v.close();
    }
  } finally {
    cleanup();
  }
});
