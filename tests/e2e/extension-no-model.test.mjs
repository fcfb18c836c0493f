// End-to-end: the notes extension built without its model (scripts/build-extension.sh
// --no-model, into a temporary directory) in headless Chromium. First use: the popup asks for
// the model's URL, a note written before that waits as text; the model is then downloaded
// once from the tests' own server with progress, SHA-256-checked and kept in Cache Storage;
// after that, with the server gone and the browser offline (and restarted), notes are still
// compressed and read back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ARTIFACTS, ROOT } from './browser.mjs';
import { launch, MIN, MODEL_FILE, modelServer, notesApp } from './extension-lib.mjs';

const FIRST = 'Written on the first day, before the model was there: it must wait as text, not vanish.';
const SECOND = 'Written offline, with the model from Cache Storage.';

let tmp, ext, profile, srv;
let launched, app;

describe('the notes extension built without its model', { concurrency: 1 }, () => {
  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lmz-ext-nomodel-'));
    ext = join(tmp, 'extension');
    profile = join(tmp, 'profile');
    execFileSync('bash', ['scripts/build-extension.sh', '--no-model', '--out', ext], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    srv = await modelServer();
    launched = await launch(ext, profile);
    app = notesApp(launched);
  });
  after(async () => {
    if (process.env.LMZ_E2E_LOGS) console.log(launched?.logs.join('\n'));
    await launched?.ctx.close();
    await srv?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('the build carries no model: a small zip, config.js says so', () => {
    assert.ok(!existsSync(join(ext, 'model')), 'model/ is in a --no-model build');
    assert.match(readFileSync(join(ext, 'config.js'), 'utf8'), /^export const PACKAGED_MODEL = false;$/m);
    const version = JSON.parse(readFileSync(join(ext, 'manifest.json'), 'utf8')).version;
    const zip = statSync(join(tmp, `lmz-notes-${version}-no-model.zip`)).size;
    console.log(`--no-model zip: ${zip} bytes`);
    assert.ok(zip < 5e6, `${zip} bytes`);
    // The extension's pages are cross-origin isolated: the threaded builds are in, with the
    // pool's helper patched to start from its own URL (an extension's CSP allows no blob: worker).
    assert.ok(existsSync(join(ext, 'node_modules/lmz/dist/wasm/lmz_wasm_bg.wasm')) && existsSync(join(ext, 'node_modules/lmz/dist/wasm-threads/lmz_wasm_bg.wasm')));
    const helper = readdirSync(join(ext, 'node_modules/lmz/dist/wasm-threads/snippets'), { recursive: true }).find((f) => String(f).endsWith('workerHelpers.no-bundler.js'));
    assert.match(readFileSync(join(ext, 'node_modules/lmz/dist/wasm-threads/snippets', String(helper)), 'utf8'), /let url = same \? import\.meta\.url :/);
  });

  test('first use: the popup asks for the model URL; a note written before is kept as text', { timeout: 5 * MIN }, async () => {
    const popup = await app.open();
    await popup.waitForFunction(() => !document.getElementById('notice').hidden);
    const st = await app.state(popup);
    assert.match(st.notice, /no model packaged.*URL/);
    assert.ok(await popup.evaluate(() => document.getElementById('settings').open), 'the model setting is not open');
    await app.write(popup, FIRST);
    const err = await app.errorShown(popup, MIN);
    assert.equal(err.code, 'LMZ_NO_MODEL_URL', JSON.stringify(err));
    assert.match(err.text, /notes are safe/);
    const db = await app.stored(popup);
    assert.equal(db.length, 1);
    assert.equal(db[0].text, FIRST);
    await popup.screenshot({ path: join(ARTIFACTS, 'extension-no-model-first-use.png') });
    await popup.close();
  });

  test('the URL given in the popup: the model downloads once with progress, and the waiting note is compressed', { timeout: 10 * MIN }, async () => {
    const popup = await app.open();
    await popup.waitForFunction(() => document.body.dataset.loaded === 'all' && document.getElementById('totals').dataset.pending === '1');
    await app.recordStatus(popup);
    await app.setModelUrl(popup, `${srv.url}cors/${MODEL_FILE}`);
    await popup.waitForFunction(() => document.getElementById('status-text').textContent.startsWith('downloading'), null, { timeout: MIN }); // polling: requestAnimationFrame
    await popup.screenshot({ path: join(ARTIFACTS, 'extension-no-model-download.png') });
    await app.settled(popup, 1);
    assert.equal((await app.state(popup)).error, '');
    assert.equal(srv.hits(`/cors/${MODEL_FILE}`), 1);
    const log = await app.statusLog(popup);
    const downloads = log.filter((l) => /^downloading the model: [\d.]+ \/ 9\d\.\d MB \(\d+ %\)$/.test(l));
    assert.ok(downloads.length >= 2, `download progress not shown: ${JSON.stringify(log.slice(0, 8))}`);
    assert.ok(log.some((l) => /^checking the model \(SHA-256\)/.test(l)), 'the hash check is not shown');
    const [row] = await app.listed(popup);
    assert.equal(row.state, 'stored');
    assert.match(row.size, /^\d+ B → \d+ B stored \([\d.]+× smaller\)$/);
    await popup.screenshot({ path: join(ARTIFACTS, 'extension-no-model-ready.png') });
    await popup.close();
  });

  test('then offline: with the server gone, notes are compressed and read back, also after a browser restart', { timeout: 15 * MIN }, async () => {
    await srv.close();
    await launched.ctx.setOffline(true);
    // A new offscreen document: its model can only come from Cache Storage.
    await app.closeOffscreen();
    const popup = await app.open();
    await app.write(popup, SECOND);
    await app.settled(popup, 2, 3 * MIN);
    await popup.close();
    const check = async () => {
      const page = await app.open();
      await app.settled(page, 2, 3 * MIN);
      const rows = await app.listed(page);
      assert.deepEqual(rows.map((r) => r.state), ['stored', 'stored']);
      assert.equal(await app.textOf(page, rows[0].id), SECOND);
      assert.equal(await app.textOf(page, rows[1].id), FIRST);
      assert.equal((await app.state(page)).error, '');
      await page.close();
    };
    // Read back from the stored raw streams (the session cache of texts emptied).
    await app.closeOffscreen({ forget: true });
    await check();

    // The browser restarts (same profile), still offline and with no server.
    await launched.ctx.close();
    launched = await launch(ext, profile);
    app = notesApp(launched);
    await launched.ctx.setOffline(true);
    await check();
    assert.equal(srv.hits(`/cors/${MODEL_FILE}`), 1);
  });
});
