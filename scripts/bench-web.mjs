#!/usr/bin/env node
// Throughput of lmz in headless Chromium (the package, in its worker, as the demo runs it) on
// each engine, next to the native CLI on the same text and the same machine, one run after
// the other. Coding throughput (compress, decompress) is reported apart from model loading
// for every engine: in the browser the compressor is created first (Cache Storage, SHA-256,
// parsing, repacking or uploading the weights) and timed on its own; for the CLI,
// `lmz bench --speed` times compress and decompress in one process after loading the model,
// and `lmz -c` / `lmz -d` are timed as a user runs them (model load included). Prints a
// Markdown table (BENCHMARKS.md), the machine's load average and the bundle sizes.
//
//   node scripts/bench-web.mjs [--file FILE] [--bytes N] [--webgpu-bytes M] [--engines cpu,cpu:1,webgpu]
//   node scripts/bench-web.mjs [FILE] [BYTES]            (the older form)
//   node scripts/bench-web.mjs --many [N] [--streams 4,16,40] [--prefix 80] [--engines cpu:1,cpu]
//
// --many: N short notes (default 40: paragraphs of lcet10 of 120–400 bytes,
// tests/e2e/notes-corpus.mjs), each compressed alone by the CLI, decoded in the page one at a
// time (`decompress`) against the first S of them in one call (`decompressMany`, lock-step) for
// each S of --streams, and every note's first --prefix bytes in one call (`decompressRawMany`
// with `prefix`, the raw streams taken out of the CLI's files by `fileToRaw`); every result is
// checked against the note. The native CLI's `lmz bench --many` on the same files runs first,
// for reference. Engines: `cpu:1` (one thread, as in the notes extension) and `cpu` (the
// threaded build on every core).
//
// Defaults: the first 500 bytes of samples/alice-chapter1.txt, every engine (`cpu`: the
// threaded build on every core, the page being cross-origin isolated; `cpu:1`: one thread); WebGPU runs
// on the first M bytes only (default min(N, 300)): on SwiftShader (software) it codes ~7 B/s.
// Needs: scripts/build-web.sh done (out/site), Chromium, the CLI ($LMZ_BIN, else the release
// build in $CARGO_TARGET_DIR).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { start, ROOT, SITE } from '../tests/e2e/browser.mjs';
import { lcetNotes } from '../tests/e2e/notes-corpus.mjs';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    file: { type: 'string' },
    bytes: { type: 'string' },
    'webgpu-bytes': { type: 'string' },
    engines: { type: 'string' },
    many: { type: 'boolean' },
    streams: { type: 'string', default: '4,16,40' },
    prefix: { type: 'string', default: '80' },
  },
});
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
if (opt.many) {
  await manyBench();
  process.exit(0);
}

const file = opt.file ?? positionals[0] ?? join(ROOT, 'samples/alice-chapter1.txt');
const n = Number(opt.bytes ?? positionals[1] ?? 500);
const text = readFileSync(file).subarray(0, n);
const gpuText = text.subarray(0, Number(opt['webgpu-bytes'] ?? Math.min(n, 300)));
const engines = (opt.engines ?? 'cpu,cpu:1,webgpu').split(',').filter(Boolean);
const bin = process.env.LMZ_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(process.env.HOME, '.cache/lmz/target'), 'release/lmz');
const tmp = mkdtempSync(join(tmpdir(), 'lmz-bench-'));
const rows = [];
const bps = (bytes, s) => (s > 0 ? (bytes / s).toFixed(1) : '—');
const row = (what, bytes, c, d, load, size, note = '') => rows.push(`| ${what} | ${bytes} | ${bps(bytes, c)} | ${bps(bytes, d)} | ${load} | ${size} | ${note} |`);
const cliFiles = new Map(); // text length → the CLI's .lmz of that prefix

function cli(args) {
  return execFileSync(bin, args, { maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'pipe'] });
}

