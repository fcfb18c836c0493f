// End-to-end: the demo page (a consumer of the packed npm package) in headless Chromium,
// against the native CLI. Every test drives the real model (99 MB pack) on the real engines;
// texts are kept short because wasm-CPU and SwiftShader are slow.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ARTIFACTS, downloadBytes, lmz, settle, SITE, start } from './browser.mjs';
import { serve } from '../../scripts/serve.mjs';

const MIN = 60_000;
// ~150 bytes of English, not in any sample file.
const TEXT = 'The lighthouse keeper wrote every evening in a small blue notebook: the wind, the ships that passed, and the colour of the sea.';
const TEXT2 = 'Integer arithmetic makes the same bits on every machine, so a file made here opens there.';

let env;
let tmp;
const files = {}; // engine → .lmz bytes made by the page

async function compressInPage(engine, text, heatmap = false, url = env.url) {
  const page = await env.context.newPage();
  await page.goto(`${url}?engine=${engine}&heatmap=${heatmap ? 1 : 0}`);
  await page.waitForFunction(() => document.body.dataset.ready === '1');
  await page.fill('#text', text);
  await page.click('#compress');
  const s = await settle(page, env, 20 * MIN);
  assert.equal(s.state, 'done', `compress on ${engine} failed: ${s.error}\n${env.logs.join('\n')}`);
  assert.equal(s.engine, engine, `asked for ${engine}, ran on ${s.engine}`);
  const file = await downloadBytes(page, '#download');
  return { page, file };
}

