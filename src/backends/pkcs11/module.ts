/**
 * The process-wide handle on a PKCS#11 module (shared library): loaded once per path,
 * initialised once, shared by every token opened through it, finalised with the last one.
 *
 * Why shared: `dlopen` returns the same library for the same path, so a second
 * `C_Initialize` answers CKR_CRYPTOKI_ALREADY_INITIALIZED and a `C_Finalize` by one user
 * closes every other user's sessions. One owner per path makes that explicit.
 *
 * SoftHSM2 reads SOFTHSM2_CONF and scans its token directory in C_Initialize only: a token
 * created, re-initialised, removed or restored by another process is seen after the next
 * C_Finalize + C_Initialize, which `reinitialize()` does when no call is inside the module.
 */
import pkcs11js from 'pkcs11js';
import { CustosError } from '../../core/errors.js';

export type { PKCS11 } from 'pkcs11js';
import type { PKCS11 } from 'pkcs11js';

export class Pkcs11Module {
  private static readonly loaded = new Map<string, Pkcs11Module>();

  readonly path: string;
  readonly lib: PKCS11;
  /** Bumped on every (re)initialisation: sessions and handles from an older one are void. */
  generation = 0;
  private users = 0;
  private initialized = false;
  /** Asynchronous calls running on libuv's thread pool; finalising under them would crash. */
  private inflight = 0;
  /** Calls that outlived their timeout and may still be inside the module. */
  private hung = 0;

  private constructor(path: string) {
    this.path = path;
    this.lib = new pkcs11js.PKCS11();
    try {
      this.lib.load(path);
    } catch (e) {
      throw new CustosError('hsm_unavailable', `The PKCS#11 module ${path} could not be loaded; check the path and that the library is installed.`, { cause: e });
    }
  }

  /** Takes a reference on the module at `path`, loading and initialising it if needed. */
  static acquire(path: string): Pkcs11Module {
    let m = Pkcs11Module.loaded.get(path);
    if (!m) {
      m = new Pkcs11Module(path);
      Pkcs11Module.loaded.set(path, m);
    }
    m.users++;
    try {
      m.ensureInitialized();
    } catch (e) {
      m.release();
      throw e;
    }
    return m;
  }

  ensureInitialized(): void {
    if (this.initialized) return;
    try {
      // CKF_OS_LOCKING_OK: the async pkcs11js calls run on several libuv threads at once;
      // without it SoftHSM2 does no locking and concurrent calls crash the process.
      this.lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      if ((e as { code?: number }).code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        throw new CustosError('hsm_unavailable', `The PKCS#11 module ${this.path} failed to initialise; check its configuration (for SoftHSM2, SOFTHSM2_CONF and the token directory).`, { cause: e });
      }
    }
    this.initialized = true;
    this.generation++;
  }

  /**
   * C_Finalize + C_Initialize, so the module rescans its tokens. Refused (false) while a call
   * is inside the module: finalising under a running call is undefined behaviour in C.
   */
  reinitialize(): boolean {
    if (this.inflight > 0 || this.hung > 0) return false;
    if (this.initialized) {
      try {
        this.lib.C_Finalize();
      } catch {
        // Already finalised or broken: initialising again is what matters.
      }
      this.initialized = false;
    }
    this.ensureInitialized();
    return true;
  }

  /** Runs an asynchronous module call, counted so that `reinitialize` never races it. */
  async track<T>(call: () => Promise<T>): Promise<T> {
    this.inflight++;
    try {
      return await call();
    } finally {
      this.inflight--;
    }
  }

  /** Marks a timed-out call; `settled` resolves once the module finally returns, if ever. */
  markHung(settled: Promise<unknown>): void {
    this.hung++;
    settled.then(
      () => this.hung--,
      () => this.hung--,
    );
  }

  get hungCalls(): number {
    return this.hung;
  }

  release(): void {
    this.users--;
    if (this.users > 0) return;
    Pkcs11Module.loaded.delete(this.path);
    if (this.hung > 0) return; // A call is stuck inside: finalising or unloading could crash.
    if (this.initialized) {
      try {
        this.lib.C_Finalize();
      } catch {
        // Nothing to do: the process is letting go of the module.
      }
      this.initialized = false;
    }
    try {
      this.lib.close();
    } catch {
      // As above.
    }
  }
}
