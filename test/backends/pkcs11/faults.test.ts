/**
 * A token that goes away, comes back, changes its PIN or is wiped, under load: requests fail
 * closed with hsm_unavailable (never a crash, never a signature by the wrong key), and the
 * token recovers by itself once it is back.
 *
 * What SoftHSM2 lets a test observe: it keeps the token's state in the process. A token
 * directory removed underneath it is seen at the next object access (CKR_OBJECT_HANDLE_INVALID,
 * then CKR_GENERAL_ERROR for everything) and only a C_Finalize + C_Initialize sees it again;
 * a PIN changed by another process does not log out existing sessions; and file permissions
 * do not stop root, so as root the read-only case uses a read-only bind mount.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, renameSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Pkcs11Token } from '../../../src/backends/pkcs11/token.js';
import { verifySignature } from '../../../src/crypto/algorithms.js';
import { CustosError } from '../../../src/core/errors.js';
import type { SignPayload } from '../../../src/core/types.js';
import { createSoftHsm, type SoftHsm } from '../../helpers/softhsm.js';

const execFileAsync = promisify(execFile);
const msg = (s = 'fault'): SignPayload => ({ kind: 'message', bytes: new Uint8Array(Buffer.from(s)) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function assertCode(e: unknown, fullCode: string): true {
  assert.ok(e instanceof CustosError, `expected CustosError, got ${String(e)}`);
  assert.equal(e.fullCode, fullCode, e.message);
  return true;
}

/** Waits (generously: only a hang guard, never a timing assertion) until `ok()` holds. */
async function eventually(ok: () => Promise<boolean> | boolean, what: string, limitMs = 60_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (Date.now() < end) {
    if (await ok()) return;
    await sleep(50);
  }
  assert.fail(`never happened: ${what}`);
}

let hsm: SoftHsm | null = null;
let token: Pkcs11Token;

