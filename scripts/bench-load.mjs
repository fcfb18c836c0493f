#!/usr/bin/env node
// Where `createCompressor` spends its time, step by step, in headless Chromium: cold (the model
// downloaded from a server on this machine into an empty Cache Storage) and warm (the model
// already in Cache Storage, as on every later page load), on each engine. The package times
// its own loading steps and reports each in `onProgress` (`step`, `ms`; web/README.md); this
// script collects those reports and the call's wall time, repeats every case `--runs` times and
// prints the median (and the range) of each step as a Markdown table (BENCHMARKS.md, Browser).
// Steps can overlap (the wasm module loads while the model is read), so they need not add up
// to the total.
//
//   node scripts/bench-load.mjs [--engines cpu,cpu:1,webgpu] [--runs 3] [--isolate true|false]
//
// `cpu`: the threaded build on every core (the page is cross-origin isolated), `cpu:1`: one
// thread, `webgpu`: WebGPU (SwiftShader here). Needs: scripts/build-web.sh done (out/site),
// Chromium.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { start } from '../tests/e2e/browser.mjs';

const { values: opt } = parseArgs({
  options: {
    engines: { type: 'string', default: 'cpu,cpu:1' },
    runs: { type: 'string', default: '3' },
    isolate: { type: 'string', default: 'true' },
  },
});
const engines = opt.engines.split(',').filter(Boolean);
const runs = Number(opt.runs);
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const loads = [`start ${loadavg()}`];

const env = await start({ isolate: opt.isolate !== 'false' });
const page = await env.context.newPage();
await page.goto(env.url);
await page.waitForFunction(() => document.body.dataset.ready === '1');

/** One createCompressor in the page: its wall time, every progress report's time, the steps. */
function measure(spec, cold) {
  const [engine, threads] = spec.split(':');
  return page.evaluate(
    async ({ engine, threads, cold }) => {
      const { createCompressor } = await import('lmz');
      if (cold) await caches.delete('lmz-model-v1');
      const steps = {};
      const phases = {};
      const t0 = performance.now();
      const lz = await createCompressor({
        modelUrl: 'models/smollm2-135m.lmz.safetensors',
        engine,
        threads,
        onProgress: (p) => {
          const t = performance.now() - t0;
          if (p.step) steps[p.step] = (steps[p.step] ?? 0) + p.ms;
          else (phases[p.phase] ??= { first: t, last: t }).last = t;
        },
      });
      const total = performance.now() - t0;
      // The model must work: a tiny round trip (not timed).
      const data = new TextEncoder().encode('warm start');
      const back = await lz.decompress(await lz.compress(data));
      const ok = back.length === data.length && back.every((b, i) => b === data[i]);
      const adapter = lz.adapter;
      lz.dispose();
      return { total, steps, phases, ok, adapter };
    },
    { engine, threads: threads ? Number(threads) : undefined, cold },
  );
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const cell = (xs) => {
  if (!xs.length) return '—';
  const m = Math.round(median(xs));
  return xs.length > 1 ? `${m} (${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))})` : `${m}`;
};

const columns = []; // { name, results: [...] }
const adapters = new Map();
for (const spec of engines) {
  const cold = [];
  const warm = [];
  for (let r = 0; r < runs; r++) {
    for (const [isCold, into] of [
      [true, cold],
      [false, warm],
    ]) {
      const res = await measure(spec, isCold);
      if (!res.ok) throw new Error(`${spec}: the round trip after loading failed`);
      adapters.set(spec, res.adapter);
      into.push(res);
      process.stderr.write(`${spec} ${isCold ? 'cold' : 'warm'} run ${r + 1}: ${Math.round(res.total)} ms ${JSON.stringify(res.steps)}\n`);
    }
  }
  columns.push({ name: `${spec} cold`, results: cold }, { name: `${spec} warm`, results: warm });
  loads.push(`after ${spec} ${loadavg()}`);
}
await env.close();

// Steps in the order a load goes through them; any other step a build reports follows.
const ORDER = ['worker', 'wasm', 'download', 'read', 'hash', 'copy', 'rehash', 'parse', 'codec', 'engine', 'threads', 'store', 'adapter'];
const seen = new Set(columns.flatMap((c) => c.results.flatMap((r) => Object.keys(r.steps))));
const steps = [...ORDER.filter((s) => seen.has(s)), ...[...seen].filter((s) => !ORDER.includes(s))];
let model = '';
try {
  model = execFileSync('lscpu', { encoding: 'utf8' }).match(/Model name:\s*(.*)/)?.[1] ?? '';
} catch {
  /* no lscpu */
}
console.log(`createCompressor, ms: median (min–max) of ${runs} runs; ${new Date().toISOString()}; ${model}, ${cpus().length} cores; load average (1/5/15 min) ${loads.join(', ')}`);
console.log(`adapters: ${[...adapters].map(([s, a]) => `${s}: ${a}`).join('; ')}\n`);
console.log(`| step | ${columns.map((c) => c.name).join(' | ')} |`);
console.log(`|---|${columns.map(() => '---|').join('')}`);
for (const s of steps) console.log(`| ${s} | ${columns.map((c) => cell(c.results.filter((r) => s in r.steps).map((r) => r.steps[s]))).join(' | ')} |`);
console.log(`| **total** | ${columns.map((c) => `**${cell(c.results.map((r) => r.total))}**`).join(' | ')} |`);
