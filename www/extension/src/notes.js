// The notes page (the popup, and the full-page view at notes.html?view=page). It never runs
// the model: it writes every edit to the database at once (the pending text), asks the
// offscreen document to compress, and asks it for the texts of stored notes. So this page
// never freezes and a note is never lost when it closes.
//
// Texts it shows come from, in this order: the pending text in the database; the session cache
// (chrome.storage.session, cache.js: every text decoded since the browser started, so a popup
// opened again lists and searches everything without the model); the offscreen document,
// which decodes the rest — titles first, newest notes first, many notes per call — and
// announces each as it comes.

import { Codes as LmzCodes, rawToFile } from './lmz.js';
import { allNotes, deleteNote, getMeta, getNote, saveText, setMeta, storedBytes } from './store.js';
import { ask, Codes } from './protocol.js';
import { cachedTexts, uncache } from './cache.js';
import { PACKAGED_MODEL } from './config.js';

const $ = (id) => document.getElementById(id);
const isPage = new URLSearchParams(location.search).get('view') === 'page';
if (isPage) document.body.classList.add('page');

const fmt = (n) => n.toLocaleString('en-US');
const mb = (n) => (n / 1e6).toFixed(1);
const PHASES = { download: 'downloading the model', verify: 'checking the model (SHA-256)', load: 'loading the model', compress: 'compressing', decompress: 'decompressing', import: 'importing' };
/** Errors about the model itself (where it comes from, what it is): the notes wait as text. */
const MODEL_ERRORS = new Set([LmzCodes.FETCH, LmzCodes.HASH_MISMATCH, LmzCodes.STORAGE_QUOTA, LmzCodes.FORMAT_MODEL_MISMATCH, Codes.NO_MODEL_URL, Codes.INVALID_URL]);

let notes = []; // records, newest first
const texts = new Map(); // id → { rev, text, full } known to this page (full: false for a title only)
const asked = new Set(); // `${kind}:${id}:${rev}` asked of the offscreen document, not yet answered
let current; // id of the note in the editor
let saving = Promise.resolve(); // the chain of writes of the current page (kept in order)
let sweepTimer;
let sweepFailed = false; // the last sweep failed: its error shows until one succeeds

// The service worker watches this port: when the page closes it has pending notes compressed.
chrome.runtime.connect({ name: 'notes-page' });

function showError(e) {
  const model = MODEL_ERRORS.has(e?.code);
  $('error').hidden = !e;
  $('error-text').textContent = e ? `${e.code ? e.code + ': ' : ''}${e.message ?? e}` : '';
  // A model that does not load never costs a note: say so, and where to fix it.
  $('error-hint').hidden = !model;
  document.body.dataset.error = e?.code ?? (e ? 'error' : '');
  if (model && e.code !== LmzCodes.FORMAT_MODEL_MISMATCH) $('settings').open = true;
  if (e?.code === Codes.NO_MODEL_URL) showNotice(null); // the error says it, with its code
}

function showNotice(text) {
  $('notice').hidden = !text;
  $('notice').textContent = text ?? '';
}

// --- status from the offscreen document ---

/** "phase a / b unit (p %)" for a progress report. */
function progressLine(p) {
  const what = PHASES[p.phase] ?? p.phase;
  if (!p.total || p.phase === 'load') return `${what}…`;
  const pct = Math.floor((100 * p.done) / p.total);
  if (p.phase === 'download' || p.phase === 'verify') return `${what}: ${mb(p.done)} / ${mb(p.total)} MB (${pct} %)`;
  return `${what}: ${fmt(p.done)} / ${fmt(p.total)} bytes`;
}

let lastModel = 'idle';

function showStatus(s) {
  document.body.dataset.model = s.model;
  const p = s.busy ?? s.progress;
  let line = '';
  if (s.model === 'loading') line = p ? progressLine(p) : 'loading the model…';
  else if (s.busy) line = s.busy.total ? progressLine(s.busy) : `${PHASES[s.busy.phase] ?? s.busy.phase ?? s.busy.op}…`;
  $('status').hidden = !line;
  $('status-text').textContent = line;
  $('status-bar').value = p?.total ? p.done / p.total : 0;
  if (s.model === 'error') showError(s.error);
  // The model loaded after a model error: that error is over.
  if (s.model === 'ready' && lastModel !== 'ready' && MODEL_ERRORS.has(document.body.dataset.error)) showError(null);
  if (s.model === 'ready') showNotice(null);
  lastModel = s.model;
  if (s.engine) $('engine').textContent = `Engine: ${s.engine === 'webgpu' ? 'WebGPU' : 'wasm-CPU'} (${s.adapter}).`;
}

