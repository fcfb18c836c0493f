// Shared set-up of the notes extension's e2e tests (extension*.test.mjs): Chromium with an
// unpacked build of the extension loaded, helpers that drive its pages as a user would
// (typing, clicking) and read what they show, and a model server of the tests' own.
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { Transform } from 'node:stream';
import { chromium } from 'playwright-core';
import { CHROMIUM } from './browser.mjs';

export const MIN = 60_000;
export const MODEL_FILE = 'smollm2-135m.lmz.safetensors';
export const MODEL_PACK = process.env.LMZ_MODEL ?? `${process.env.HOME}/.cache/lmz/${MODEL_FILE}`;

/** Chromium with the unpacked extension at `dir` and a profile at `profile` (fresh, or one
 * kept from an earlier launch). Resolves to { ctx, id, logs }. */
export async function launch(dir, profile) {
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true, // Chromium ≥ 132: the new headless mode, which loads extensions
    acceptDownloads: true,
    args: [`--disable-extensions-except=${dir}`, `--load-extension=${dir}`, '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const logs = [];
  ctx.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  ctx.on('weberror', (e) => logs.push(`[pageerror] ${e.error().message}`));
  const sw = ctx.serviceWorkers()[0] ?? (await ctx.waitForEvent('serviceworker', { timeout: MIN }));
  return { ctx, id: new URL(sw.url()).host, logs };
}

/** Page helpers for one launched extension. */
export function notesApp({ ctx, id, logs }) {
  const app = {
    /** The popup's page (or the full page with view '?view=page'); popup-sized by default. */
    async open(view = '') {
      const page = await ctx.newPage();
      if (!view) await page.setViewportSize({ width: 380, height: 560 });
      await page.goto(`chrome-extension://${id}/notes.html${view}`);
      return page;
    },

    /** Waits until the page knows every note's text and no note is pending; returns the totals. */
    async settled(page, count, timeout = 8 * MIN) {
      try {
        await page.waitForFunction(
          (count) => {
            const t = document.getElementById('totals').dataset;
            return document.body.dataset.loaded === 'all' && Number(t.count) === count && t.pending === '0';
          },
          count,
          { timeout, polling: 250 },
        );
      } catch (e) {
        throw new Error(`${e.message}\npage: ${JSON.stringify(await app.state(page))}\n${logs.slice(-30).join('\n')}`);
      }
      return page.evaluate(() => ({ ...document.getElementById('totals').dataset }));
    },

    /** What the page shows: body data, totals line, status line, error line. */
    state(page) {
      return page.evaluate(() => ({
        ...document.body.dataset,
        totals: document.getElementById('totals').textContent,
        status: document.getElementById('status').hidden ? '' : document.getElementById('status-text').textContent,
        error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
        notice: document.getElementById('notice').hidden ? '' : document.getElementById('notice').textContent,
      }));
    },

    /** Waits until the page shows an error; returns { code, text }. */
    async errorShown(page, timeout = 5 * MIN) {
      try {
        await page.waitForFunction(() => document.body.dataset.error, null, { timeout, polling: 100 });
      } catch (e) {
        throw new Error(`${e.message}\npage: ${JSON.stringify(await app.state(page))}\n${logs.slice(-30).join('\n')}`);
      }
      return page.evaluate(() => ({ code: document.body.dataset.error, text: document.getElementById('error').textContent }));
    },

    /** The list as the page shows it: [{ id, title, state, length, stored, size }]. */
    listed(page) {
      return page.$$eval('#list li', (lis) => lis.map((li) => ({ id: li.dataset.id, title: li.querySelector('.title').textContent, state: li.dataset.state, length: Number(li.dataset.length), stored: Number(li.dataset.stored), size: li.querySelector('.size').textContent })));
    },

    /** The notes as stored in IndexedDB (read in an extension page with the extension's module). */
    stored(page) {
      return page.evaluate(async () => {
        const { allNotes } = await import('./store.js');
        return (await allNotes()).map((n) => ({ id: n.id, rev: n.rev, length: n.length, text: n.text, raw: n.raw ? Array.from(n.raw) : undefined, unchecked: n.unchecked }));
      });
    },

    async write(page, text) {
      await page.click('#new');
      await page.fill('#text', text);
      await page.click('#back');
    },

    /** Text of note `noteId` as the editor shows it. */
    async textOf(page, noteId) {
      await page.click(`#list li[data-id="${noteId}"]`);
      await page.waitForFunction(() => !document.getElementById('text').disabled);
      const t = await page.inputValue('#text');
      await page.click('#back');
      return t;
    },

    /** Types `url` into the model setting and saves it (opening the setting if closed). */
    async setModelUrl(page, url) {
      await page.evaluate(() => (document.getElementById('settings').open = true));
      await page.fill('#model-url', url);
      await page.click('#model-save');
    },

    /** The open offscreen documents: [{ contextId, documentId }] (chrome.runtime.getContexts). */
    async offscreen(page) {
      return page.evaluate(async () => (await chrome.runtime.getContexts({ contextTypes: ['OFFSCREEN_DOCUMENT'] })).map((c) => ({ contextId: c.contextId, documentId: c.documentId })));
    },

    /** Closes the offscreen document (and the texts it keeps in memory, and its model). With
     * `forget`, the session cache of decoded texts (cache.js) is emptied too, as after a
     * browser restart: the texts must then come from the stored raw streams. */
    async closeOffscreen({ forget = false } = {}) {
      const page = await ctx.newPage();
      await page.goto(`chrome-extension://${id}/notes.html`);
      await page.evaluate(async (forget) => {
        const have = await chrome.runtime.getContexts({ contextTypes: ['OFFSCREEN_DOCUMENT'] });
        if (have.length) await chrome.offscreen.closeDocument();
        if (!forget) return;
        // After the document's last announcements have reached the service worker's cache.
        await new Promise((r) => setTimeout(r, 300));
        await chrome.storage.session.clear();
      }, forget);
      await page.close();
    },

    /** The session cache of decoded texts: { id: { rev, text, full } }. */
    sessionTexts(page) {
      return page.evaluate(async () => Object.fromEntries(Object.entries(await chrome.storage.session.get(null)).map(([k, v]) => [k.replace(/^t:/, ''), v])));
    },

    /** The extension's trace (store.js: meta 'traceOn' turns it on), one line per event. */
    async trace(page) {
      const log = await page.evaluate(() => import('./store.js').then((s) => s.getMeta('trace')));
      const t0 = log?.[0]?.t ?? 0;
      return (log ?? []).map(({ t, who, event, ...d }) => `${String(t - t0).padStart(7)} ms ${who} ${event} ${JSON.stringify(d)}`);
    },

    /** Sets a key of the extension's `meta` store (undefined deletes its value). */
    setMeta(page, key, value) {
      return page.evaluate(([k, v]) => import('./store.js').then((s) => s.setMeta(k, v ?? undefined)), [key, value ?? null]);
    },

    /** Records every text the status line shows from now on (read with `statusLog`). */
    recordStatus(page) {
      return page.evaluate(() => {
        window.__statusLog = [];
        const el = document.getElementById('status-text');
        new MutationObserver(() => window.__statusLog.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
      });
    },
    statusLog(page) {
      return page.evaluate(() => window.__statusLog ?? []);
    },
  };
  return app;
}

/** A note's title as the list shows it (its first line, at most 80 characters). */
export const title = (t) => t.trim().split('\n')[0].slice(0, 80);
export const varint = (n) => (n < 128 ? 1 : n < 16384 ? 2 : 3);

/** A model server of the tests' own on 127.0.0.1 (a random port), counting GET requests per
 * path. The pack is streamed from disk:
 *   /cors/smollm2-135m.lmz.safetensors      the pack, with Access-Control-Allow-Origin: *
 *   /cors/corrupt.lmz.safetensors           the pack with one bit flipped in the middle (same length)
 *   /nocors/smollm2-135m.lmz.safetensors    the pack, without CORS headers
 * `close()` also drops open connections: from then on nothing answers at that address. */
export async function modelServer(pack = MODEL_PACK) {
  const size = statSync(pack).size;
  const flipAt = Math.floor(size / 2);
  const hits = new Map();
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const cors = path.startsWith('/cors/') ? { 'access-control-allow-origin': '*' } : {};
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'access-control-allow-methods': 'GET', 'access-control-allow-private-network': 'true' }).end();
      return;
    }
    const corrupt = path === '/cors/corrupt.lmz.safetensors';
    if (!corrupt && path !== `/cors/${MODEL_FILE}` && path !== `/nocors/${MODEL_FILE}`) {
      res.writeHead(404, { ...cors, 'content-type': 'text/plain' }).end(`not found: ${path}\n`);
      return;
    }
    if (req.method === 'GET') hits.set(path, (hits.get(path) ?? 0) + 1);
    res.writeHead(200, { ...cors, 'content-type': 'application/octet-stream', 'content-length': size, 'cache-control': 'no-cache' });
    if (req.method !== 'GET') return res.end();
    let pos = 0;
    const flip = new Transform({
      transform(chunk, _enc, done) {
        if (corrupt && flipAt >= pos && flipAt < pos + chunk.length) {
          chunk = Buffer.from(chunk);
          chunk[flipAt - pos] ^= 0x01;
        }
        pos += chunk.length;
        done(null, chunk);
      },
    });
    createReadStream(pack).pipe(flip).pipe(res);
  });
  await new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', ok);
  });
  const url = `http://127.0.0.1:${server.address().port}/`;
  return {
    url,
    size,
    hits: (path) => hits.get(path) ?? 0,
    close() {
      server.closeAllConnections();
      return new Promise((ok) => server.close(ok));
    },
  };
}
