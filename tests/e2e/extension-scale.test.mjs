// End-to-end: the notes extension with a real person's number of notes — 40 notes (paragraphs
// of lcet10 of 120–400 bytes) made into .lmz files by the CLI and imported together — timed
// as a user waits: the list after the import, its titles, every text (search complete); every
// title after opening the popup again with the offscreen document alive and closed (from the
// session cache: no model); after a browser restart (decoded again: titles first, newest
// first, in lock-step batches). The times go to the test output (BENCHMARKS.md has them).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lmz, ROOT } from './browser.mjs';
import { launch, MIN, notesApp, title } from './extension-lib.mjs';
import { lcetNotes } from './notes-corpus.mjs';

const EXT = join(ROOT, 'out/extension');
const N = 40;
/** Rows a popup shows without scrolling (its list is 330 px high). */
const SCREEN = 8;

let launched, app, profile, tmp;
const times = [];
const note = (what, ms) => {
  times.push(`${what}: ${(ms / 1000).toFixed(1)} s`);
  console.log(`${what}: ${(ms / 1000).toFixed(1)} s`);
};

/** Waits until the list shows what `want` says, polling every 50 ms; returns the
 * milliseconds since `t0`. `want`: { rows: n } (n rows listed), { titled: k } (the first k
 * rows have a title), { all: n, full } (n rows, each with its title, or with `full` its whole
 * text known). Extension pages allow no eval: one fixed predicate, parameters as data. */
async function until(page, t0, what, want, timeout = 10 * MIN) {
  try {
    await page.waitForFunction(
      (w) => {
        const rows = [...document.querySelectorAll('#list li')].map((li) => li.dataset.text);
        if (w.rows !== undefined) return rows.length === w.rows;
        if (w.titled !== undefined) return rows.length >= w.titled && rows.slice(0, w.titled).every((t) => t !== 'none');
        return rows.length === w.all && rows.every((t) => (w.full ? t === 'full' : t !== 'none'));
      },
      want,
      { timeout, polling: 50 },
    );
  } catch (e) {
    throw new Error(`${what}: ${e.message}\npage: ${JSON.stringify(await app.state(page))}\n${launched.logs.slice(-30).join('\n')}`);
  }
  return Date.now() - t0;
}

const titled = (k) => ({ titled: k });
const all = (n, kind) => ({ all: n, full: kind === 'full' });

