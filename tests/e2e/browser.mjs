// Shared set-up of the e2e tests: the demo site (out/site, built by scripts/build-web.sh)
// on a local server that counts requests, Debian's Chromium driven by playwright-core with
// the flags seen working on these machines (BRIEF, "Machines"), the native CLI.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from '../../scripts/serve.mjs';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SITE = join(ROOT, 'out/site');
export const ARTIFACTS = join(ROOT, 'tests/e2e/artifacts');
export const MODEL_PATH = '/models/smollm2-135m.lmz.safetensors';
export const CHROMIUM = process.env.LMZ_CHROMIUM ?? '/usr/bin/chromium';

/** The native CLI: $LMZ_BIN, else the ci-profile build that scripts/test.sh makes. */
export function lmzBin() {
  const target = process.env.CARGO_TARGET_DIR ?? join(process.env.HOME, '.cache/lmz/target');
  const bin = process.env.LMZ_BIN ?? join(target, 'ci/lmz');
  if (!existsSync(bin)) throw new Error(`no lmz CLI at ${bin}: build it (cargo build --profile ci -p lmz-cli) or set LMZ_BIN`);
  return bin;
}

/** Runs the CLI with `args`, stdin `input`; returns stdout (a Buffer). Throws on failure. */
export function lmz(args, input) {
  return execFileSync(lmzBin(), args, { input, maxBuffer: 1 << 28, stdio: ['pipe', 'pipe', 'pipe'] });
}

export async function start({ isolate = true } = {}) {
  if (!existsSync(join(SITE, 'index.html')) || !existsSync(join(SITE, 'node_modules/lmz/dist/index.js'))) {
    throw new Error(`no demo site at ${SITE}: run scripts/build-web.sh first`);
  }
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (scripts/test.sh does)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const { server, url, hits } = await serve(SITE, 0, { isolate });
  // A fresh profile: empty Cache Storage, so the first load really downloads the model.
  const profile = mkdtempSync(join(tmpdir(), 'lmz-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true, // Chromium ≥ 132: the new headless mode
    acceptDownloads: true,
    viewport: { width: 1100, height: 1000 },
    // Never --enable-features=Vulkan: lavapipe lacks samplerYcbcrConversion and the
    // adapter request then never resolves. WebGPU runs on SwiftShader.
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const logs = [];
  context.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  context.on('weberror', (e) => logs.push(`[pageerror] ${e.error().message}`));
  return {
    url,
    hits,
    context,
    logs,
    modelDownloads: () => hits.get(MODEL_PATH) ?? 0,
    async close() {
      await context.close();
      server.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Waits until the demo is done (or failed), then returns the state; on an unexpected state
 * the page's error line and console are in the exception. */
export async function settle(page, env, timeout) {
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout, polling: 500 });
  return page.evaluate(() => ({ state: document.body.dataset.state, error: document.getElementById('error').textContent, code: document.body.dataset.errorCode, engine: document.body.dataset.engine }));
}

export async function downloadBytes(page, selector) {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  const path = await dl.path();
  const { readFileSync } = await import('node:fs');
  return readFileSync(path);
}