chrome.runtime.onMessage.addListener((msg) => {
  if (msg?.to !== 'ui') return false;
  if (msg.type === 'status') showStatus(msg.status);
  if (msg.type === 'changed') void refresh();
  if (msg.type === 'text') gotText(msg);
  if (msg.type === 'text-error') showError(Object.assign(new Error(`a stored note does not decode: ${msg.error.message}`), { code: msg.error.code }));
  return false;
});

/** A title or whole text announced by the offscreen document (for any page: ignored when it
 * is not of the revision listed here, or a title of a note whose text is known). */
function gotText({ id, rev, text, full }) {
  const n = notes.find((x) => x.id === id);
  const have = texts.get(id);
  if (n?.rev !== rev || (have?.rev === rev && have.full && !full)) return;
  texts.set(id, { rev, text, full });
  if (full && id === current && $('text').disabled) {
    $('text').value = text;
    $('text').disabled = false;
  }
  renderSoon();
}

// --- the list ---

/** What this page knows of note `n` at its revision: { rev, text, full } or undefined. */
function known(n) {
  const t = texts.get(n.id);
  return t?.rev === n.rev ? t : undefined;
}

function titleOf(n) {
  const t = known(n);
  if (!t) return null;
  return t.text.trim().split('\n')[0].slice(0, 80) || (t.full ? '(empty note)' : '…');
}

function renderTotals() {
  const length = notes.reduce((a, n) => a + n.length, 0);
  const stored = notes.reduce((a, n) => a + storedBytes(n), 0);
  const pending = notes.filter((n) => n.raw === undefined).length;
  const t = $('totals');
  t.dataset.count = notes.length;
  t.dataset.length = length;
  t.dataset.stored = stored;
  t.dataset.pending = pending;
  t.dataset.saved = length - stored;
  t.textContent = notes.length
    ? `${notes.length} note${notes.length === 1 ? '' : 's'} · ${fmt(length)} B of text` +
      (pending < notes.length ? ` stored in ${fmt(stored)} B` : '') +
      (length > stored ? ` · ${fmt(length - stored)} B saved (${(length / stored).toFixed(1)}×)` : '') +
      (pending ? ` · ${pending} not compressed yet` : '')
    : '';
}

/** "300 B → 63 B (4.8×)" for a stored note, "300 B" for a pending one. */
function sizeLine(n) {
  if (!n.raw) return `${fmt(n.length)} B`;
  const s = storedBytes(n);
  return `${fmt(n.length)} B → ${fmt(s)} B stored${n.length > s ? ` (${(n.length / s).toFixed(1)}× smaller)` : ''}`;
}

function matches(n, q) {
  if (!q) return true;
  const t = known(n);
  // Not yet decompressed (or only its title): kept until known.
  return t?.text.toLowerCase().includes(q) || !t?.full;
}

function renderList() {
  const q = $('search').value.trim().toLowerCase();
  const ul = $('list');
  ul.replaceChildren();
  for (const n of notes) {
    if (!matches(n, q)) continue;
    const li = document.createElement('li');
    li.dataset.id = n.id;
    li.dataset.state = n.raw ? 'stored' : 'pending';
    li.dataset.text = known(n)?.full ? 'full' : known(n) ? 'title' : 'none';
    li.dataset.length = n.length;
    li.dataset.stored = storedBytes(n);
    if (n.id === current) li.classList.add('current');
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = titleOf(n) ?? '(decompressing…)';
    const size = document.createElement('span');
    size.className = 'size';
    size.textContent = sizeLine(n);
    li.append(title, size);
    li.addEventListener('click', () => open(n.id));
    ul.append(li);
  }
  $('empty').hidden = notes.length > 0;
  renderTotals();
  renderNoteSize();
  // 'all': every note's whole text is known (search is complete); `titles` likewise for titles.
  document.body.dataset.loaded = notes.every((n) => known(n)?.full) ? 'all' : 'some';
  document.body.dataset.titles = notes.every((n) => known(n)) ? 'all' : 'some';
}

let renderQueued = false;

/** Renders once per frame however many texts arrive. */
function renderSoon() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderList();
  });
}

function renderNoteSize() {
  const n = notes.find((x) => x.id === current);
  const el = $('note-size');
  el.textContent = !n ? '' : n.raw ? sizeLine(n) : `${fmt(n.length)} B of text, saving…`;
}

/** Reloads the records, takes what the session cache knows, and asks the offscreen document
 * for the rest: titles of the notes with none, newest first, then whole texts. */
