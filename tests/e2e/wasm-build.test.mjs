// Which of the package's two wasm modules a runtime gets (web/src/engine.ts, hasRelaxedSimd):
// the relaxed-SIMD one only where the 8-bit dot product has its final semantics. Chromium's
// choice is checked by demo.test.mjs (the adapter says RelaxedSimd, and the bytes are the CLI's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SITE } from './browser.mjs';

const dist = join(SITE, 'node_modules/lmz/dist');
const probe = (flags) => {
  const r = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', `import(${JSON.stringify(join(dist, 'engine.js'))}).then((m) => console.log(m.hasRelaxedSimd()))`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
};
const nodeMajor = Number(process.versions.node.split('.')[0]);

test('the package ships both modules, and they differ', () => {
  assert.ok(existsSync(join(dist, 'engine.js')), 'no installed package: run scripts/build-web.sh');
  const [plain, relaxed] = ['lmz_wasm_bg.wasm', 'lmz_wasm_relaxed_bg.wasm'].map((f) => statSync(join(dist, 'wasm', f)).size);
  assert.ok(plain > 1e6 && relaxed > 1e6 && plain !== relaxed, `${plain} / ${relaxed} bytes`);
});

test("Node 20's draft relaxed SIMD (--experimental-wasm-relaxed-simd) is refused: its dot product gives other sums", { skip: nodeMajor !== 20 && `Node ${nodeMajor}: the flag and the draft are Node 20's` }, () => {
  assert.equal(probe([]), 'false');
  assert.equal(probe(['--experimental-wasm-relaxed-simd']), 'false');
});