describe('lmz in Chromium', { concurrency: 1 }, () => {
  before(async () => {
    env = await start();
    tmp = mkdtempSync(join(tmpdir(), 'lmz-e2e-'));
  });
  after(async () => {
    if (env) {
      if (process.env.LMZ_E2E_LOGS) console.log(env.logs.join('\n'));
      await env.close();
    }
  });

  test('the page compresses a text on wasm-CPU and the CLI decompresses it byte-identically', { timeout: 25 * MIN }, async () => {
    assert.equal(env.modelDownloads(), 0);
    const { page, file } = await compressInPage('cpu', TEXT, true);
    // First use in a fresh profile: the model was downloaded once (then cached).
    assert.equal(env.modelDownloads(), 1);
    // Chromium has relaxed SIMD and the page is cross-origin isolated: the package loaded the
    // threaded relaxed-SIMD build (its Q4/Q8 kernels, a Web Worker per core), and the bytes
    // below are still the CLI's.
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    assert.ok(await page.evaluate(() => crossOriginIsolated), 'the demo server did not isolate the page');
    assert.match(await page.textContent('#engine-info'), new RegExp(`wasm32 CPU \\(RelaxedSimd\\), ${cores} thread${cores > 1 ? 's' : ''}$`));
    files.cpu = file;
    writeFileSync(join(tmp, 'page-cpu.lmz'), file);
    const back = lmz(['-d', '-c', join(tmp, 'page-cpu.lmz')]);
    assert.ok(back.equals(Buffer.from(TEXT)), `CLI decoded ${JSON.stringify(back.toString())}`);
    // The CLI makes the same file from the same text.
    assert.ok(lmz(['-c'], Buffer.from(TEXT)).equals(file), 'the CLI and the page made different files');
    // The heat map covers the whole text, one span per token, and its bits add up to about
    // the payload (a range coder is within a few bytes of the ideal code length).
    const heat = await page.evaluate(async (file) => {
      const { info } = await import('lmz');
      const head = await info(new Uint8Array(file));
      return {
        text: document.getElementById('heatmap-text').textContent,
        bits: [...document.querySelectorAll('#heatmap-text span')].reduce((s, e) => s + Number(e.dataset.bits), 0),
        methods: head.chunks.map((c) => c.method),
        payloadBits: 8 * head.chunks[0].storedLength,
      };
    }, [...file]);
    assert.equal(heat.text, TEXT);
    assert.deepEqual(heat.methods, ['model']);
    // The range coder ends within a couple of bytes of the ideal code length.
    assert.ok(heat.payloadBits - heat.bits > -1 && heat.payloadBits - heat.bits < 24, `heat map ${heat.bits.toFixed(1)} bits vs payload ${heat.payloadBits} bits`);
    await page.screenshot({ path: join(ARTIFACTS, 'demo-compressed.png'), fullPage: true });
    await page.close();
  });

  test('WebGPU (SwiftShader) and wasm-CPU make byte-identical files', { timeout: 25 * MIN }, async () => {
    const { page, file } = await compressInPage('webgpu', TEXT);
    const adapter = await page.textContent('#engine-info');
    assert.match(adapter, /WebGPU/);
    files.webgpu = file;
    assert.ok(file.equals(files.cpu), `WebGPU made ${file.length} bytes, wasm-CPU ${files.cpu.length}: not identical`);
    // Still one download: the second engine took the model from Cache Storage.
    assert.equal(env.modelDownloads(), 1);
    await page.close();
  });

  test('a CLI-made .lmz of several chunks decompresses in the page', { timeout: 25 * MIN }, async () => {
    const cliFile = join(tmp, 'note.txt.lmz');
    // Small chunks: the page decodes them with the package's decompressStream, chunk by chunk.
    writeFileSync(cliFile, lmz(['-c', '--chunk-tokens', '8'], Buffer.from(TEXT2)));
    const page = await env.context.newPage();
    await page.goto(`${env.url}?engine=cpu`);
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    await page.setInputFiles('#file', cliFile);
    const s = await settle(page, env, 20 * MIN);
    assert.equal(s.state, 'done', s.error);
    assert.equal(await page.textContent('#output'), TEXT2);
    assert.match(await page.textContent('#opened-info'), /full form, model \+ model/);
    const original = await downloadBytes(page, '#download-original');
    assert.ok(original.equals(Buffer.from(TEXT2)));
    await page.screenshot({ path: join(ARTIFACTS, 'demo-decompressed.png'), fullPage: true });
    await page.close();
  });

  test('a compact file (tag 0xFE, the CLI\'s default for a short text) dropped under any name is opened, not compressed', { timeout: 20 * MIN }, async () => {
    const file = lmz(['-c'], Buffer.from(TEXT2));
    assert.equal(file[0], 0xfe);
    const page = await env.context.newPage();
    await page.goto(`${env.url}?engine=cpu`);
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    // No .lmz in the name: the page must know the file by its first byte (the package's isLmz).
    await page.setInputFiles('#file', { name: 'note-from-a-friend.bin', mimeType: 'application/octet-stream', buffer: file });
    const s = await settle(page, env, 15 * MIN);
    assert.equal(s.state, 'done', s.error);
    assert.equal(await page.textContent('#output'), TEXT2);
    await page.close();
  });

  test('a corrupted .lmz shows a clear error', { timeout: 25 * MIN }, async () => {
    const page = await env.context.newPage();
    await page.goto(`${env.url}?engine=cpu`);
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    const cases = [
      // a flipped payload byte: the model decodes other tokens, the check catches it
      ['payload.lmz', (b) => ((b[b.length - 2] ^= 0x40), b), /^LMZ_FORMAT_(CHECKSUM|CORRUPT)$/],
      // cut short inside the header
      ['short.lmz', (b) => b.subarray(0, 3), /^LMZ_FORMAT_TRUNCATED$/],
      // not an lmz file at all
      ['text.lmz', () => Buffer.from('just some text'), /^LMZ_FORMAT_BAD_MAGIC$/],
    ];
    for (const [name, damage, code] of cases) {
      const path = join(tmp, name);
      writeFileSync(path, damage(Buffer.from(files.cpu)));
      await page.setInputFiles('#file', path);
      const s = await settle(page, env, 20 * MIN);
      assert.equal(s.state, 'error', `${name} decoded without an error`);
      assert.match(s.code, code, `${name}: ${s.error}`);
      assert.ok(s.error.startsWith(s.code + ': ') && s.error.length > s.code.length + 20, `${name}: the message says too little: ${s.error}`);
      if (name === 'payload.lmz') await page.screenshot({ path: join(ARTIFACTS, 'demo-corrupt-file.png'), fullPage: true });
    }
    await page.close();
  });

  test("the in-thread engine (worker: false) and engine 'auto' (a fallback adapter → wasm-CPU) give the same bytes", { timeout: 10 * MIN }, async () => {
    const page = await env.context.newPage();
    await page.goto(env.url);
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    const r = await page.evaluate(async (text) => {
      const { createCompressor } = await import('lmz');
      const lz = await createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine: 'auto', worker: false });
      const file = await lz.compress(new TextEncoder().encode(text));
      const back = new TextDecoder().decode(await lz.decompress(file));
      const head = await lz.info(file);
      lz.dispose();
      let disposed;
      try {
        await lz.compress(new Uint8Array(1));
      } catch (e) {
        disposed = e.code;
      }
      return { engine: lz.engine, adapter: lz.adapter, file: [...file], back, fingerprint: lz.fingerprint, headFingerprint: head.fingerprint, disposed };
    }, TEXT2);
    // SwiftShader is a fallback adapter: slower than wasm-CPU, so 'auto' does not take it.
    assert.equal(r.engine, 'cpu', r.adapter);
    // The page's main thread may not block: the single-threaded build, whatever the isolation.
    assert.match(r.adapter, /RelaxedSimd\), 1 thread$/);
    assert.equal(r.back, TEXT2);
    assert.ok(Buffer.from(r.file).equals(lmz(['-c'], Buffer.from(TEXT2))), 'the in-thread engine and the CLI made different files');
    assert.ok(r.fingerprint.startsWith(r.headFingerprint) && r.fingerprint.length === 64);
    assert.equal(r.disposed, 'LMZ_DISPOSED');
    await page.close();
  });

  test('a page that is not cross-origin isolated runs the single-threaded build, with the same bytes', { timeout: 25 * MIN }, async () => {
    // The same site without the COOP/COEP headers: no SharedArrayBuffer, so no shared memory.
    const plain = await serve(SITE, 0, { isolate: false });
    try {
      const { page, file } = await compressInPage('cpu', TEXT2, false, plain.url);
      assert.equal(await page.evaluate(() => crossOriginIsolated), false);
      assert.match(await page.textContent('#engine-info'), /wasm32 CPU \(RelaxedSimd\), 1 thread$/);
      assert.ok(file.equals(lmz(['-c'], Buffer.from(TEXT2))), 'the single-threaded build and the CLI made different files');
      await page.close();
    } finally {
      plain.server.close();
    }
  });

  test('every wasm module the package ships makes the CLI\'s bytes, each in a worker of its own', { timeout: 25 * MIN }, async () => {
    // The loader picks one module per browser; this runs each of them here (Chromium runs all
    // four), so a module no browser of the test machine would pick is still checked.
    const page = await env.context.newPage();
    await page.goto(env.url);
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    const modules = [
      ['wasm', 'lmz_wasm_bg.wasm', 1],
      ['wasm', 'lmz_wasm_relaxed_bg.wasm', 1],
      ['wasm-threads', 'lmz_wasm_bg.wasm', 2],
      ['wasm-threads', 'lmz_wasm_simd128_bg.wasm', 2],
    ];
    const want = lmz(['-c'], Buffer.from(TEXT2));
    for (const [dir, file, threads] of modules) {
      const r = await page.evaluate(
        async ({ dir, file, threads, text }) => {
          const base = new URL(`node_modules/lmz/dist/${dir}/`, location.href).href;
          const model = new URL('models/smollm2-135m.lmz.safetensors', location.href).href;
          const src = `
            import init, * as m from '${base}lmz_wasm.js';
            onmessage = async () => {
              try {
                await init({ module_or_path: new URL('${base}${file}') });
                if (${threads} > 1) await m.initThreadPool(${threads});
                const pack = new Uint8Array(await (await fetch('${model}')).arrayBuffer());
                // The package's way (the pack hashed by the caller) takes the pinned fingerprint
                // only, and a damaged pack given as the pinned one is an error, not a panic.
                const refused = await m.Compressor.createVerified(pack, 'cpu', '0'.repeat(64)).then(() => 'resolved', (e) => e.code);
                const half = await m.Compressor.createVerified(pack.subarray(0, pack.length >> 1), 'cpu', m.packFingerprint()).then(() => 'resolved', (e) => e.code);
                const c = await m.Compressor.create(pack, 'cpu');
                const out = await c.compress(new TextEncoder().encode(${JSON.stringify(text)}));
                postMessage({ adapter: c.adapter, file: [...out], refused, half });
              } catch (e) {
                postMessage({ error: String(e && e.message || e) });
              }
            };`;
          const w = new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })), { type: 'module' });
          const r = await new Promise((ok) => {
            w.onmessage = (ev) => ok(ev.data);
            w.onerror = (ev) => ok({ error: ev.message || 'worker error' });
            w.postMessage(null);
          });
          w.terminate();
          return r;
        },
        { dir, file, threads, text: TEXT2 },
      );
      const name = `${dir}/${file}`;
      assert.equal(r.error, undefined, `${name}: ${r.error}`);
      const isa = file.includes('relaxed') || (dir === 'wasm-threads' && !file.includes('simd128')) ? 'RelaxedSimd' : 'Simd128';
      assert.equal(r.adapter, `wasm32 CPU (${isa}), ${threads} thread${threads > 1 ? 's' : ''}`, name);
      assert.ok(Buffer.from(r.file).equals(want), `${name} and the CLI made different files`);
      assert.equal(r.refused, 'LMZ_HASH_MISMATCH', name);
      assert.equal(r.half, 'LMZ_PACK', name);
    }
    await page.close();
  });

  test('cancelling a call rejects it with LMZ_CANCELLED, and the compressor goes on working', { timeout: 25 * MIN }, async () => {
    const long = Buffer.from(TEXT.repeat(6)); // ~760 bytes, ~150 tokens
    const page = await env.context.newPage();
    await page.goto(env.url);
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    const r = await page.evaluate(
      async ({ lmzFile, longText }) => {
        const { createCompressor } = await import('lmz');
        const lz = await createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine: 'cpu' });
        const out = {};
        // Decompression steps token by token (~50–100 tokens/s here: ~3,000 bytes take several
        // seconds): the engine sees the cancel between two steps.
        let ac = new AbortController();
        let t0 = 0;
        const started = performance.now();
        setTimeout(() => {
          t0 = performance.now();
          ac.abort();
        }, 1000);
        try {
          await lz.decompress(new Uint8Array(lmzFile), { signal: ac.signal });
          out.decompress = `finished after ${performance.now() - started} ms`;
        } catch (e) {
          out.decompress = { code: e.code, message: e.message, ms: performance.now() - t0 };
        }
        // Compression runs a whole window in one step: the worker is replaced instead.
        ac = new AbortController();
        const call = lz.compress(new TextEncoder().encode(longText), { signal: ac.signal });
        await new Promise((ok) => setTimeout(ok, 500));
        t0 = performance.now();
        ac.abort();
        try {
          await call;
          out.compress = 'finished';
        } catch (e) {
          out.compress = { code: e.code, message: e.message, ms: performance.now() - t0 };
        }
        // Still usable, with the same bytes as ever.
        out.after = [...(await lz.compress(new TextEncoder().encode('ok')))];
        lz.dispose();
        return out;
      },
      { lmzFile: [...lmz(['-c'], Buffer.from(TEXT.repeat(24)))], longText: long.toString() },
    );
    assert.equal(r.decompress.code, 'LMZ_CANCELLED', JSON.stringify(r.decompress));
    assert.doesNotMatch(r.decompress.message, /replaced/, 'decompression did not stop by itself');
    assert.ok(r.decompress.ms < 1500, `decompression took ${r.decompress.ms} ms to stop`);
    assert.equal(r.compress.code, 'LMZ_CANCELLED', JSON.stringify(r.compress));
    assert.ok(r.compress.ms < 3000, `compression took ${r.compress.ms} ms to stop`);
    assert.ok(Buffer.from(r.after).equals(lmz(['-c'], Buffer.from('ok'))));
    await page.close();
  });

  test('a corrupted or truncated cached model is detected and downloaded again', { timeout: 25 * MIN }, async () => {
    const page = await env.context.newPage();
    await page.goto(env.url);
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    // The model in Cache Storage (the earlier tests left it there; run alone, this puts it).
    await page.evaluate(async () => {
      const { createCompressor } = await import('lmz');
      (await createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine: 'cpu' })).dispose();
    });
    for (const how of ['flip', 'truncate']) {
      const before = env.modelDownloads();
      const damaged = await page.evaluate(async ({ how }) => {
        const { CACHE_NAME } = await import('lmz');
        const cache = await caches.open(CACHE_NAME);
        const keys = await cache.keys();
        if (keys.length !== 1) throw new Error(`expected one cached model, found ${keys.length}`);
        const bytes = new Uint8Array(await (await cache.match(keys[0])).arrayBuffer());
        const bad = how === 'flip' ? bytes : bytes.subarray(0, bytes.length >> 1);
        if (how === 'flip') bad[bad.length >> 1] ^= 1;
        await cache.put(keys[0], new Response(bad));
        return bad.length;
      }, { how });
      assert.ok(damaged > 0);
      // The package, as a page would use it: the notes it reports, then a round trip.
      const r = await page.evaluate(async () => {
        const { createCompressor } = await import('lmz');
        const notes = [];
        const lz = await createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine: 'cpu', onProgress: (p) => p.note && notes.push(`${p.phase}:${p.note}`) });
        const text = new TextEncoder().encode('ok');
        const file = await lz.compress(text);
        const back = await lz.decompress(file);
        lz.dispose();
        return { notes: [...new Set(notes)], file: [...file], back: new TextDecoder().decode(back) };
      });
      // The cached copy was checked, failed, and the model was downloaded again.
      assert.deepEqual(r.notes, ['verify:cached', 'download:cache-corrupt'], `${how}: ${r.notes}`);
      assert.equal(env.modelDownloads(), before + 1, `${how}: the model was not downloaded again`);
      assert.equal(r.back, 'ok');
      assert.ok(Buffer.from(r.file).equals(lmz(['-c'], Buffer.from('ok'))), `${how}: the page and the CLI disagree on "ok"`);
      // And the cache holds a good copy again: the next load takes it without a download,
      // and reports the time of each of its steps.
      const next = await page.evaluate(async () => {
        const { createCompressor } = await import('lmz');
        const notes = [];
        const steps = {};
        const lz = await createCompressor({
          modelUrl: 'models/smollm2-135m.lmz.safetensors',
          engine: 'cpu',
          onProgress: (p) => {
            if (p.note) notes.push(`${p.phase}:${p.note}`);
            if (p.step) steps[p.step] = p.ms;
          },
        });
        lz.dispose();
        return { notes: [...new Set(notes)], steps };
      });
      assert.deepEqual(next.notes, ['verify:cached']);
      // This page is cross-origin isolated: the threaded build, whose workers are waited for.
      assert.deepEqual(Object.keys(next.steps).sort(), ['codec', 'copy', 'engine', 'hash', 'parse', 'read', 'threads', 'wasm', 'worker'], JSON.stringify(next.steps));
      for (const [step, ms] of Object.entries(next.steps)) assert.ok(Number.isFinite(ms) && ms >= 0 && ms < 60_000, `${step}: ${ms} ms`);
      assert.equal(env.modelDownloads(), before + 1);
    }
    await page.close();
  });
});