async function refresh() {
  notes = await allNotes();
  for (const n of notes) if (n.text !== undefined) texts.set(n.id, { rev: n.rev, text: n.text, full: true });
  const unknown = notes.filter((n) => !known(n)?.full);
  const cached = await cachedTexts(unknown.map((n) => n.id));
  for (const n of unknown) {
    const c = cached.get(n.id);
    if (c?.rev === n.rev && !(known(n) && !c.full)) texts.set(n.id, c);
  }
  renderList();
  const want = (kind, ns) => ns.filter((n) => !asked.has(`${kind}:${n.id}:${n.rev}`));
  const titles = want('title', notes.filter((n) => !known(n)));
  const full = want('full', notes.filter((n) => !known(n)?.full));
  if (!titles.length && !full.length) return;
  const keys = [...titles.map((n) => `title:${n.id}:${n.rev}`), ...full.map((n) => `full:${n.id}:${n.rev}`)];
  for (const k of keys) asked.add(k);
  try {
    const { errors } = await ask({ op: 'decode', titles: titles.map((n) => n.id), full: full.map((n) => n.id) });
    if (errors.length) showError(Object.assign(new Error(`${errors.length} stored note(s) do not decode: ${errors[0].message}`), { code: errors[0].code }));
  } catch (e) {
    showError(e);
  } finally {
    // Whatever was not answered is asked again by the next refresh.
    for (const k of keys) asked.delete(k);
  }
}

// --- the editor ---

function showEditor(on) {
  $('editor-pane').hidden = !on;
  if (isPage) $('pick').hidden = on;
  else $('list-pane').hidden = on;
}

function open(id) {
  current = id;
  const n = notes.find((x) => x.id === id);
  const t = n && known(n);
  $('text').value = t?.full ? t.text : '';
  $('text').disabled = Boolean(n) && !t?.full; // still decompressing
  $('delete').textContent = 'Delete';
  showEditor(true);
  renderList();
  $('text').focus();
  // Its whole text before anything else queued.
  if (n && !t?.full) ask({ op: 'decode', full: [id], first: true }).catch(showError);
}

/** Asks for the pending notes to be compressed, `ms` from now (edits in between wait for the
 * last one). When the compressor cannot be reached (not a model error: those wait for the
 * user), it is asked again later, longer each time, while a note is pending: a note is never
 * left as text for a moment's bad luck. */
function scheduleSweep(ms = 800) {
  clearTimeout(sweepTimer);
  sweepTimer = setTimeout(() => {
    ask({ op: 'sweep' }).then(
      () => {
        if (sweepFailed) showError(null);
        sweepFailed = false;
      },
      (e) => {
        showError(e);
        sweepFailed = true;
        if (!MODEL_ERRORS.has(e?.code) && notes.some((n) => n.raw === undefined)) scheduleSweep(Math.min(ms * 2, 60_000));
      },
    );
  }, ms);
}

$('text').addEventListener('input', () => {
  const id = current;
  const text = $('text').value;
  // Every edit goes to the database at once, in order; compression comes later.
  saving = saving
    .then(() => saveText(id, text))
    .then((rec) => {
      // Other open pages (the popup and the full page) list it too.
      chrome.runtime.sendMessage({ to: 'ui', type: 'changed', id }).catch(() => {});
      texts.set(id, { rev: rec.rev, text, full: true });
      const i = notes.findIndex((n) => n.id === id);
      if (i >= 0) notes.splice(i, 1);
      notes.unshift(rec);
      renderList();
    })
    .catch(showError);
  scheduleSweep();
});

$('new').addEventListener('click', () => {
  current = crypto.randomUUID(); // stored with its first character
  $('text').value = '';
  $('text').disabled = false;
  showEditor(true);
  renderList();
  $('text').focus();
});

$('back').addEventListener('click', () => {
  showEditor(false);
  current = undefined;
  renderList();
});

$('delete').addEventListener('click', async () => {
  const b = $('delete');
  if (b.textContent !== 'Really delete?') {
    b.textContent = 'Really delete?';
    return;
  }
  const id = current;
  await saving;
  await deleteNote(id).catch(showError);
  texts.delete(id);
  void uncache(id);
  current = undefined;
  showEditor(false);
  await refresh();
});

$('search').addEventListener('input', renderList);

// --- export and import ---

const slug = (s) => (s ?? 'note').replace(/[^\p{L}\p{N}]+/gu, '-').replace(/^-|-$/g, '').slice(0, 40) || 'note';

