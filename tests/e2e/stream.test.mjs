// End-to-end: the package's inputs (Uint8Array, ArrayBuffer, Blob, ReadableStream) and its
// streams (compressStream, decompressStream) in headless Chromium on wasm-CPU, against the
// native CLI; cancelling a stream. Every test drives the real model; texts are short.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lmz, start } from './browser.mjs';

const MIN = 60_000;
// ~200 bytes of English that is in no sample file.
const TEXT =
  'The ferry left at seven, late as always, and the gulls followed it out past the harbour wall. ' +
  'On deck a boy counted the containers stacked on the quay while his grandmother read the paper.';
// ~1.1 KB (~250 tokens), in many chunks when the CLI is told to make small ones.
const LONG = [
  'Every spring the river rose over the lower meadow and the village moved its sheep to the hill.',
  'The miller kept a book of the floods: the date, the height on the old stone, and who had helped.',
  'In the driest year anyone remembered, the stone stood clear all summer and the book had one line.',
  'Children walked across the riverbed to the island and found a boat that had sunk before the war.',
  'They cleaned it, painted it blue, and when the water came back in the autumn it floated again.',
  'The miller wrote that down too, and drew the boat in the margin with a pencil he kept for it.',
  'Years later a visitor from the city asked to see the book, and read it standing by the window.',
  'She said it was the best history of the valley she had ever read, and asked to copy the drawing.',
  'The miller refused, politely, and gave her a cup of tea instead, which she said was also good.',
  'The book is still in the mill, which is a museum now, open on Sundays from April to October.',
  'Visitors may turn the pages with cotton gloves, and the boat is on the wall beside the stone.',
].join(' ');

let env;
let page;

/** Runs `fn(args)` in the page with `lz`, a compressor on wasm-CPU (worker unless told). */
function withCompressor(fn, args = {}, opts = {}) {
  return page.evaluate(
    async ({ src, args, opts }) => {
      const lmz = await import('lmz');
      const loads = [];
      const lz = await lmz.createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine: 'cpu', onProgress: (p) => loads.push(p.phase), ...opts });
      try {
        return await new Function('lz', 'lmz', 'args', 'loads', `return (${src})(lz, lmz, args, loads);`)(lz, lmz, args, loads);
      } finally {
        lz.dispose();
      }
    },
    { src: fn.toString(), args, opts },
  );
}