describe('PKCS#11 token faults on SoftHSM2', () => {
  before(async (t) => {
    hsm = createSoftHsm(t as never);
    if (!hsm) return;
    token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin, sessions: 8 });
  });
  after(async () => {
    await token?.close();
    hsm?.cleanup();
  });

  test('a removed token directory fails closed, and the token recovers when it is back', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const { id, publicKey } = await token.generateKeyPair('p256', { label: 'survivor' });
    const path = hsm.tokenPath(hsm.label);
    renameSync(path, `${path}.away`);
    try {
      await assert.rejects(token.sign(id, 'p256', msg(), {}), (e) => assertCode(e, 'hsm_unavailable'));
      const st = token.status();
      assert.equal(st.state, 'unavailable');
      assert.equal(st.code, 'hsm_unavailable');
      assert.match(st.reason ?? '', /unavailable/);
      // Every kind of request fails closed meanwhile.
      await assert.rejects(token.list(), (e) => assertCode(e, 'hsm_unavailable'));
      await assert.rejects(token.generateKeyPair('ed25519', { label: 'x' }), (e) => assertCode(e, 'hsm_unavailable'));
    } finally {
      renameSync(`${path}.away`, path);
    }
    // The background retry brings it back without any request.
    await eventually(() => token.status().state === 'ready', 'background recovery');
    const { signature } = await token.sign(id, 'p256', msg('back'), {});
    assert.ok(verifySignature('p256', publicKey, msg('back'), signature, {}));
  });

  test('a read-only token directory refuses new keys but keeps signing', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const { id } = await token.generateKeyPair('p256', { label: 'ro' });
    const path = hsm.tokenPath(hsm.label);
    // Root ignores file modes: as root the directory is made read-only by a read-only bind
    // mount of itself (CI runs as root); as a user, by its mode.
    const root = process.getuid?.() === 0;
    if (root) {
      try {
        await execFileAsync('mount', ['--bind', path, path]);
        await execFileAsync('mount', ['-o', 'remount,bind,ro', path]);
      } catch (e) {
        await execFileAsync('umount', [path]).catch(() => undefined);
        return t.skip(`root without mount rights cannot make the token read-only (${(e as Error).message.split('\n')[0]})`);
      }
    } else chmodSync(path, 0o500);
    try {
      await assert.rejects(token.generateKeyPair('p256', { label: 'ro2' }), (e) => e instanceof CustosError);
      await token.sign(id, 'p256', msg(), {});
    } finally {
      if (root) await execFileAsync('umount', [path]);
      else chmodSync(path, 0o700);
    }
    await eventually(async () => {
      try {
        await token.generateKeyPair('p256', { label: 'ro3' });
        return true;
      } catch {
        return false;
      }
    }, 'writes work again');
  });

  test('a PIN changed by the operator: running sessions go on; the next login fails with pin_incorrect, once', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const { id } = await token.generateKeyPair('ed25519', { label: 'pin-change' });
    hsm.changePin(hsm.label, '123456', '654321');
    try {
      // SoftHSM keeps this process logged in: the change is invisible until the next login.
      await token.sign(id, 'ed25519', msg(), {});
      // Make the token lose its sessions, so recovery must log in again with the old PIN.
      const path = hsm.tokenPath(hsm.label);
      renameSync(path, `${path}.away`);
      await assert.rejects(token.sign(id, 'ed25519', msg(), {}), (e) => assertCode(e, 'hsm_unavailable'));
      renameSync(`${path}.away`, path);
      await eventually(() => token.status().code === 'hsm_login_failed:pin_incorrect', 'the refused PIN is reported');
      await assert.rejects(token.sign(id, 'ed25519', msg(), {}), (e) => {
        assertCode(e, 'hsm_login_failed:pin_incorrect');
        assert.ok(!(e as Error).message.includes('123456'));
        return true;
      });
      assert.equal(token.status().state, 'unavailable');
      // Reopening with the old PIN is refused; with the new one, the key signs again.
      await token.close();
      await assert.rejects(Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin }), (e) => assertCode(e, 'hsm_login_failed:pin_incorrect'));
      token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: new Uint8Array(Buffer.from('654321')) });
      await token.sign(id, 'ed25519', msg(), {});
    } finally {
      hsm.changePin(hsm.label, '654321', '123456');
    }
    await token.close();
    token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin });
  });

  test('a storm of concurrent signatures while the token vanishes, returns and is re-initialised: no crash, fail closed, recovery', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    const keys = await Promise.all((['ed25519', 'secp256k1', 'p256'] as const).map(async (alg) => ({ alg, ...(await token.generateKeyPair(alg, { label: `storm-${alg}` })) })));
    let stop = false;
    const outcomes = new Map<string, number>();
    let badSignatures = 0;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const k = keys[(w + i) % keys.length]!;
        const payload = msg(`storm ${w} ${i}`);
        try {
          const { signature } = await token.sign(k.id, k.alg, payload, {});
          if (!verifySignature(k.alg, k.publicKey, payload, signature, {})) badSignatures++;
          outcomes.set('ok', (outcomes.get('ok') ?? 0) + 1);
        } catch (e) {
          const code = e instanceof CustosError ? e.fullCode : `not a CustosError: ${String(e)}`;
          outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
          await sleep(1);
        }
      }
    };
    const workers = Array.from({ length: 16 }, (_, w) => worker(w));
    const count = (code: string) => outcomes.get(code) ?? 0;
    await eventually(() => count('ok') > 50, 'the storm is signing');
    // First the token vanishes and comes back mid-storm ...
    const path = hsm.tokenPath(hsm.label);
    renameSync(path, `${path}.away`);
    await eventually(() => count('hsm_unavailable') > 0, 'the loss is noticed');
    renameSync(`${path}.away`, path);
    const okBefore = count('ok');
    await eventually(() => count('ok') > okBefore + 50, 'signing resumes after recovery');
    // ... then it is re-initialised by another process: its keys are gone, and SoftHSM shows
    // that as objects that vanished (the sessions survive), so requests end in key_not_found.
    await execFileAsync('softhsm2-util', ['--init-token', '--token', hsm.label, '--label', hsm.label, '--pin', '123456', '--so-pin', hsm.soPin], {
      env: { ...process.env, SOFTHSM2_CONF: hsm.conf },
    });
    await eventually(() => count('key_not_found') > 0, 'requests reach the re-initialised token');
    stop = true;
    await Promise.all(workers);
    const summary = JSON.stringify(Object.fromEntries(outcomes));
    assert.equal(badSignatures, 0);
    for (const code of outcomes.keys()) assert.ok(['ok', 'hsm_unavailable', 'key_not_found'].includes(code), `unexpected outcome ${code} in ${summary}`);
    // Recovered: a new key on the re-initialised token signs.
    await eventually(() => token.status().state === 'ready', 'recovery');
    const { id, publicKey } = await token.generateKeyPair('p256', { label: 'after-storm' });
    const { signature } = await token.sign(id, 'p256', msg(), {});
    assert.ok(verifySignature('p256', publicKey, msg(), signature, {}));
  });

  test('a module call that outlives its time limit fails closed, and the token recovers after it returns', async (t) => {
    if (!hsm) return t.skip('no SoftHSM2');
    await token.close();
    // RSA-4096 generation takes far longer than 1 ms: it stands in for a module that hangs.
    token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin });
    const { id, publicKey } = await token.generateKeyPair('ed25519', { label: 'quick' });
    await token.close();
    token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin, generateTimeoutMs: 1 });
    await assert.rejects(token.generateKeyPair('rsa-4096', { label: 'slow' }), (e) => {
      assertCode(e, 'hsm_unavailable');
      assert.match((e as Error).message, /did not finish/);
      return true;
    });
    assert.equal(token.status().state, 'unavailable');
    await eventually(() => token.status().state === 'ready', 'recovery once the late call has returned');
    const { signature } = await token.sign(id, 'ed25519', msg(), {});
    assert.ok(verifySignature('ed25519', publicKey, msg(), signature, {}));
  });
});