// --- native CLI ---
const loads = [`start ${loadavg()}`];
for (const t of new Set([text, gpuText])) {
  const path = join(tmp, `t${t.length}.txt`);
  writeFileSync(path, t);
  cliFiles.set(t.length, cli(['-c', path]));
}
// --backend gpu (lavapipe, software Vulkan) is slow on these machines: only with LMZ_BENCH_CLI_GPU=1.
for (const backend of process.env.LMZ_BENCH_CLI_GPU === '1' ? ['cpu', 'gpu'] : ['cpu']) {
  const path = join(tmp, `t${text.length}.txt`);
  try {
    // Coding only: `lmz bench --speed` loads the model once, then times compress and decompress.
    // Its row: | file | bytes | tokens | engine | bpb | compress tok/s | compress B/s | decompress tok/s | decompress B/s |
    // B/s from tok/s (printed with a decimal) and the bytes per token of this text.
    const speed = (...extra) => {
      const out = cli(['bench', '--speed', '--backend', backend, ...extra, path]).toString();
      const cells = out.split('\n').find((l) => l.startsWith(`| t${text.length}.txt |`))?.split('|').map((c) => c.trim());
      if (!cells) throw new Error(`no row in lmz bench --speed's output:\n${out}`);
      const perToken = text.length / Number(cells[3]);
      return { tokens: cells[3], engine: cells[4], cB: Number(cells[6]) * perToken, dB: Number(cells[8]) * perToken };
    };
    const { tokens, engine, cB, dB } = speed();
    // As a user runs it: one process per direction, model load included.
    let t0 = performance.now();
    const lz = cli(['--backend', backend, '-c', path]);
    const c = (performance.now() - t0) / 1000;
    writeFileSync(join(tmp, 't.lmz'), lz);
    t0 = performance.now();
    const back = cli(['--backend', backend, '-d', '-c', join(tmp, 't.lmz')]);
    const d = (performance.now() - t0) / 1000;
    if (!back.equals(text)) throw new Error('CLI round trip differs');
    const load = (c - text.length / cB).toFixed(1);
    rows.push(`| native CLI \`--backend ${backend}\`, coding only (\`lmz bench --speed\`) | ${text.length} | ${cB.toFixed(1)} | ${dB.toFixed(1)} | excluded | ${lz.length} | ${engine}; ${tokens} tokens |`);
    if (backend === 'cpu') {
      // One thread, as the browser's CPU engine runs: the per-thread comparison.
      const one = speed('--threads', '1');
      rows.push(`| native CLI \`--backend cpu --threads 1\`, coding only | ${text.length} | ${one.cB.toFixed(1)} | ${one.dB.toFixed(1)} | excluded | ${lz.length} | ${one.engine} |`);
    }
    row(`native CLI \`--backend ${backend}\`, \`lmz -c\` / \`lmz -d\` wall time`, text.length, c, d, `≈ ${load} s (incl.)`, lz.length, 'model load included: each process loads the 99 MB pack');
  } catch (e) {
    rows.push(`| native CLI, --backend ${backend} | ${text.length} | — | — | — | — | failed: ${String(e.message).split('\n')[0]} |`);
  }
}
loads.push(`after the CLI ${loadavg()}`);

// --- Chromium ---
const env = await start();
const page = await env.context.newPage();
await page.goto(env.url);
await page.waitForFunction(() => document.body.dataset.ready === '1');
for (const spec of engines) {
  const [engine, threads] = spec.split(':');
  const t = engine === 'webgpu' ? gpuText : text;
  const r = await page.evaluate(
    async ({ engine, threads, bytes }) => {
      const { createCompressor } = await import('lmz');
      const data = new Uint8Array(bytes);
      let t = performance.now();
      const lz = await createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine, threads });
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
    { engine, threads: threads ? Number(threads) : undefined, bytes: [...t] },
  );
  if (r.error) {
    rows.push(`| Chromium ${spec} | ${t.length} | — | — | — | — | failed: ${r.error} |`);
    continue;
  }
  if (!r.same) throw new Error(`${spec}: the round trip in the page differs`);
  const cliFile = cliFiles.get(t.length);
  const same = cliFile && Buffer.from(r.file).equals(cliFile) ? 'same bytes as the CLI' : 'DIFFERENT bytes from the CLI';
  const name = engine === 'cpu' ? 'wasm-CPU' : 'WebGPU';
  row(`Chromium ${name} (${r.adapter}), coding only`, t.length, r.c, r.d, `${r.load.toFixed(1)} s`, r.file.length, `${same}; load = Cache Storage + SHA-256 + parse/repack${engine === 'webgpu' ? ' + upload' : ''}, timed apart`);
  loads.push(`after ${name} ${loadavg()}`);
}
await env.close();

