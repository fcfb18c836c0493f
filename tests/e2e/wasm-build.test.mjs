// Which of the package's four wasm modules a runtime gets (web/src/engine.ts): the relaxed-SIMD
// ones only where the 8-bit dot product has its final semantics (hasRelaxedSimd), the threaded
// one only in a worker of a cross-origin-isolated page (canUseThreads). Chromium's choices are
// checked by demo.test.mjs (the adapter says RelaxedSimd and the threads, the bytes are the CLI's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SITE } from './browser.mjs';

const dist = join(SITE, 'node_modules/lmz/dist');
const probe = (flags) => {
  const r = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', `import(${JSON.stringify(join(dist, 'engine.js'))}).then((m) => console.log(m.hasRelaxedSimd()))`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
};
const nodeMajor = Number(process.versions.node.split('.')[0]);

test('the package ships the four modules, and they differ', () => {
  assert.ok(existsSync(join(dist, 'engine.js')), 'no installed package: run scripts/build-web.sh');
  const sizes = ['wasm/lmz_wasm_bg.wasm', 'wasm/lmz_wasm_relaxed_bg.wasm', 'wasm-threads/lmz_wasm_bg.wasm', 'wasm-threads/lmz_wasm_simd128_bg.wasm'].map((f) => statSync(join(dist, f)).size);
  assert.ok(sizes.every((n) => n > 1e6) && new Set(sizes).size === 4, sizes.join(' / '));
  // The threaded build's worker script (wasm-bindgen-rayon), which its pool loads by URL.
  const snippets = readdirSync(join(dist, 'wasm-threads/snippets'), { recursive: true }).filter((f) => f.endsWith('workerHelpers.no-bundler.js'));
  assert.equal(snippets.length, 1, 'the threaded build ships without its worker script');
});

test('Node, outside a cross-origin-isolated worker, never takes the threaded build', () => {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import(${JSON.stringify(join(dist, 'engine.js'))}).then((m) => console.log(m.canUseThreads(), m.wasmThreads(8)))`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'false 1');
});

test("Node 20's draft relaxed SIMD (--experimental-wasm-relaxed-simd) is refused: its dot product gives other sums", { skip: nodeMajor !== 20 && `Node ${nodeMajor}: the flag and the draft are Node 20's` }, () => {
  assert.equal(probe([]), 'false');
  assert.equal(probe(['--experimental-wasm-relaxed-simd']), 'false');
});