describe('the notes extension with 40 notes', { concurrency: 1 }, () => {
  before(async () => {
    if (!existsSync(join(EXT, 'manifest.json')) || !existsSync(join(EXT, 'model/smollm2-135m.lmz.safetensors'))) {
      throw new Error(`no extension with its model at ${EXT}: run scripts/build-extension.sh first`);
    }
    profile = mkdtempSync(join(tmpdir(), 'lmz-ext-scale-profile-'));
    tmp = mkdtempSync(join(tmpdir(), 'lmz-ext-scale-'));
    launched = await launch(EXT, profile);
    app = notesApp(launched);
  });
  after(async () => {
    if (process.env.LMZ_E2E_LOGS) console.log(launched?.logs.join('\n'));
    console.log(`times (40 notes):\n  ${times.join('\n  ')}`);
    await launched?.ctx.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const notes = lcetNotes(N);

  test('40 .lmz files from the CLI: kept as they are (no model run to store them), listed, checked and titled as they decode', { timeout: 20 * MIN }, async () => {
    // One CLI run for all (the model loads once): note-NN.txt → note-NN.txt.lmz.
    const texts = notes.map((t, i) => {
      const p = join(tmp, `note-${String(i).padStart(2, '0')}.txt`);
      writeFileSync(p, t);
      return p;
    });
    lmz(['-k', ...texts]);
    const paths = texts.map((p) => `${p}.lmz`);
    const files = paths.map((p) => readFileSync(p));
    const page = await app.open();
    await app.settled(page, 0);
    const t0 = Date.now();
    await page.setInputFiles('#import', paths);
    note('import: all 40 notes listed', await until(page, t0, 'listed', { rows: N }));
    note(`import: the first screen of titles (${SCREEN})`, await until(page, t0, 'first screen', titled(SCREEN)));
    note('import: every title', await until(page, t0, 'titles', all(N, 'title')));
    note('import: every text decoded and checked (search complete)', await until(page, t0, 'texts', all(N, 'full')));
    await app.settled(page, N);
    assert.equal((await app.state(page)).error, '');
    // The offscreen document is cross-origin isolated (the manifest's COOP and COEP), so the
    // package runs its threaded wasm build there, one thread per core.
    const engine = await page.evaluate(() => import('./protocol.js').then((p) => p.ask({ op: 'status' })).then((a) => ({ adapter: a.status.adapter, cores: navigator.hardwareConcurrency, isolated: self.crossOriginIsolated })));
    console.log(`engine: ${engine.adapter}`);
    assert.ok(engine.isolated, 'the extension pages are not cross-origin isolated');
    assert.match(engine.adapter, new RegExp(`, ${engine.cores} threads?$`));
    // Newest first is the order the files were given in; every title is its note's.
    assert.deepEqual((await app.listed(page)).map((r) => r.title), notes.map(title));
    // Stored as the CLI coded them: each raw stream is the file without its 2 fingerprint
    // bytes and its length (tag, check16, payload), checked, and every text is the note's.
    const db = await app.stored(page);
    assert.equal(db.length, N);
    for (const [i, f] of files.entries()) {
      const n = db.find((x) => x.length === notes[i].length && Buffer.from(x.raw).equals(Buffer.concat([f.subarray(0, 1), f.subarray(f.length - x.raw.length + 1)])));
      assert.ok(n, `note ${i}: no stored raw stream equal to the one in the CLI's file`);
      assert.equal(n.text, undefined);
      assert.equal(n.unchecked, undefined);
    }
    const cache = await app.sessionTexts(page);
    assert.deepEqual(db.map((n) => cache[n.id]?.text).sort(), [...notes].sort(), 'the session cache holds every text');
    await page.close();
  });

  test('the popup opened again lists every title from the session cache, without the model — with the offscreen document alive, and closed', { timeout: 10 * MIN }, async () => {
    for (const offscreen of ['alive', 'closed']) {
      if (offscreen === 'closed') await app.closeOffscreen();
      const t0 = Date.now();
      const page = await app.open();
      const ms = await until(page, t0, `reopened (${offscreen})`, all(N, 'full'));
      note(`popup opened again, offscreen document ${offscreen}: every title and text`, ms);
      assert.ok(ms <= 2000, `every title took ${ms} ms, the bar is 2 s`);
      assert.deepEqual((await app.listed(page)).map((r) => r.title), notes.map(title));
      // Search works at once.
      await page.fill('#search', 'SGML');
      const found = (await app.listed(page)).map((r) => r.title);
      assert.ok(found.length >= 1 && found.length < N, `search: ${JSON.stringify(found)}`);
      assert.ok(found.every((t) => notes.some((n) => title(n) === t && n.includes('SGML'))));
      if (offscreen === 'closed') {
        const status = await page.evaluate(() => import('./protocol.js').then((p) => p.ask({ op: 'status' })).then((a) => a.status.model));
        assert.equal(status, 'idle', 'the model was loaded to show texts the session cache has');
      }
      await page.close();
    }
  });

  test('after a browser restart (session cache gone): the first screen of titles, every title, every text, decoded in lock-step', { timeout: 20 * MIN }, async () => {
    // The offscreen document's trace says where the time goes: the model's load, each batch.
    const setup = await app.open();
    await app.setMeta(setup, 'trace', []);
    await app.setMeta(setup, 'traceOn', true);
    await setup.close();
    await launched.ctx.close();
    launched = await launch(EXT, profile);
    app = notesApp(launched);
    const t0 = Date.now();
    const page = await app.open();
    note(`browser restarted: the first screen of titles (${SCREEN})`, await until(page, t0, 'first screen', titled(SCREEN)));
    note('browser restarted: every title', await until(page, t0, 'titles', all(N, 'title')));
    note('browser restarted: every text (search complete)', await until(page, t0, 'texts', all(N, 'full')));
    assert.deepEqual((await app.listed(page)).map((r) => r.title), notes.map(title));
    assert.equal((await app.state(page)).error, '');
    await page.close();
    // And the texts are the notes (from the raw streams, checked).
    const again = await app.open();
    const cache = await app.sessionTexts(again);
    assert.deepEqual(Object.values(cache).map((c) => c.text).sort(), [...notes].sort());
    const trace = (await app.trace(again)).filter((l) => / (model-ready|decoded) /.test(l));
    console.log(`the offscreen document, after the restart:\n  ${trace.join('\n  ')}`);
    assert.ok(trace.some((l) => / decoded .*"title":true/.test(l)) && trace.some((l) => / decoded .*"title":false/.test(l)), 'no title batch and whole-text batch in the trace');
    await app.setMeta(again, 'traceOn', undefined);
    await again.close();
  });
});
