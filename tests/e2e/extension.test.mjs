// End-to-end: the notes extension (out/extension, built by scripts/build-extension.sh from
// the packed npm package) loaded unpacked into headless Chromium, with the real model (the
// copy packaged in the extension, and the same pack from a URL of the tests' own server).
// Notes are short: wasm-CPU is slow on these machines.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, constants } from 'node:zlib';
import { ARTIFACTS, lmz, ROOT } from './browser.mjs';
import { launch, MIN, MODEL_FILE, modelServer, notesApp, title, varint } from './extension-lib.mjs';

const EXT = join(ROOT, 'out/extension');
// 300 bytes of English that is in no sample file.
const NOTE300 =
  'Tuesday. The plumber came at nine and said the boiler is older than the house, which cannot be true. ' +
  'Bought bread, eggs and the good coffee. Call Marta about the garden chairs before the weekend, and ask ' +
  'whether her brother still wants the old bicycle. Remember to water the tomatoes; it will be hot.';
const NOTE2 = 'Ideas for the trip: the coastal path, the lighthouse museum, a boat to the island if the sea is calm.';

let ctx;
let app; // page helpers (extension-lib.mjs)
let profile;
let tmp;
let logs = [];
let openNotes, settled, listed, stored, write, textOf, closeOffscreen;

