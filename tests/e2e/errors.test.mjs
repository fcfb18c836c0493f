// End-to-end: the two environment errors the package names, each produced by the real
// package code path in headless Chromium and shown by the demo page:
// - LMZ_STORAGE_QUOTA: the origin's storage quota is made too small for the model with the
//   DevTools protocol (Storage.overrideQuotaForOrigin, a real browser quota); Cache Storage
//   then refuses the model with its own QuotaExceededError, which the package turns into
//   LMZ_STORAGE_QUOTA (it has no other way to raise it).
// - LMZ_GPU_LIMITS: SwiftShader's adapter is big enough for the model, so the test makes it
//   report smaller limits — the one override in these tests, said here and below: a script
//   prepended to the package's worker.js (where the engine runs) by request interception
//   wraps GPUAdapter.prototype.limits to report maxStorageBuffersPerShaderStage = 4 (what a
//   WebGPU compatibility-mode adapter may report; the kernels need 8). Everything after
//   that is the package: wgpu reads the limits, lmz refuses the adapter with LMZ_GPU_LIMITS,
//   the error crosses the wasm boundary and the worker, and the demo shows it; with
//   `engine: 'auto'` the package falls back to wasm-CPU instead (ARCHITECTURE.md). To tell
//   that fallback from the one for software adapters (SwiftShader is a fallback adapter,
//   which 'auto' never takes), the 'auto' cases also make GPUAdapterInfo.isFallbackAdapter
//   report false, and a control shows that 'auto' then does take the WebGPU engine.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ARTIFACTS, downloadBytes, lmz, settle, start } from './browser.mjs';

const MIN = 60_000;
const TEXT = 'A short note about the weather: rain in the morning, sun by noon, wind all day.';

// --- the adapter overrides (test only; prepended to the package's worker.js) ---
const SMALL_LIMITS = `
{
  const d = Object.getOwnPropertyDescriptor(GPUAdapter.prototype, 'limits');
  Object.defineProperty(GPUAdapter.prototype, 'limits', {
    configurable: true,
    get() {
      const real = d.get.call(this);
      const small = {};
      for (const k in real) small[k] = real[k];
      small.maxStorageBuffersPerShaderStage = 4;
      return small;
    },
  });
}
`;
const NOT_FALLBACK = `
Object.defineProperty(GPUAdapterInfo.prototype, 'isFallbackAdapter', { configurable: true, get: () => false });
`;

let env;

/** A demo page whose worker.js gets `prelude` prepended; resolves once the page is ready.
 * `served.count` says how many times the worker script went through the override. */
async function pageWith(prelude, query) {
  const page = await env.context.newPage();
  const served = { count: 0 };
  await page.route('**/node_modules/lmz/dist/worker.js', async (route) => {
    const res = await route.fetch();
    served.count++;
    await route.fulfill({ response: res, body: `// prepended by tests/e2e/errors.test.mjs\n${prelude}\n${await res.text()}` });
  });
  await page.goto(`${env.url}?${query}`);
  await page.waitForFunction(() => document.body.dataset.ready === '1');
  return { page, served };
}

describe('environment errors in Chromium', { concurrency: 1 }, () => {
  before(async () => {
    env = await start();
  });
  after(async () => {
    if (env) {
      if (process.env.LMZ_E2E_LOGS) console.log(env.logs.join('\n'));
      await env.close();
    }
  });

  test('too small a storage quota: Cache Storage refuses the model and the demo shows LMZ_STORAGE_QUOTA', { timeout: 20 * MIN }, async () => {
    const page = await env.context.newPage();
    await page.goto(`${env.url}?engine=cpu&heatmap=0`);
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    const cdp = await env.context.newCDPSession(page);
    const origin = new URL(env.url).origin;
    const quota = 16 << 20; // the model pack is 99 MB
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: quota });
    await page.fill('#text', TEXT);
    await page.click('#compress');
    let s = await settle(page, env, 10 * MIN);
    assert.equal(s.state, 'error', 'compressed although the model cannot be cached');
    assert.equal(s.code, 'LMZ_STORAGE_QUOTA', s.error);
    assert.match(s.error, /^LMZ_STORAGE_QUOTA: Cache Storage has no room for the \d+-byte model \(the browser refused it: .+\); .*cache: false/);
    await page.screenshot({ path: join(ARTIFACTS, 'demo-storage-quota.png'), fullPage: true });
    assert.equal(env.modelDownloads(), 1, 'the model was not downloaded');
    const cached = await page.evaluate(async () => (await (await caches.open((await import('lmz')).CACHE_NAME)).keys()).length);
    assert.equal(cached, 0, 'something was cached');
    // With the quota back, the same page works (and caches the model).
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });
    await page.click('#compress');
    s = await settle(page, env, 10 * MIN);
    assert.equal(s.state, 'done', s.error);
    assert.ok((await downloadBytes(page, '#download')).equals(lmz(['-c'], Buffer.from(TEXT))));
    assert.equal(env.modelDownloads(), 2);
    await page.close();
  });

  test("an adapter with too small limits: engine 'webgpu' fails with LMZ_GPU_LIMITS, 'auto' falls back to wasm-CPU", { timeout: 20 * MIN }, async () => {
    // engine 'webgpu': the error, on the demo page.
    let { page, served } = await pageWith(SMALL_LIMITS, 'engine=webgpu&heatmap=0');
    await page.fill('#text', TEXT);
    await page.click('#compress');
    let s = await settle(page, env, 10 * MIN);
    assert.equal(served.count, 1, 'the worker script did not go through the override');
    assert.equal(s.state, 'error', 'WebGPU ran although the adapter is too small');
    assert.equal(s.code, 'LMZ_GPU_LIMITS', s.error);
    assert.match(s.error, /^LMZ_GPU_LIMITS: the WebGPU adapter .*is too small for this model: needs 8 storage buffers per stage \(has 4\).*; use engine: 'cpu'/);
    await page.screenshot({ path: join(ARTIFACTS, 'demo-gpu-limits.png'), fullPage: true });
    await page.close();

    // The control: an adapter that does not call itself a fallback, with its real limits,
    // is what 'auto' takes.
    ({ page, served } = await pageWith(NOT_FALLBACK, 'engine=auto'));
    const control = await page.evaluate(async () => {
      const { createCompressor } = await import('lmz');
      const lz = await createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine: 'auto' });
      lz.dispose();
      return { engine: lz.engine, adapter: lz.adapter };
    });
    assert.equal(served.count, 1);
    assert.equal(control.engine, 'webgpu', `'auto' did not take the adapter: ${control.adapter}`);
    await page.close();

    // The same adapter with too small limits: 'auto' runs on wasm-CPU, with the CLI's bytes.
    ({ page, served } = await pageWith(NOT_FALLBACK + SMALL_LIMITS, 'engine=auto&heatmap=0'));
    await page.fill('#text', TEXT);
    await page.click('#compress');
    s = await settle(page, env, 10 * MIN);
    assert.equal(served.count, 1);
    assert.equal(s.state, 'done', s.error);
    assert.equal(s.engine, 'cpu');
    assert.ok((await downloadBytes(page, '#download')).equals(lmz(['-c'], Buffer.from(TEXT))));
    await page.close();
  });
});
