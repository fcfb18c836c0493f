// End-to-end: the package's many-item calls (compressMany, decompressMany, compressRawMany,
// decompressRawMany) in headless Chromium on wasm-CPU, against the native CLI: the CLI's
// files decode in one call to the CLI's originals, one corrupt item is rejected alone with its
// LMZ_* code, every item reaches onItem once, results come in input order. Both bindings
// paths run: the package's worker on the threaded build (the demo page is cross-origin
// isolated), whose pool hands items to the calling thread; and `worker: false`, the
// single-threaded build, whose sink calls onItem directly.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lmz, start } from './browser.mjs';

const MIN = 60_000;
// Short notes in no sample file (wasm-CPU is slow on these machines).
const NOTES = [
  'Call the dentist on Monday about the crown.',
  'The bus timetable changes in May: the 7:40 becomes the 7:35.',
  'Gift ideas: a scarf for Ana, the bird book for Tom.',
  'Water the fern twice a week; the cactus once a month.',
  'Borrowed the ladder from number 12, give it back by Friday.',
];
// A file of several chunks (full form) in the same call: decoded after the short ones.
const LONG = 'The quick brown fox jumps over the lazy dog. '.repeat(4);

let env;
let page;

/** Runs `fn(lz, lmz, args)` in the page with a wasm-CPU compressor (`opts` for createCompressor). */
function withCompressor(fn, args = {}, opts = {}) {
  return page.evaluate(
    async ({ src, args, opts }) => {
      const lmz = await import('lmz');
      const lz = await lmz.createCompressor({ modelUrl: 'models/smollm2-135m.lmz.safetensors', engine: 'cpu', ...opts });
      try {
        return { adapter: lz.adapter, ...(await new Function('lz', 'lmz', 'args', `return (${src})(lz, lmz, args);`)(lz, lmz, args)) };
      } finally {
        lz.dispose();
      }
    },
    { src: fn.toString(), args, opts },
  );
}

/** The CLI's files of NOTES and LONG, and a copy of the third note's with one payload bit flipped. */
function cliFiles() {
  const files = NOTES.map((t) => lmz(['-c'], Buffer.from(t)));
  files.push(lmz(['-c', '--chunk-tokens', '8'], Buffer.from(LONG)));
  const bad = Buffer.from(files[2]);
  bad[bad.length - 1] ^= 0x10;
  return { files, bad };
}

/** In the page: decompressMany of the files with the third replaced by its damaged copy. */
async function decodeMany(lz, lib, { files, bad }) {
  const input = files.map((f) => new Uint8Array(f));
  input[2] = new Uint8Array(bad);
  const seen = [];
  const phases = new Set();
  const out = await lz.decompressMany(input, {
    onItem: (i, r) => seen.push({ i, status: r.status, code: r.reason?.code }),
    onProgress: (p) => phases.add(p.phase),
  });
  return {
    seen,
    phases: [...phases],
    out: out.map((r) => (r.status === 'fulfilled' ? { status: r.status, text: new TextDecoder().decode(r.value) } : { status: r.status, code: r.reason.code, name: r.reason.name, isLmzError: r.reason instanceof lib.LmzError, message: r.reason.message })),
  };
}

function checkDecoded(r) {
  const want = [...NOTES, LONG];
  assert.equal(r.out.length, want.length);
  for (const [i, t] of want.entries()) {
    if (i === 2) continue;
    assert.deepEqual(r.out[i], { status: 'fulfilled', text: t }, `item ${i}`);
  }
  assert.equal(r.out[2].status, 'rejected');
  assert.equal(r.out[2].code, 'LMZ_FORMAT_CHECKSUM', JSON.stringify(r.out[2]));
  assert.equal(r.out[2].name, 'LMZ_FORMAT_CHECKSUM');
  assert.ok(r.out[2].isLmzError, 'the reason is an LmzError');
  // Every item once, in whatever order they finished; the corrupt one with its code.
  assert.deepEqual(r.seen.map((s) => s.i).sort(), want.map((_, i) => i));
  assert.deepEqual(r.seen.find((s) => s.i === 2), { i: 2, status: 'rejected', code: 'LMZ_FORMAT_CHECKSUM' });
  assert.deepEqual(r.phases, ['decompress']);
}