describe('the notes extension in Chromium', { concurrency: 1 }, () => {
  before(async () => {
    if (!existsSync(join(EXT, 'manifest.json')) || !existsSync(join(EXT, 'model/smollm2-135m.lmz.safetensors'))) {
      throw new Error(`no extension with its model at ${EXT}: run scripts/build-extension.sh first`);
    }
    profile = mkdtempSync(join(tmpdir(), 'lmz-ext-profile-'));
    tmp = mkdtempSync(join(tmpdir(), 'lmz-ext-'));
    const launched = await launch(EXT, profile);
    ({ ctx, logs } = launched);
    app = notesApp(launched);
    ({ settled, listed, stored, write, textOf, closeOffscreen } = app);
    openNotes = app.open;
  });
  after(async () => {
    if (process.env.LMZ_E2E_LOGS) console.log(logs.join('\n'));
    await ctx?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('the manifest allows wasm and nothing more, names no remote code, and isolates its pages', () => {
    const m = JSON.parse(readFileSync(join(EXT, 'manifest.json'), 'utf8'));
    assert.equal(m.manifest_version, 3);
    assert.equal(m.content_security_policy.extension_pages, "script-src 'self' 'wasm-unsafe-eval'; object-src 'self'");
    assert.deepEqual(m.permissions.sort(), ['offscreen', 'storage', 'unlimitedStorage']);
    assert.equal(m.host_permissions, undefined);
    // Cross-origin isolated pages (the offscreen document runs the threaded wasm build).
    assert.deepEqual([m.cross_origin_embedder_policy, m.cross_origin_opener_policy], [{ value: 'require-corp' }, { value: 'same-origin' }]);
  });

  test('notes are saved compressed, and found intact when the popup opens again', { timeout: 30 * MIN }, async () => {
    const page = await openNotes();
    await write(page, NOTE300);
    await write(page, NOTE2);
    const totals = await settled(page, 2);
    const rows = await listed(page);
    assert.deepEqual(rows.map((r) => r.state), ['stored', 'stored']);
    assert.deepEqual(rows.map((r) => r.title), [NOTE2, NOTE300].map(title));
    // What the page reports is what IndexedDB holds: raw streams (model-coded in the note frame: tag FE) plus
    // the length's varint, and no text.
    const db = await stored(page);
    for (const r of rows) {
      const n = db.find((x) => x.id === r.id);
      assert.equal(n.text, undefined, 'a stored note keeps no text');
      assert.equal(n.raw[0], 0xfe);
      assert.equal(r.stored, n.raw.length + varint(n.length));
      assert.equal(r.length, Buffer.byteLength(r.id === rows[0].id ? NOTE2 : NOTE300));
    }
    assert.equal(Number(totals.stored), rows[0].stored + rows[1].stored);
    await page.screenshot({ path: join(ARTIFACTS, 'extension-popup.png') });
    await page.close();

    // The offscreen document (and the texts it keeps in memory) goes away, and the session
    // cache is emptied (as after a browser restart): the texts must come from the stored raw
    // streams.
    await closeOffscreen({ forget: true });
    const t0 = Date.now();
    const again = await openNotes();
    await settled(again, 2);
    console.log(`popup with the offscreen document closed: both notes listed after ${Date.now() - t0} ms (model loaded, 401 B decompressed)`);
    const rows2 = await listed(again);
    assert.deepEqual(rows2.map((r) => r.id), rows.map((r) => r.id));
    assert.equal(await textOf(again, rows[0].id), NOTE2);
    assert.equal(await textOf(again, rows[1].id), NOTE300);
    await again.close();
  });

  test('a 300-byte note is stored in at most half the bytes of brotli -11 of its text', async () => {
    assert.equal(Buffer.byteLength(NOTE300), 300);
    const page = await openNotes();
    await settled(page, 2);
    const row = (await listed(page)).find((r) => r.length === 300);
    const brotli = brotliCompressSync(Buffer.from(NOTE300), { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: 300 } }).length;
    console.log(`300-byte note: stored ${row.stored} B (raw stream + length), brotli -11 ${brotli} B, ${(brotli / row.stored).toFixed(2)}x smaller`);
    // Measured: 63 B against 152 B (2.41x). Half is the bar: a note stored as text, or with a
    // file header per note, or coded without the model, fails it.
    assert.ok(row.stored * 2 <= brotli, `stored ${row.stored} B vs brotli -11 ${brotli} B`);
    await page.close();
  });

  test('an exported note opens with lmz -d, byte for byte', { timeout: 5 * MIN }, async () => {
    const page = await openNotes();
    await settled(page, 2);
    const row = (await listed(page)).find((r) => r.length === 300);
    await page.click(`#list li[data-id="${row.id}"]`);
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    assert.match(dl.suggestedFilename(), /^Tuesday-The-plumber.*\.lmz$/);
    const file = join(tmp, 'note.lmz');
    writeFileSync(file, readFileSync(await dl.path()));
    assert.equal(lmz(['-d', '-c', file]).toString(), NOTE300);
    // The standalone compact form: the stored stream plus 4 bytes (2 of fingerprint, 2 of
    // length) for a 300-byte note.
    assert.match(lmz(['info', file]).toString(), /form: +compact, version 1 \(tag model\)/);
    assert.equal(readFileSync(file).length, row.stored - 2 + 4);
    // The CLI compresses the same text into the same file: the stored bytes are the CLI's too
    // (scripts/bench-notes.mjs relies on this).
    assert.ok(lmz(['-c'], Buffer.from(NOTE300)).equals(readFileSync(file)), 'the CLI made a different file from the same text');
    // Export all: one file per note.
    await page.click('#back');
    const downloads = [];
    page.on('download', (d) => downloads.push(d));
    await page.click('#export-all');
    for (let i = 0; i < 50 && downloads.length < 2; i++) await page.waitForTimeout(100);
    assert.equal(downloads.length, 2);
    const texts = downloads.map((d, i) => {
      const f = join(tmp, `all-${i}.lmz`);
      return d.path().then((p) => (writeFileSync(f, readFileSync(p)), lmz(['-d', '-c', f]).toString()));
    });
    assert.deepEqual((await Promise.all(texts)).sort(), [NOTE2, NOTE300].sort());
    await page.close();
  });

  test('.lmz files import as notes; a damaged file is refused and adds nothing', { timeout: 15 * MIN }, async () => {
    const IMPORTED = 'Made by the lmz command line: this note travelled as a file.';
    const good = join(tmp, 'from-cli.lmz');
    writeFileSync(good, lmz(['-c'], Buffer.from(IMPORTED)));
    const bad = join(tmp, 'damaged.lmz');
    const b = readFileSync(good);
    b[b.length - 1] ^= 0x10;
    writeFileSync(bad, b);
    const page = await openNotes();
    await settled(page, 2);
    await page.setInputFiles('#import', bad);
    await page.waitForFunction(() => document.body.dataset.error, null, { timeout: 10 * MIN });
    const err = await page.evaluate(() => ({ code: document.body.dataset.error, text: document.getElementById('error').textContent }));
    assert.match(err.code, /^LMZ_FORMAT_/, JSON.stringify(err));
    assert.match(err.text, /damaged\.lmz/);
    assert.equal((await stored(page)).length, 2);
    await page.setInputFiles('#import', good);
    await settled(page, 3);
    const row = (await listed(page)).find((r) => r.title === IMPORTED);
    assert.ok(row, 'the imported note is listed');
    assert.equal(row.state, 'stored');
    assert.equal(await textOf(page, row.id), IMPORTED);
    await page.close();
  });

  test('search filters the list; a deleted note is gone from the list and the database', { timeout: 10 * MIN }, async () => {
    const page = await openNotes('?view=page');
    await settled(page, 3);
    await page.fill('#search', 'LIGHTHOUSE');
    let rows = await listed(page);
    assert.deepEqual(rows.map((r) => r.title), [title(NOTE2)]);
    await page.fill('#search', 'no note says this');
    assert.deepEqual(await listed(page), []);
    await page.fill('#search', '');
    rows = await listed(page);
    assert.equal(rows.length, 3);
    const victim = rows.find((r) => r.title === title(NOTE2));
    await page.click(`#list li[data-id="${victim.id}"]`);
    await page.click('#delete');
    await page.click('#delete'); // "Really delete?"
    await settled(page, 2);
    assert.ok(!(await listed(page)).some((r) => r.id === victim.id));
    assert.ok(!(await stored(page)).some((n) => n.id === victim.id));
    await page.screenshot({ path: join(ARTIFACTS, 'extension-page.png') });
    await page.close();
  });

  test('a note typed just before the popup closes is kept, and compressed afterwards', { timeout: 15 * MIN }, async () => {
    const LAST = 'Written in a hurry: the popup closes right after this sentence.';
    const page = await openNotes();
    const before = (await stored(page)).length;
    await settled(page, before);
    await page.click('#new');
    await page.fill('#text', LAST);
    // Closed at once: no time for the debounced compression request; the text is in the
    // database (pending) and the service worker has it compressed when the page's port closes.
    await page.waitForFunction((n) => document.getElementById('totals').dataset.count === String(n), before + 1);
    await page.close();
    const again = await openNotes();
    const pending = (await stored(again)).find((n) => n.text === LAST || n.length === Buffer.byteLength(LAST));
    assert.ok(pending, 'the note is in the database');
    await settled(again, before + 1);
    const row = (await listed(again)).find((r) => r.title === LAST);
    assert.equal(row?.state, 'stored');
    assert.equal(await textOf(again, row.id), LAST);
    await again.close();
  });

  test('the model URL setting: fetched from there once, SHA-256-checked, cached; a wrong model gives its LMZ_* code in the popup and loses no note', { timeout: 20 * MIN }, async () => {
    const srv = await modelServer();
    const good = `${srv.url}cors/${MODEL_FILE}`;
    const corrupt = `${srv.url}cors/corrupt.lmz.safetensors`;
    const nocors = `${srv.url}nocors/${MODEL_FILE}`;
    const page = await openNotes('?view=page');
    const count = (await stored(page)).length;
    await settled(page, count);
    try {
      // A corrupted copy (one bit flipped, same length): downloaded, refused by the hash check.
      await app.setModelUrl(page, corrupt);
      let err = await app.errorShown(page);
      assert.equal(err.code, 'LMZ_HASH_MISMATCH', JSON.stringify(err));
      assert.ok(err.text.includes(corrupt) && /SHA-256/.test(err.text), err.text);
      assert.equal(srv.hits('/cors/corrupt.lmz.safetensors'), 1);

      // The popup: a note written now is kept as text, the popup says why and that it is safe,
      // and the wrong model is not downloaded again for it.
      const WAITING = 'Written while the model URL pointed at a damaged file: kept as text until it is fixed.';
      const popup = await openNotes();
      await app.write(popup, WAITING);
      const code = await popup.evaluate(() => import('./protocol.js').then((p) => p.ask({ op: 'sweep' })).then(() => 'ok', (e) => e.code));
      assert.equal(code, 'LMZ_HASH_MISMATCH');
      err = await app.errorShown(popup);
      assert.equal(err.code, 'LMZ_HASH_MISMATCH');
      assert.match(err.text, /notes are safe/);
      const waiting = (await stored(popup)).find((n) => n.text === WAITING);
      assert.ok(waiting, 'the note is in the database, as text');
      assert.equal((await listed(popup)).find((r) => r.id === waiting.id)?.state, 'pending');
      assert.match((await app.state(popup)).totals, /1 not compressed yet/);
      assert.equal(srv.hits('/cors/corrupt.lmz.safetensors'), 1, 'the wrong model was downloaded again');
      await popup.screenshot({ path: join(ARTIFACTS, 'extension-popup-model-error.png') });

      // A server that does not allow cross-origin requests: LMZ_FETCH, saying what to check.
      await app.setModelUrl(page, nocors);
      await page.waitForFunction(() => document.body.dataset.error === 'LMZ_FETCH', null, { timeout: MIN });
      assert.match((await app.state(page)).error, /Access-Control-Allow-Origin/);

      // The right model at the URL: downloaded once with progress, and the waiting note is
      // compressed with it.
      await app.recordStatus(page);
      await app.setModelUrl(page, good);
      await settled(page, count + 1);
      assert.equal((await app.state(page)).error, '');
      assert.equal(srv.hits(`/cors/${MODEL_FILE}`), 1);
      const log = await app.statusLog(page);
      assert.ok(log.some((l) => /^downloading the model: [\d.]+ \/ 9\d\.\d MB \(\d+ %\)$/.test(l)), `no download progress shown: ${JSON.stringify(log.slice(0, 5))}`);
      assert.ok(log.some((l) => /^checking the model \(SHA-256\)/.test(l)), 'no hash check shown');
      const db = await stored(page);
      const done = db.find((n) => n.id === waiting.id);
      assert.equal(done.text, undefined);
      assert.equal(done.raw[0], 0xfe);
      // Kept in Cache Storage under its URL, whole.
      const cached = await page.evaluate(async (u) => {
        const r = await (await caches.open('lmz-model-v1')).match(u);
        return r ? (await r.arrayBuffer()).byteLength : 0;
      }, good);
      assert.equal(cached, srv.size);

      // A new document loads the model from Cache Storage: no second download, and the
      // note decompresses (not from the session cache: emptied).
      await closeOffscreen({ forget: true });
      const again = await openNotes();
      await settled(again, count + 1);
      assert.equal(await textOf(again, waiting.id), WAITING);
      assert.equal(srv.hits(`/cors/${MODEL_FILE}`), 1);
      await again.close();
      await popup.close();
    } finally {
      // Back to the packaged model for what follows.
      await app.setModelUrl(page, '');
      await page.waitForFunction(() => document.body.dataset.model === 'ready' || document.body.dataset.error, null, { timeout: 5 * MIN });
      assert.equal((await app.state(page)).error, '');
      await page.close();
      await srv.close();
    }
  });

  // The race that left a note uncompressed on slow machines: a page's request that reaches a
  // document another context has just opened, before it listens. Chromium then closes the
  // message port with no answer, which `ask` took for a failure; the note stayed pending while
  // the page was open. Here the test opens the document itself and asks at once.
  test('a request sent while a document opened by another context is still loading is answered, and its note compressed', { timeout: 10 * MIN }, async () => {
    const TEXT = 'Written while the compressor was still starting, and compressed all the same.';
    const page = await openNotes();
    const count = (await stored(page)).length;
    await settled(page, count);
    await closeOffscreen();
    const r = await page.evaluate(async (text) => {
      const { saveText } = await import('./store.js');
      const { ask, OFFSCREEN_URL } = await import('./protocol.js');
      await saveText(crypto.randomUUID(), text);
      const opening = chrome.offscreen.createDocument({ url: OFFSCREEN_URL, reasons: ['WORKERS'], justification: 'e2e: another context opens the document' }).then(
        () => 'opened',
        (e) => String(e.message),
      );
      const answer = await ask({ op: 'sweep' }).then(
        () => 'ok',
        (e) => `${e.code}: ${e.message}`,
      );
      return { answer, opening: await opening };
    }, TEXT);
    assert.equal(r.answer, 'ok', JSON.stringify(r));
    const rec = (await stored(page)).find((n) => n.length === Buffer.byteLength(TEXT));
    assert.ok(rec?.raw, 'the note is stored compressed');
    await settled(page, count + 1);
    await page.close();
  });

  test('a note written with no request for it is compressed when the document would go idle, not left as text', { timeout: 10 * MIN }, async () => {
    const TEXT = 'Saved while no page asked for compression: the idle document finds it before it closes.';
    const page = await openNotes();
    const count = (await stored(page)).length;
    await settled(page, count);
    await app.setMeta(page, 'offscreenIdleMs', 1500);
    try {
      await closeOffscreen();
      // The document opens for a status request; the note then goes straight to the database,
      // as when a page gives up or closes at the wrong moment: nobody asks for it.
      await page.evaluate(async (text) => {
        const { ask } = await import('./protocol.js');
        const { saveText } = await import('./store.js');
        await ask({ op: 'status' });
        await saveText(crypto.randomUUID(), text);
      }, TEXT);
      const t0 = Date.now();
      for (;;) {
        const rec = (await stored(page)).find((n) => n.length === Buffer.byteLength(TEXT));
        if (rec?.raw) break;
        if (Date.now() - t0 > 5 * MIN) assert.fail(`the pending note was never compressed\ntrace:\n${(await app.trace(page)).join('\n')}`);
        await page.waitForTimeout(200);
      }
      // And then it closes as usual.
      const t1 = Date.now();
      while ((await app.offscreen(page)).length) {
        assert.ok(Date.now() - t1 < 60_000, 'the idle document was not closed after the sweep');
        await page.waitForTimeout(200);
      }
    } finally {
      await app.setMeta(page, 'offscreenIdleMs', undefined);
      await page.close();
    }
  });

  test('the offscreen document closes when idle, never during a job, and opens again for the next note', { timeout: 20 * MIN }, async () => {
    const IDLE = 1500;
    const page = await openNotes();
    const count = (await stored(page)).length;
    await settled(page, count);
    await app.setMeta(page, 'offscreenIdleMs', IDLE);
    await app.setMeta(page, 'trace', []);
    await app.setMeta(page, 'traceOn', true);
    await closeOffscreen(); // the document now open has armed the default (60 s)
    try {
      // A note; the document opens for it, loads the model and compresses, taking longer than
      // IDLE: sample the documents until the note is stored. A few KB of text, so that the job
      // outlasts IDLE on a fast machine too (a one-line note took 1.4 s on CI's).
      const FIRST = Array.from({ length: 48 }, (_, i) => `Line ${i}: the offscreen document must stay while this note is being compressed.`).join('\n');
      await app.write(page, FIRST);
      const seen = [];
      const t0 = Date.now();
      for (;;) {
        const docs = await app.offscreen(page);
        const rec = (await stored(page)).find((n) => n.length === Buffer.byteLength(FIRST));
        seen.push({ t: Date.now() - t0, docs: docs.map((d) => d.documentId), state: rec?.raw ? 'stored' : 'pending' });
        if (rec?.raw) break;
        if (Date.now() - t0 > 3 * MIN) {
          assert.fail(`the note was never compressed\npage: ${JSON.stringify(await app.state(page))}\ntrace:\n${(await app.trace(page)).join('\n')}\nlogs:\n${logs.slice(-30).join('\n')}`);
        }
        await page.waitForTimeout(100);
      }
      const first = seen.findIndex((s) => s.docs.length);
      assert.ok(first >= 0, 'no offscreen document was seen');
      const during = seen.slice(first);
      const doc = during[0].docs[0];
      assert.ok(during.every((s) => s.docs.length === 1 && s.docs[0] === doc), `the document closed or changed during the job: ${JSON.stringify(during)}`);
      const jobMs = during.at(-1).t - during[0].t;
      assert.ok(jobMs > IDLE, `the job (${jobMs} ms) must outlast the idle time (${IDLE} ms) for this test to mean anything`);

      // Idle: gone within IDLE plus a little.
      const t1 = Date.now();
      while ((await app.offscreen(page)).length) {
        assert.ok(Date.now() - t1 < IDLE + 15_000, 'the idle offscreen document was not closed');
        await page.waitForTimeout(100);
      }
      const closedMs = Date.now() - t1;
      console.log(`offscreen document: alive through a ${jobMs} ms job, closed ${closedMs} ms after it (idle time ${IDLE} ms)`);
      assert.ok(closedMs >= IDLE - 300, `closed after ${closedMs} ms, before the idle time`);

      // The next note opens a new document and is compressed; every note still reads back.
      const SECOND = 'And a new one opens on demand for the next note.';
      await app.write(page, SECOND);
      await settled(page, count + 2);
      const fresh = await openNotes();
      await settled(fresh, count + 2);
      for (const r of await listed(fresh)) assert.equal(r.state, 'stored');
      const byLength = (t) => listed(fresh).then((rows) => rows.find((r) => r.length === Buffer.byteLength(t)).id);
      assert.equal(await textOf(fresh, await byLength(FIRST)), FIRST);
      assert.equal(await textOf(fresh, await byLength(SECOND)), SECOND);
      await fresh.close();

      // Requests that arrive while a document is deciding to close, or closing, are answered
      // by the next one: none fails.
      await app.setMeta(page, 'offscreenIdleMs', 50);
      await closeOffscreen();
      const answers = await page.evaluate(async () => {
        const { ask } = await import('./protocol.js');
        const docs = new Set();
        const out = [];
        for (let i = 0; i < 40; i++) {
          await new Promise((r) => setTimeout(r, (i * 37) % 120));
          out.push(await ask({ op: 'status' }).then(() => 'ok', (e) => `${e.code}: ${e.message}`));
          for (const c of await chrome.runtime.getContexts({ contextTypes: ['OFFSCREEN_DOCUMENT'] })) docs.add(c.documentId);
        }
        return { out, docs: docs.size };
      });
      assert.deepEqual(answers.out.filter((a) => a !== 'ok'), []);
      assert.ok(answers.docs >= 3, `only ${answers.docs} documents: the idle close did not happen between requests`);
    } finally {
      if (process.env.LMZ_E2E_TRACE) console.log((await app.trace(page)).join('\n'));
      await app.setMeta(page, 'offscreenIdleMs', undefined);
      await app.setMeta(page, 'traceOn', undefined);
      await page.close();
    }
  });
});
