/**
 * The web console in a real browser: Debian's headless Chromium driven by playwright-core
 * (no browser download), an accessibility check with axe-core, keyboard-only navigation,
 * and the README's screenshots (CUSTOS_SCREENSHOTS=1 writes docs/screenshots/).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { chromium, type Browser, type BrowserContextOptions, type Page } from 'playwright-core';
import { CustosClient } from '../../src/client/index.js';
import { custos, ROOT, serve, type ServeProcess } from './process.js';
import { tempDir } from './tmpvault.js';
import { requireTool } from './require.js';

export const CHROMIUM = '/usr/bin/chromium';

/** A headless Chromium closed after the test, or null where it is missing (skipped locally). */
export async function launchBrowser(t: TestContext): Promise<Browser | null> {
  if (!requireTool(t, 'chromium', 'chromium')) return null;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.after(() => browser.close());
  return browser;
}

/** A page that collects Content-Security-Policy violations and uncaught errors into `problems`. */
export async function consolePage(browser: Browser, options: BrowserContextOptions = {}): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, ...options });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return { page, problems };
}

export async function logIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/ui/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in', exact: true }).click();
}

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * axe-core's WCAG 2.1 A/AA and best-practice rules on the page as it stands; returns the
 * serious and critical violations as sentences (empty: none). Injected through the
 * DevTools protocol, which the page's Content-Security-Policy does not govern.
 */
export async function accessibilityProblems(page: Page): Promise<string[]> {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(ctx: Document, o: object): Promise<{ violations: Array<{ id: string; impact: string; help: string; nodes: Array<{ target: string[] }> }> }> } }).axe;
    const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, where: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.where.join(', ')}`);
}

/**
 * Presses Tab until the focused element is the one named (its accessible text), as a person
 * with a keyboard alone would; fails if it is not reached in `max` presses.
 */
export async function tabTo(page: Page, name: string | RegExp, max = 60): Promise<void> {
  const seen: string[] = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const label = await page.evaluate(() => {
      const a = document.activeElement as HTMLElement | null;
      if (!a) return '';
      const labelled = a.id ? document.querySelector(`label[for="${a.id}"]`)?.textContent : null;
      return (a.getAttribute('aria-label') ?? labelled ?? a.textContent ?? '').trim();
    });
    seen.push(label);
    if (typeof name === 'string' ? label === name : name.test(label)) return;
  }
  throw new Error(`Tab never reached "${String(name)}"; focus went through: ${seen.join(' | ')}`);
}

/** The README's screenshot of a page, when CUSTOS_SCREENSHOTS is set. */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (!process.env.CUSTOS_SCREENSHOTS) return;
  mkdirSync(join(ROOT, 'docs', 'screenshots'), { recursive: true });
  await page.screenshot({ path: join(ROOT, 'docs', 'screenshots', `console-${name}.png`), fullPage: true });
}

/** A vault made by `custos init` and served by `custos serve`, with an admin client; all undone after the test. */
export interface ServedVault {
  dir: string;
  dataDir: string;
  url: string;
  serve: ServeProcess;
  admin: CustosClient;
  adminToken: string;
}

/**
 * `custos init` (passphrase seal) then `custos serve`, with `config(dir, dataDir)` written as
 * custos.toml first when given (it may make files it names, like a PIN file).
 */
export async function servedVault(t: TestContext, opts: { env: Record<string, string | undefined>; config?: (dir: string, dataDir: string) => string }): Promise<ServedVault> {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const dataDir = join(dir, 'v');
  const tokenFile = join(dir, 'admin.token');
  const init = custos(['init', '--data-dir', dataDir, '--scrypt-log-n', '12', '--admin-token-file', tokenFile], opts.env);
  if (init.status !== 0) throw new Error(`custos init failed: ${init.stderr}`);
  if (opts.config) writeFileSync(join(dataDir, 'custos.toml'), opts.config(dir, dataDir), { mode: 0o600 });
  const s = await serve(['--data-dir', dataDir], opts.env);
  t.after(() => s.stop());
  const adminToken = readFileSync(tokenFile, 'utf8').trim();
  const admin = new CustosClient({ addr: s.url, token: adminToken });
  t.after(() => admin.close());
  return { dir, dataDir, url: s.url, serve: s, admin, adminToken };
}