describe('lmz many-item calls in Chromium', { concurrency: 1 }, () => {
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

  test("decompressMany of the CLI's files gives the CLI's originals; a corrupt file is rejected alone with its code (worker, threaded build)", { timeout: 15 * MIN }, async () => {
    const args = cliFiles();
    const r = await withCompressor(decodeMany, { files: args.files.map((f) => [...f]), bad: [...args.bad] });
    assert.match(r.adapter, /threads?$/);
    checkDecoded(r);
  });

  test('the same in the calling thread (worker: false, single-threaded build): onItem straight from the engine', { timeout: 15 * MIN }, async () => {
    const args = cliFiles();
    const r = await withCompressor(decodeMany, { files: args.files.map((f) => [...f]), bad: [...args.bad] }, { worker: false });
    assert.match(r.adapter, /1 thread$/);
    checkDecoded(r);
  });

  test("compressMany makes the CLI's files, compressRawMany their raw streams; decompressRawMany gives the texts, or their first bytes with prefix; a damaged stream fails alone", { timeout: 20 * MIN }, async () => {
    const cli = NOTES.map((t) => [...lmz(['-c'], Buffer.from(t))]);
    const r = await withCompressor(
      async (lz, lmz, { notes, cli }) => {
        const enc = new TextEncoder();
        const dec = (b) => new TextDecoder().decode(b);
        const inputs = notes.map((t) => enc.encode(t));
        const items = [];
        const files = await lz.compressMany(inputs, { onItem: (i) => items.push(i) });
        const raws = await lz.compressRawMany(inputs);
        // The raw streams inside the CLI's files, without a model run.
        const inside = await Promise.all(cli.map((f) => lmz.fileToRaw(new Uint8Array(f))));
        const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
        const rawItems = raws.map((r, i) => ({ raw: r.value, length: inputs[i].length }));
        const damaged = { raw: rawItems[1].raw.slice(), length: rawItems[1].length };
        damaged.raw[damaged.raw.length - 1] ^= 0x04;
        const full = await lz.decompressRawMany([...rawItems, damaged]);
        const heads = await lz.decompressRawMany(rawItems, { prefix: 12 });
        const bad = await Promise.all([
          lz.decompressRawMany([{ raw: rawItems[0].raw, length: -1 }]).catch((e) => e.code),
          lz.decompressMany(['not bytes']).catch((e) => e.code),
          lz.decompressRawMany(rawItems, { prefix: 1.5 }).catch((e) => e.code),
        ]);
        return {
          files: files.map((f, i) => f.status === 'fulfilled' && same(f.value, cli[i])),
          items: items.sort((a, b) => a - b),
          raws: raws.map((r, i) => r.status === 'fulfilled' && same(r.value, inside[i].raw) && inside[i].length === inputs[i].length),
          full: full.map((r) => (r.status === 'fulfilled' ? dec(r.value) : r.reason.code)),
          heads: heads.map((r) => (r.status === 'fulfilled' ? dec(r.value) : r.reason.code)),
          bad,
        };
      },
      { notes: NOTES, cli },
    );
    assert.deepEqual(r.files, NOTES.map(() => true), "compressMany's files are the CLI's");
    assert.deepEqual(r.items, [0, 1, 2, 3, 4]);
    assert.deepEqual(r.raws, NOTES.map(() => true), "compressRawMany's streams are the ones inside the CLI's files");
    // A flipped payload bit fails the range decoder's end check or the check of the original.
    assert.deepEqual(r.full.slice(0, -1), NOTES);
    assert.match(r.full.at(-1), /^LMZ_FORMAT_(CHECKSUM|CORRUPT)$/);
    for (const [i, h] of r.heads.entries()) {
      assert.ok(h.length >= 12 && h.length < NOTES[i].length && NOTES[i].startsWith(h), `prefix ${i}: ${JSON.stringify(h)}`);
    }
    assert.deepEqual(r.bad, ['LMZ_INVALID_ARGUMENT', 'LMZ_INVALID_ARGUMENT', 'LMZ_INVALID_ARGUMENT']);
  });

  test('aborting a many-item call rejects it with LMZ_CANCELLED, and the compressor goes on', { timeout: 15 * MIN }, async () => {
    const files = NOTES.map((t) => [...lmz(['-c'], Buffer.from(t.repeat(4)))]);
    const r = await withCompressor(
      async (lz, _lmz, { files }) => {
        const input = files.map((f) => new Uint8Array(f));
        const ac = new AbortController();
        const p = lz.decompressMany(input, { signal: ac.signal, onProgress: (p) => p.done > 0 && ac.abort() });
        const code = await p.then(
          () => 'resolved',
          (e) => e.code,
        );
        const after = await lz.decompressMany(input.slice(0, 1));
        return { code, after: after[0].status };
      },
      { files },
    );
    assert.equal(r.code, 'LMZ_CANCELLED');
    assert.equal(r.after, 'fulfilled');
  });
});
