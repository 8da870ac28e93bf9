/**
 * Signing through Pkcs11Token against raw pkcs11js calls on the same SoftHSM2 token, in the
 * same run:
 *   - signatures/s at 1 and 8 concurrent callers for ed25519, secp256k1 and p256, beside a
 *     raw loop (1 caller: synchronous C_SignInit + C_Sign; 8 callers: C_SignInit +
 *     C_SignAsync on 8 sessions of their own) and the ratio token/raw;
 *   - wrapped-key signatures/s (unwrap + sign + destroy per signature) at 1 and 8 callers;
 *   - time to generate and wrap N keys (8 callers).
 *
 *   node --import tsx bench/pkcs11.ts [--keys 1000] [--seconds 2]
 *
 * One JSON document on stdout. Never exits non-zero because of a timing.
 */
import type { TestContext } from 'node:test';
import pkcs11js from 'pkcs11js';
import { createHash } from 'node:crypto';
import { cpus } from 'node:os';
import { Pkcs11Token } from '../src/backends/pkcs11/token.js';
import { Pkcs11Module } from '../src/backends/pkcs11/module.js';
import { CKM_EDDSA } from '../src/backends/pkcs11/keys.js';
import type { SignPayload } from '../src/core/types.js';
import { createSoftHsm } from '../test/helpers/softhsm.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const KEYS = arg('--keys', 1000);
const SECONDS = arg('--seconds', 2);
const round = (x: number) => Math.round(x);

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

  const results: Record<string, unknown> = {};
  for (const alg of ['ed25519', 'secp256k1', 'p256'] as const) {
    const { id } = await token.generateKeyPair(alg, { label: `bench-${alg}` });
    const h = rawKey(id);
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
      row[`token_${callers}`] = round(viaToken);
      row[`raw_${callers}`] = round(viaRaw);
      row[`ratio_${callers}`] = Number((viaToken / viaRaw).toFixed(2));
    }
    results[alg] = row;
  }

  const WK = 'bench-wrap';
  await token.ensureWrappingKey(WK);
  const wrapped: Record<string, unknown> = {};
  for (const alg of ['secp256k1', 'p256'] as const) {
    const w = await token.generateWrapped(alg, WK);
    const row: Record<string, number> = {};
    for (const callers of [1, 8]) row[`sign_${callers}`] = round(await rate(callers, () => token.signWrapped(w.wrapped, alg, WK, payload, {})));
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

  for (const s of raw) lib.C_CloseSession(s);
  mod.release();
  await token.close();
  hsm.cleanup();
  console.log(
    JSON.stringify(
      {
        bench: 'pkcs11',
        module: hsm.module,
        cpus: cpus().length,
        seconds_per_measurement: SECONDS,
        note: 'signatures/s; ratio = Pkcs11Token / raw pkcs11js on the same token; wrapped = unwrap + sign + destroy per signature',
        sign: results,
        wrapped_sign: wrapped,
        generate_and_wrap_8_callers: generation,
      },
      null,
      2,
    ),
  );
}

main().catch((e) => {
  hsm.cleanup();
  console.error(e);
  process.exitCode = 1;
});
