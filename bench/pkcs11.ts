/**
 * Signing through Pkcs11Token, and through the whole vault, against raw pkcs11js calls on the
 * same SoftHSM2 token, in the same run:
 *   - signatures/s at 1 and 8 concurrent callers for ed25519, secp256k1 and p256, beside a
 *     raw loop (1 caller: synchronous C_SignInit + C_Sign; 8 callers: C_SignInit +
 *     C_SignAsync on 8 sessions of their own) and the ratio token/raw;
 *   - the same through Custos: `vault.sign` on a real vault (SQLite file, policy, the two
 *     durable audit commits per signature, group commit) whose keys are token keys of a
 *     Pkcs11Backend on that token, and the ratio custos/raw;
 *   - wrapped-key signatures/s (unwrap + sign + destroy per signature) at 1 and 8 callers,
 *     through the token and through Custos;
 *   - time to generate and wrap N keys (8 callers) in the token layer (`--keys`);
 *   - time to generate and store N HSM-wrapped secp256k1 keys through Custos
 *     (`vault.createKey` with `wrapped: true`, 8 in flight; `--store-keys`, 0 to skip).
 *
 *   node --import tsx bench/pkcs11.ts [--keys 1000] [--seconds 2] [--store-keys 10000]
 *
 * One JSON document on stdout. Never exits non-zero because of a timing.
 */
import type { TestContext } from 'node:test';
import pkcs11js from 'pkcs11js';
import { createHash } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Pkcs11Token } from '../src/backends/pkcs11/token.js';
import { Pkcs11Module } from '../src/backends/pkcs11/module.js';
import { CKM_EDDSA } from '../src/backends/pkcs11/keys.js';
import type { SignPayload } from '../src/core/types.js';
import { Pkcs11Backend } from '../src/backends/pkcs11/backend.js';
import { createSoftHsm } from '../test/helpers/softhsm.js';
import { makeVault, type TestVault } from '../test/helpers/tmpvault.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const KEYS = arg('--keys', 1000);
const SECONDS = arg('--seconds', 2);
const STORE_KEYS = arg('--store-keys', 10_000);
const round = (x: number) => Math.round(x);
const progress = (msg: string) => process.stderr.write(`[pkcs11 bench] ${msg}\n`);

const noTest = { skip: (why: string) => { throw new Error(why); } } as unknown as TestContext;
const hsm = createSoftHsm(noTest)!;
const payload: SignPayload = { kind: 'message', bytes: new Uint8Array(Buffer.alloc(120, 7)) };

/** Runs `op` from `callers` concurrent loops for SECONDS; returns operations per second. */
async function rate(callers: number, op: (caller: number) => Promise<unknown>): Promise<number> {
  let n = 0;
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async (_, c) => {
      while (performance.now() < end) {
        await op(c);
        n++;
      }
    }),
  );
  return n / ((performance.now() - start) / 1000);
}

let vaultForCleanup: TestVault | null = null;
const loadAtStart = loadavg().map((x) => Number(x.toFixed(2)));