const wasmFile = (name) => readFileSync(join(SITE, 'node_modules/lmz/dist', name));
const sizes = (w) => `${w.length} bytes (${gzipSync(w, { level: 9 }).length} gzip -9)`;
const model = statSync(join(SITE, 'models/smollm2-135m.lmz.safetensors')).size;
console.log(`text: ${file}, first ${text.length} bytes (WebGPU: first ${gpuText.length}); ${new Date().toISOString()}; ${cpus().length} cores; load average (1/5/15 min) ${loads.join(', ')}\n`);
console.log('| engine | bytes | compress B/s | decompress B/s | model load | .lmz bytes | notes |\n|---|---|---|---|---|---|---|');
console.log(rows.join('\n'));
const tgz = statSync(join(ROOT, 'out', `lmz-${JSON.parse(readFileSync(join(ROOT, 'web/package.json'))).version}.tgz`)).size;
console.log(`\nnpm tarball: ${tgz} bytes. `);
console.log(`wasm bundle (a browser fetches one): SIMD128 ${sizes(wasmFile('wasm/lmz_wasm_bg.wasm'))}, relaxed SIMD ${sizes(wasmFile('wasm/lmz_wasm_relaxed_bg.wasm'))}, threaded relaxed SIMD ${sizes(wasmFile('wasm-threads/lmz_wasm_bg.wasm'))}, threaded SIMD128 ${sizes(wasmFile('wasm-threads/lmz_wasm_simd128_bg.wasm'))}; model download: ${model} bytes (${gzipSync(readFileSync(join(SITE, 'models/smollm2-135m.lmz.safetensors')), { level: 6 }).length} with gzip -6 on the wire)`);

// --- --many: many short notes, one at a time against one call ---

