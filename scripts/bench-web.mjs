#!/usr/bin/env node
// Throughput of lmz in headless Chromium (the package, in its worker, as the demo runs it) on
// each engine, next to the native CLI on the same text and the same machine, one run after
// the other. Prints a Markdown table (BENCHMARKS.md) and the bundle sizes.
//
//   node scripts/bench-web.mjs [FILE] [BYTES]     (default: the first 500 bytes of
//                                                  samples/alice-chapter1.txt)
// Needs: scripts/build-web.sh done (out/site), Chromium, the CLI ($LMZ_BIN or the release build).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { start, ROOT, SITE } from '../tests/e2e/browser.mjs';

const file = process.argv[2] ?? join(ROOT, 'samples/alice-chapter1.txt');
const n = Number(process.argv[3] ?? 500);
const text = readFileSync(file).subarray(0, n);
const bin = process.env.LMZ_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(process.env.HOME, '.cache/lmz/target'), 'release/lmz');
const tmp = mkdtempSync(join(tmpdir(), 'lmz-bench-'));
const rows = [];
const row = (what, c, d, size, note = '') => rows.push(`| ${what} | ${(text.length / c).toFixed(1)} | ${(text.length / d).toFixed(1)} | ${size} | ${note} |`);

// --- native CLI ---
writeFileSync(join(tmp, 't.txt'), text);
// --backend gpu (lavapipe, software Vulkan) is slow on these machines: only with LMZ_BENCH_CLI_GPU=1.
for (const backend of process.env.LMZ_BENCH_CLI_GPU === '1' ? ['cpu', 'gpu'] : ['cpu']) {
  try {
    let t = performance.now();
    const lz = execFileSync(bin, ['--backend', backend, '-c', join(tmp, 't.txt')], { maxBuffer: 1 << 28 });
    const c = (performance.now() - t) / 1000;
    writeFileSync(join(tmp, 't.lmz'), lz);
    t = performance.now();
    const back = execFileSync(bin, ['--backend', backend, '-d', '-c', join(tmp, 't.lmz')], { maxBuffer: 1 << 28 });
    const d = (performance.now() - t) / 1000;
    if (!back.equals(text)) throw new Error('CLI round trip differs');
    row(`native CLI, --backend ${backend}`, c, d, lz.length, backend === 'cpu' ? 'AVX2 kernels, all cores; incl. model load' : 'lavapipe (software Vulkan); incl. model load');
    globalThis[`cli_${backend}`] = lz;
  } catch (e) {
    rows.push(`| native CLI, --backend ${backend} | — | — | — | failed: ${String(e.message).split('\n')[0]} |`);
  }
}

// --- Chromium ---
const env = await start();
const page = await env.context.newPage();
await page.goto(env.url);
await page.waitForFunction(() => document.body.dataset.ready === '1');
for (const engine of ['cpu', 'webgpu']) {
  const r = await page.evaluate(
    async ({ engine, bytes }) => {
      const { createCompressor } = await import('lmz');
      const data = new Uint8Array(bytes);
      let t = performance.now();
      const lz = await createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine });
      const load = (performance.now() - t) / 1000;
      try {
        t = performance.now();
        const file = await lz.compress(data);
        const c = (performance.now() - t) / 1000;
        t = performance.now();
        const back = await lz.decompress(file);
        const d = (performance.now() - t) / 1000;
        const same = back.length === data.length && back.every((b, i) => b === data[i]);
        return { load, c, d, file: [...file], same, adapter: lz.adapter };
      } catch (e) {
        return { error: `${e.code}: ${e.message}` };
      } finally {
        lz.dispose();
      }
    },
    { engine, bytes: [...text] },
  );
  if (r.error) {
    rows.push(`| Chromium ${engine} | — | — | — | failed: ${r.error} |`);
    continue;
  }
  if (!r.same) throw new Error(`${engine}: the round trip in the page differs`);
  const same = globalThis.cli_cpu && Buffer.from(r.file).equals(globalThis.cli_cpu) ? 'same bytes as the CLI' : 'DIFFERENT bytes from the CLI';
  row(`Chromium ${engine === 'cpu' ? 'wasm-CPU' : 'WebGPU'} (${r.adapter})`, r.c, r.d, r.file.length, `${same}; model load ${r.load.toFixed(1)} s (from Cache Storage, SHA-256 checked) not included`);
}
await env.close();

const wasm = readFileSync(join(SITE, 'node_modules/lmz/dist/wasm/lmz_wasm_bg.wasm'));
const model = statSync(join(SITE, 'models/smollm2-135m.lmz.safetensors')).size;
console.log(`text: ${file}, first ${text.length} bytes; ${new Date().toISOString()}; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n`);
console.log('| engine | compress B/s | decompress B/s | .lmz bytes | notes |\n|---|---|---|---|---|');
console.log(rows.join('\n'));
const tgz = statSync(join(ROOT, 'out', `lmz-${JSON.parse(readFileSync(join(ROOT, 'web/package.json'))).version}.tgz`)).size;
console.log(`\nnpm tarball: ${tgz} bytes. `);
console.log(`wasm bundle: ${wasm.length} bytes (${gzipSync(wasm, { level: 9 }).length} gzip -9); model download: ${model} bytes (${gzipSync(readFileSync(join(SITE, 'models/smollm2-135m.lmz.safetensors')), { level: 6 }).length} with gzip -6 on the wire)`);