async function main(): Promise<void> {
  const token = await Pkcs11Token.open({ module: hsm.module, tokenLabel: hsm.label, pin: hsm.pin, sessions: 8 });
  // Raw sessions on the same (shared) module, logged in through the token's login.
  const mod = Pkcs11Module.acquire(hsm.module);
  const lib = mod.lib;
  const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trimEnd() === hsm.label)!;
  const raw = Array.from({ length: 8 }, () => lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION));
  const rawKey = (id: Uint8Array) => {
    lib.C_FindObjectsInit(raw[0]!, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }, { type: pkcs11js.CKA_ID, value: Buffer.from(id) }]);
    const [h] = lib.C_FindObjects(raw[0]!, 1);
    lib.C_FindObjectsFinal(raw[0]!);
    return h!;
  };

  // A real vault (SQLite file in a temp directory) whose `pkcs11:main` backend is this token.
  // Closing the vault closes the backend, and with it the token.
  const tv: TestVault = await makeVault({ backends: [new Pkcs11Backend('main', token)] });
  vaultForCleanup = tv;
  const { vault } = tv;
  const custosSign = (key: string) => vault.sign({ ...tv.ctx(), key, payload, options: {}, context: {} });

  const results: Record<string, unknown> = {};
  for (const alg of ['ed25519', 'secp256k1', 'p256'] as const) {
    progress(`sign ${alg}`);
    const { id } = await token.generateKeyPair(alg, { label: `bench-${alg}` });
    const h = rawKey(id);
    // The vault's own token key of this algorithm (generated in the token by the backend).
    const vkey = `vault-${alg}`;
    await vault.createKey(tv.ctx(), { label: vkey, algorithm: alg, exportable: false, backend: 'pkcs11:main' });
    await custosSign(vkey);
    // What the token layer sends: the message for EdDSA, its SHA-256 for ECDSA.
    const mech = { mechanism: alg === 'ed25519' ? CKM_EDDSA : pkcs11js.CKM_ECDSA };
    const data = alg === 'ed25519' ? Buffer.from(payload.bytes) : createHash('sha256').update(payload.bytes).digest();
    const row: Record<string, number> = {};
    for (const callers of [1, 8]) {
      const viaToken = await rate(callers, () => token.sign(id, alg, payload, {}));
      const viaRaw =
        callers === 1
          ? await rate(1, async () => {
              lib.C_SignInit(raw[0]!, mech, h);
              lib.C_Sign(raw[0]!, alg === 'ed25519' ? Buffer.from(payload.bytes) : createHash('sha256').update(payload.bytes).digest(), Buffer.alloc(64));
            })
          : await rate(8, async (c) => {
              lib.C_SignInit(raw[c]!, mech, h);
              await lib.C_SignAsync(raw[c]!, data, Buffer.alloc(64));
            });
      const viaCustos = await rate(callers, () => custosSign(vkey));
      row[`token_${callers}`] = round(viaToken);
      row[`raw_${callers}`] = round(viaRaw);
      row[`custos_${callers}`] = round(viaCustos);
      row[`ratio_${callers}`] = Number((viaToken / viaRaw).toFixed(2));
      row[`custos_ratio_${callers}`] = Number((viaCustos / viaRaw).toFixed(2));
    }
    results[alg] = row;
  }

  const WK = 'bench-wrap';
  await token.ensureWrappingKey(WK);
  const wrapped: Record<string, unknown> = {};
  for (const alg of ['secp256k1', 'p256'] as const) {
    progress(`wrapped sign ${alg}`);
    const w = await token.generateWrapped(alg, WK);
    const vkey = `vault-wrapped-${alg}`;
    await vault.createKey(tv.ctx(), { label: vkey, algorithm: alg, exportable: false, backend: 'pkcs11:main', wrapped: true });
    await custosSign(vkey);
    const row: Record<string, number> = {};
    for (const callers of [1, 8]) {
      const viaToken = await rate(callers, () => token.signWrapped(w.wrapped, alg, WK, payload, {}));
      const viaCustos = await rate(callers, () => custosSign(vkey));
      row[`sign_${callers}`] = round(viaToken);
      row[`custos_${callers}`] = round(viaCustos);
      row[`custos_vs_token_${callers}`] = Number((viaCustos / viaToken).toFixed(2));
    }
    wrapped[alg] = row;
  }
  let ed25519Wrapped: string;
  try {
    await token.generateWrapped('ed25519', WK);
    ed25519Wrapped = 'supported';
  } catch (e) {
    ed25519Wrapped = `unsupported by this module (${(e as Error).message.slice(0, 60)}...)`;
  }
  wrapped.ed25519 = ed25519Wrapped;

  const generation: Record<string, unknown> = {};
  for (const alg of ['secp256k1', 'p256'] as const) {
    progress(`generate and wrap ${KEYS} ${alg} keys (token layer)`);
    let made = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (made < KEYS) {
          made++;
          await token.generateWrapped(alg, WK);
        }
      }),
    );
    const s = (performance.now() - t0) / 1000;
    generation[alg] = { keys: KEYS, seconds: Number(s.toFixed(2)), per_second: round(KEYS / s) };
  }

  // Generate and store N wrapped keys through the vault: each is generated and wrapped in the
  // token, sealed again by the vault and committed (key row + audit entry, group commit).
  let store: Record<string, unknown> | null = null;
  if (STORE_KEYS > 0) {
    progress(`create and store ${STORE_KEYS} wrapped secp256k1 keys through Custos (8 in flight)`);
    let next = 0;
    let done = 0;
    const t0 = performance.now();
    let lastReport = t0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < STORE_KEYS) {
          const i = next++;
          await vault.createKey(tv.ctx(), { label: `w-${i}`, algorithm: 'secp256k1', exportable: false, backend: 'pkcs11:main', wrapped: true });
          done++;
          if (performance.now() - lastReport > 10_000) {
            lastReport = performance.now();
            progress(`  ${done}/${STORE_KEYS}, ${round(done / ((lastReport - t0) / 1000))} keys/s`);
          }
        }
      }),
    );
    const s = (performance.now() - t0) / 1000;
    const dbBytes = statSync(join(tv.dataDir, 'custos.db')).size;
    store = { algorithm: 'secp256k1', keys: STORE_KEYS, seconds: Number(s.toFixed(2)), keys_per_second: round(STORE_KEYS / s), db_mib: Number((dbBytes / 2 ** 20).toFixed(1)) };
    // One of them signs, so the stored keys are known to work.
    await custosSign(`w-${STORE_KEYS - 1}`);
  }

  for (const s of raw) lib.C_CloseSession(s);
  mod.release();
  await tv.dispose(); // closes the backend and the token
  vaultForCleanup = null;
  hsm.cleanup();
  console.log(
    JSON.stringify(
      {
        bench: 'pkcs11',
        module: hsm.module,
        cpus: cpus().length,
        seconds_per_measurement: SECONDS,
        load_average_at_start: loadAtStart,
        load_average_at_end: loadavg().map((x) => Number(x.toFixed(2))),
        note:
          'signatures/s; ratio = Pkcs11Token / raw pkcs11js on the same token; custos = vault.sign on a SQLite vault (policy, two durable audit commits, group commit), custos_ratio = custos / raw; wrapped: sign = Pkcs11Token.signWrapped, custos_vs_token = custos / sign; wrapped = unwrap + sign + destroy per signature',
        sign: results,
        wrapped_sign: wrapped,
        generate_and_wrap_8_callers: generation,
        custos_create_wrapped_8_in_flight: store,
      },
      null,
      2,
    ),
  );
}

main().catch(async (e) => {
  await vaultForCleanup?.dispose().catch(() => {});
  hsm.cleanup();
  console.error(e);
  process.exitCode = 1;
});