async function manyBench() {
  const count = Number(positionals[0] ?? 40);
  const streams = opt.streams.split(',').map(Number).map((k) => Math.min(k, count));
  const prefix = Number(opt.prefix);
  const engines = (opt.engines ?? 'cpu:1,cpu').split(',').filter(Boolean);
  const bin = process.env.LMZ_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(process.env.HOME, '.cache/lmz/target'), 'release/lmz');
  const notes = lcetNotes(count);
  const tmp = mkdtempSync(join(tmpdir(), 'lmz-bench-many-'));
  const paths = notes.map((t, i) => {
    const p = join(tmp, `note${String(i).padStart(3, '0')}.txt`);
    writeFileSync(p, t);
    return p;
  });
  execFileSync(bin, ['-k', '-f', ...paths]); // one run for all: NAME.txt → NAME.txt.lmz
  const files = paths.map((p) => readFileSync(`${p}.lmz`));
  const loads = [`start ${loadavg()}`];
  const bytes = notes.reduce((a, t) => a + t.length, 0);
  console.log(`${count} notes (paragraphs of lcet10 of 120–400 bytes: ${bytes} bytes, ${files.reduce((a, f) => a + f.length, 0)} bytes as the CLI's .lmz files); ${new Date().toISOString()}; ${cpus().length} cores (${cpus()[0]?.model})\n`);

  // The native CLI on the same files, for reference (its own table).
  console.log(`native CLI: lmz bench --many --streams ${streams.join(',')} --prefix ${prefix} (2 threads = every core here)\n`);
  console.log(execFileSync(bin, ['bench', '--many', '--streams', streams.join(','), '--prefix', String(prefix), ...paths], { maxBuffer: 1 << 24 }).toString());
  loads.push(`after the CLI ${loadavg()}`);

  const env = await start();
  const page = await env.context.newPage();
  await page.goto(env.url);
  await page.waitForFunction(() => document.body.dataset.ready === '1');
  const rows = [];
  for (const spec of engines) {
    const [engine, threads] = spec.split(':');
    const r = await page.evaluate(
      async ({ engine, threads, files, notes, streams, prefix }) => {
        const lmz = await import('lmz');
        const lz = await lmz.createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine, threads });
        const input = files.map((f) => new Uint8Array(f));
        const dec = new TextDecoder();
        const now = () => performance.now() / 1000;
        try {
          // One at a time.
          const alone = [];
          for (const [i, f] of input.entries()) {
            const t = now();
            const back = dec.decode(await lz.decompress(f));
            alone.push(now() - t);
            if (back !== notes[i]) throw new Error(`note ${i} did not round-trip alone`);
          }
          // The first S in one call.
          const many = [];
          for (const n of streams) {
            let first = 0;
            const t = now();
            const out = await lz.decompressMany(input.slice(0, n), { onItem: () => (first ||= now() - t) });
            const s = now() - t;
            out.forEach((o, i) => {
              if (o.status !== 'fulfilled' || dec.decode(o.value) !== notes[i]) throw new Error(`note ${i} did not round-trip in one call of ${n}`);
            });
            many.push({ n, s, first, alone: alone.slice(0, n).reduce((a, x) => a + x, 0) });
          }
          // Every note's first `prefix` bytes in one call.
          const raws = await Promise.all(input.map((f) => lmz.fileToRaw(f)));
          let t = now();
          const heads = await lz.decompressRawMany(raws, { prefix });
          const ps = now() - t;
          let headBytes = 0;
          heads.forEach((h, i) => {
            const text = dec.decode(h.value, { stream: true });
            if (h.status !== 'fulfilled' || !notes[i].startsWith(text)) throw new Error(`prefix ${i} is not the start of its note`);
            headBytes += h.value.length;
          });
          return { adapter: lz.adapter, many, prefix: { s: ps, bytes: headBytes } };
        } catch (e) {
          return { error: `${e.code}: ${e.message}` };
        } finally {
          lz.dispose();
        }
      },
      { engine, threads: threads ? Number(threads) : undefined, files: files.map((f) => [...f]), notes, streams, prefix },
    );
    if (r.error) {
      rows.push(`| Chromium ${spec} | — | — | — | — | — | — | failed: ${r.error} |`);
      continue;
    }
    for (const m of r.many) {
      const b = notes.slice(0, m.n).reduce((a, t) => a + t.length, 0);
      rows.push(`| Chromium wasm-CPU (${r.adapter}) | ${m.n} | ${b} | ${m.alone.toFixed(1)} s | ${m.s.toFixed(1)} s | **${(m.alone / m.s).toFixed(2)}×** | ${(b / m.s).toFixed(0)} | first item after ${m.first.toFixed(1)} s |`);
    }
    rows.push(`| Chromium wasm-CPU (${r.adapter}), first ${prefix} bytes of each (\`decompressRawMany\` with \`prefix\`) | ${count} | ${r.prefix.bytes} | — | ${r.prefix.s.toFixed(1)} s | — | ${(r.prefix.bytes / r.prefix.s).toFixed(0)} | titles |`);
    loads.push(`after ${spec} ${loadavg()}`);
  }
  await env.close();
  console.log(`Chromium, the package in its worker; model load excluded; load average (1/5/15 min) ${loads.join(', ')}\n`);
  console.log('| engine | notes | bytes | one at a time (`decompress` each) | in one call (`decompressMany`) | speed-up | B/s in one call | notes |\n|---|---|---|---|---|---|---|---|');
  console.log(rows.join('\n'));
}