function download(bytes, name) {
  const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** The standalone `.lmz` of note `id`: its raw stream with the header put back (no model
 * run); a note still pending is compressed first. */
async function fileOf(id) {
  await saving;
  let n = await getNote(id);
  if (n?.text !== undefined) {
    await ask({ op: 'compress', id });
    n = await getNote(id);
  }
  if (!n?.raw) throw Object.assign(new Error('the note changed while it was being exported; try again'), { code: Codes.EXTENSION });
  return { bytes: await rawToFile(n.raw, n.length), name: `${slug(titleOf(n))}.lmz` };
}

$('export').addEventListener('click', async () => {
  try {
    const f = await fileOf(current);
    download(f.bytes, f.name);
  } catch (e) {
    showError(e);
  }
});

$('export-all').addEventListener('click', async () => {
  try {
    const names = new Set();
    for (const n of notes) {
      const f = await fileOf(n.id);
      let name = f.name;
      for (let k = 2; names.has(name); k++) name = f.name.replace(/\.lmz$/, `-${k}.lmz`);
      names.add(name);
      download(f.bytes, name);
    }
  } catch (e) {
    showError(e);
  }
});

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Files per import request: a message carries them base64-encoded, up to this many bytes. */
const IMPORT_BYTES = 16 << 20;

$('import').addEventListener('change', async (ev) => {
  const files = [...ev.target.files];
  ev.target.value = '';
  showError(null);
  // In batches: the offscreen document stores them at once (a compact file as its raw stream,
  // no model run), lists them, then decodes them all together to check them, titles first.
  const errors = [];
  for (let i = 0; i < files.length; ) {
    const batch = [];
    for (let size = 0; i < files.length && (!batch.length || size + files[i].size < IMPORT_BYTES); i++) {
      batch.push({ name: files[i].name, base64: toBase64(new Uint8Array(await files[i].arrayBuffer())) });
      size += files[i].size;
    }
    try {
      const r = await ask({ op: 'import', files: batch });
      errors.push(...r.errors);
    } catch (e) {
      errors.push(...batch.map((f) => ({ name: f.name, code: e.code, message: e.message })));
    }
    await refresh();
  }
  if (errors.length) {
    const text = errors.map((e) => `${e.name}: ${e.message}`).join('; ');
    showError(Object.assign(new Error(errors.length === 1 ? text : `${errors.length} files were not imported: ${text}`), { code: errors[0].code }));
  }
});

// --- the full page and settings ---

$('open-page').addEventListener('click', async () => {
  await saving;
  await chrome.tabs.create({ url: chrome.runtime.getURL('notes.html?view=page') });
  window.close();
});

function showModelSource(url) {
  $('model-source').textContent = url
    ? `The model comes from ${url}: downloaded once, kept in Cache Storage, SHA-256-checked before every use.`
    : PACKAGED_MODEL
      ? 'The model comes with the extension (99 MB, SHA-256-checked before use).'
      : 'This build of the extension carries no model (it is 99 MB): give the URL of smollm2-135m.lmz.safetensors below (the file that lmz model fetch makes). It is downloaded once, kept in Cache Storage and SHA-256-checked before every use.';
}

/** Checks a model URL before it is stored: http(s) only. */
function checkUrl(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    throw Object.assign(new Error(`"${url}" is not a URL`), { code: Codes.INVALID_URL });
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw Object.assign(new Error(`${url}: the model URL must be http(s)`), { code: Codes.INVALID_URL });
}

$('model-save').addEventListener('click', async () => {
  const url = $('model-url').value.trim();
  try {
    if (url) checkUrl(url);
    await setMeta('modelUrl', url || undefined);
    showModelSource(url);
    await ask({ op: 'reset' });
    showError(null);
    showNotice(null);
    // Load it now, with progress, so that a wrong URL shows at once; then what waited for it.
    await ask({ op: 'load' });
    $('settings').open = false;
    // Notes may wait for it that this page has not seen (written in the popup meanwhile).
    await ask({ op: 'sweep' });
    await refresh();
  } catch (e) {
    showError(e);
  }
});

// --- start ---

showEditor(false);
$('model-url-empty').hidden = !PACKAGED_MODEL;
getMeta('modelUrl').then((u) => {
  $('model-url').value = u ?? '';
  showModelSource(u);
  if (!u && !PACKAGED_MODEL) {
    showNotice('First use: this build has no model packaged. Give its URL under "Model" below; it is downloaded once.');
    $('settings').open = true;
  }
});
ask({ op: 'status' }).then((a) => showStatus(a.status), showError);
refresh()
  .then(() => {
    // Notes left pending (a model that did not load, a browser closed mid-save): try now, so
    // that they are compressed or the reason shows.
    if (notes.some((n) => n.raw === undefined)) scheduleSweep();
  })
  .catch(showError);