describe('lmz streams and inputs in Chromium', { concurrency: 1 }, () => {
  before(async () => {
    env = await start();
    page = await env.context.newPage();
    await page.goto(env.url);
    await page.waitForFunction(() => document.body.dataset.ready === '1');
  });
  after(async () => {
    if (env) {
      if (process.env.LMZ_E2E_LOGS) console.log(env.logs.join('\n'));
      await env.close();
    }
  });

  test("a Blob piped through compressStream() makes the CLI's bytes, and so does every input type", { timeout: 20 * MIN }, async () => {
    const cli = lmz(['-c'], Buffer.from(TEXT));
    const r = await withCompressor(
      async (lz, lmz, { text }) => {
        const bytes = new TextEncoder().encode(text);
        const blob = new Blob([bytes], { type: 'text/plain' });
        const seen = new Set();
        const streamed = new Uint8Array(await new Response(blob.stream().pipeThrough(lz.compressStream({ onProgress: (p) => seen.add(p.phase) }))).arrayBuffer());
        // A stream of small pieces (of different sizes, in views of a larger buffer).
        const pieces = () =>
          new ReadableStream({
            start(c) {
              const big = new Uint8Array(bytes.length + 10);
              big.set(bytes, 5);
              for (let i = 0; i < bytes.length; i += 7) c.enqueue(big.subarray(5 + i, 5 + Math.min(i + 7, bytes.length)));
              c.close();
            },
          });
        const copy = bytes.slice();
        const out = {
          stream: [...streamed],
          progress: [...seen],
          blob: [...(await lz.compress(blob))],
          buffer: [...(await lz.compress(bytes.slice().buffer))],
          readable: [...(await lz.compress(pieces()))],
          // transfer: the caller's buffer goes to the worker and is detached here.
          transferred: [...(await lz.compress(copy, { transfer: true }))],
          detached: copy.byteLength,
          // a view into a larger buffer is copied even with transfer: true
          view: [...(await lz.compress(new Uint8Array(bytes.buffer.slice(0), 0, bytes.length), { transfer: true }))],
        };
        try {
          await lz.compress('text');
          out.string = 'accepted';
        } catch (e) {
          out.string = e.code;
        }
        return out;
      },
      { text: TEXT },
    );
    for (const k of ['stream', 'blob', 'buffer', 'readable', 'transferred', 'view']) {
      assert.ok(Buffer.from(r[k]).equals(cli), `${k}: ${r[k].length} bytes, the CLI made ${cli.length}`);
    }
    assert.deepEqual(r.progress, ['compress']);
    assert.equal(r.detached, 0, 'transfer: true did not transfer the buffer');
    assert.equal(r.string, 'LMZ_INVALID_ARGUMENT');
  });

  test('decompressStream() gives back a CLI-made multi-chunk file chunk by chunk, in the worker and in thread', { timeout: 25 * MIN }, async () => {
    const file = lmz(['-c', '--chunk-tokens', '16'], Buffer.from(LONG));
    const info = JSON.parse(JSON.stringify(await page.evaluate(async (f) => (await import('lmz')).info(new Uint8Array(f)), [...file])));
    // More chunks than the engine decodes in lock-step (4 at a time), so they come out in
    // several groups.
    assert.ok(info.chunks.length >= 12, `the CLI made ${info.chunks.length} chunk(s)`);
    for (const worker of [true, false]) {
      const r = await withCompressor(
        async (lz, lmz, { file }) => {
          // The .lmz arrives in 5-byte pieces, as from a slow network.
          const bytes = new Uint8Array(file);
          const src = new ReadableStream({
            pull(c) {
              const at = (this.at ??= 0);
              if (at >= bytes.length) return c.close();
              c.enqueue(bytes.slice(at, at + 5));
              this.at = at + 5;
            },
          });
          const t0 = performance.now();
          const chunks = [];
          const reader = src.pipeThrough(lz.decompressStream()).getReader();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            chunks.push({ length: value.length, bytes: [...value], ms: performance.now() - t0 });
          }
          return { chunks, end: performance.now() - t0 };
        },
        { file: [...file] },
        { worker },
      );
      const what = worker ? 'worker' : 'in thread';
      const back = Buffer.concat(r.chunks.map((c) => Buffer.from(c.bytes)));
      assert.equal(back.toString(), LONG, `${what}: the stream did not give the original back`);
      // One piece per chunk of the file, in file order, each as it was decoded.
      assert.deepEqual(
        r.chunks.map((c) => c.length),
        info.chunks.map((c) => c.originalLength),
        `${what}: pieces do not match the chunk table`,
      );
      // The first group of chunks comes out while the later ones are still decoding.
      assert.ok(r.chunks[0].ms < 0.6 * r.chunks.at(-1).ms, `${what}: the first chunk came out at ${r.chunks[0].ms} ms, the last at ${r.chunks.at(-1).ms} ms: not streamed`);
    }
  });

  test('a damaged file errors the stream with its LMZ_FORMAT_* code', { timeout: 20 * MIN }, async () => {
    const good = lmz(['-c', '--chunk-tokens', '64'], Buffer.from(LONG));
    const cases = {
      truncated: good.subarray(0, good.length - 9),
      header: Buffer.from(good).fill(0x55, 10, 14),
      junk: Buffer.from('just some text'),
    };
    const r = await withCompressor(
      async (lz, lmz, { cases }) => {
        const out = {};
        for (const [name, bytes] of Object.entries(cases)) {
          const got = [];
          try {
            const reader = new Blob([new Uint8Array(bytes)]).stream().pipeThrough(lz.decompressStream()).getReader();
            for (;;) {
              const { done, value } = await reader.read();
              if (done) break;
              got.push(value.length);
            }
            out[name] = { code: 'none', got };
          } catch (e) {
            out[name] = { code: e.code, name: e.name, message: e.message, got };
          }
        }
        return out;
      },
      { cases: Object.fromEntries(Object.entries(cases).map(([k, v]) => [k, [...v]])) },
    );
    assert.equal(r.truncated.code, 'LMZ_FORMAT_TRUNCATED', JSON.stringify(r.truncated));
    assert.equal(r.header.code, 'LMZ_FORMAT_CORRUPT', JSON.stringify(r.header));
    assert.equal(r.junk.code, 'LMZ_FORMAT_BAD_MAGIC', JSON.stringify(r.junk));
    for (const [name, v] of Object.entries(r)) {
      assert.equal(v.name, v.code, `${name}: error name`);
      assert.deepEqual(v.got, [], `${name}: bytes came out of a file that fails its header checks`);
    }
  });

  test('a cancelled stream errors with LMZ_CANCELLED and the worker stops', { timeout: 25 * MIN }, async () => {
    const file = lmz(['-c', '--chunk-tokens', '16'], Buffer.from(LONG));
    const r = await withCompressor(
      async (lz, lmz, { file, text }) => {
        const out = {};
        // 1. decompressStream: the reader cancels after the first chunk. The decode stops
        //    between two tokens: no more progress, and the same worker takes the next call
        //    at once (a replaced worker would load the model again: `loads` would grow).
        let progressAt = [];
        const ds = lz.decompressStream({ onProgress: () => progressAt.push(performance.now()) });
        const piping = new Blob([new Uint8Array(file)]).stream().pipeTo(ds.writable);
        const reader = ds.readable.getReader();
        const first = await reader.read();
        out.firstChunk = first.value.length;
        // Model-loading phases only (calls without onProgress report to createCompressor's).
        // eslint-disable-next-line no-undef -- `loads` is a parameter of the page-side function this source becomes (withCompressor)
        const modelLoads = () => loads.filter((p) => p === 'verify' || p === 'load' || p === 'download').length;
        const loadsBefore = modelLoads();
        const cancelledAt = performance.now();
        await reader.cancel('the user closed the tab');
        try {
          await piping;
          out.writable = 'closed normally';
        } catch (e) {
          out.writable = { code: e.code, message: e.message };
        }
        await new Promise((ok) => setTimeout(ok, 1000));
        out.progressAfter = progressAt.filter((t) => t > cancelledAt + 300).length;
        const t = performance.now();
        out.next = [...(await lz.compress(new TextEncoder().encode('ok')))];
        out.nextMs = performance.now() - t;
        out.reloaded = modelLoads() > loadsBefore;
        // 2. compressStream aborted through its signal while the model runs.
        const ac = new AbortController();
        const cs = lz.compressStream({ signal: ac.signal, onProgress: () => {} });
        setTimeout(() => ac.abort(), 300);
        try {
          // (A Response would turn the stream's error into a TypeError "Failed to fetch".)
          const reader = new Blob([new TextEncoder().encode(text)]).stream().pipeThrough(cs).getReader();
          while (!(await reader.read()).done);
          out.compress = 'finished';
        } catch (e) {
          out.compress = { code: e.code, message: e.message };
        }
        // 3. Still usable.
        out.after = [...(await lz.compress(new TextEncoder().encode('ok')))];
        return out;
      },
      { file: [...file], text: LONG },
    );
    assert.ok(r.firstChunk > 0);
    assert.equal(r.writable.code, 'LMZ_CANCELLED', JSON.stringify(r.writable));
    assert.match(r.writable.message, /readable side was cancelled: the user closed the tab/);
    assert.equal(r.progressAfter, 0, 'the worker went on decoding after the stream was cancelled');
    assert.equal(r.reloaded, false, 'the worker was replaced instead of stopping by itself');
    assert.ok(r.nextMs < 2500, `the next call waited ${r.nextMs} ms`);
    const ok = lmz(['-c'], Buffer.from('ok'));
    assert.ok(Buffer.from(r.next).equals(ok));
    assert.equal(r.compress.code, 'LMZ_CANCELLED', JSON.stringify(r.compress));
    assert.ok(Buffer.from(r.after).equals(ok));
  });
});
