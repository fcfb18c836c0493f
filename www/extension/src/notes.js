// The notes page (the popup, and the full-page view at notes.html?view=page). It never runs
// the model: it writes every edit to the database at once (the pending text), asks the
// offscreen document to compress, and asks it for the texts of stored notes. So this page
// never freezes and a note is never lost when it closes.

import { rawToFile } from './lmz.js';
import { allNotes, deleteNote, getMeta, getNote, saveText, setMeta, storedBytes } from './store.js';
import { ask } from './protocol.js';

const $ = (id) => document.getElementById(id);
const isPage = new URLSearchParams(location.search).get('view') === 'page';
if (isPage) document.body.classList.add('page');

const fmt = (n) => n.toLocaleString('en-US');
const PHASES = { download: 'downloading the model', verify: 'checking the model (SHA-256)', load: 'loading the model', compress: 'compressing', decompress: 'decompressing' };

let notes = []; // records, newest first
const texts = new Map(); // id → { rev, text } known to this page
let current; // id of the note in the editor
let saving = Promise.resolve(); // the chain of writes of the current page (kept in order)
let sweepTimer;

// The service worker watches this port: when the page closes it has pending notes compressed.
chrome.runtime.connect({ name: 'notes-page' });

function showError(e) {
  $('error').hidden = !e;
  $('error').textContent = e ? `${e.code ? e.code + ': ' : ''}${e.message ?? e}` : '';
  document.body.dataset.error = e?.code ?? (e ? 'error' : '');
}

// --- status from the offscreen document ---

function showStatus(s) {
  document.body.dataset.model = s.model;
  const p = s.busy ?? s.progress;
  let line = '';
  if (s.model === 'loading') line = p ? `${PHASES[p.phase] ?? p.phase}${p.total && p.phase !== 'load' ? ` ${fmt(p.done)} / ${fmt(p.total)} bytes` : ''}` : 'loading the model';
  else if (s.busy) line = `${PHASES[s.busy.phase] ?? s.busy.phase ?? s.busy.op}…`;
  $('status').hidden = !line;
  $('status-text').textContent = line;
  $('status-bar').value = p?.total ? p.done / p.total : 0;
  if (s.model === 'error') showError(s.error);
  if (s.engine) $('engine').textContent = `Engine: ${s.engine === 'webgpu' ? 'WebGPU' : 'wasm-CPU'} (${s.adapter})`;
}

chrome.runtime.onMessage.addListener((msg) => {
  if (msg?.to !== 'ui') return false;
  if (msg.type === 'status') showStatus(msg.status);
  if (msg.type === 'changed') void refresh();
  return false;
});

// --- the list ---

function titleOf(n) {
  const t = texts.get(n.id);
  if (!t) return null;
  return t.text.trim().split('\n')[0].slice(0, 80) || '(empty note)';
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
  t.textContent = notes.length
    ? `${notes.length} note${notes.length === 1 ? '' : 's'} · ${fmt(length)} B of text in ${fmt(stored)} B` +
      (stored ? ` (${(length / stored).toFixed(1)}× smaller)` : '') +
      (pending ? ` · ${pending} saving` : '')
    : '';
}

function matches(n, q) {
  if (!q) return true;
  const t = texts.get(n.id);
  return t ? t.text.toLowerCase().includes(q) : true; // not yet decompressed: kept until known
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
    li.dataset.length = n.length;
    li.dataset.stored = storedBytes(n);
    if (n.id === current) li.classList.add('current');
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = titleOf(n) ?? '(decompressing…)';
    const size = document.createElement('span');
    size.className = 'size';
    size.textContent = n.raw ? `${fmt(n.length)} B → ${fmt(storedBytes(n))} B stored (${(n.length / storedBytes(n)).toFixed(1)}×)` : `${fmt(n.length)} B`;
    li.append(title, size);
    li.addEventListener('click', () => open(n.id));
    ul.append(li);
  }
  $('empty').hidden = notes.length > 0;
  renderTotals();
  renderNoteSize();
}

function renderNoteSize() {
  const n = notes.find((x) => x.id === current);
  const el = $('note-size');
  el.textContent = !n ? '' : n.raw ? `${fmt(n.length)} B of text, ${fmt(storedBytes(n))} B stored` : `${fmt(n.length)} B of text, saving…`;
}

/** Reloads the records, then fetches the texts of stored notes this page does not know. */
async function refresh() {
  notes = await allNotes();
  for (const n of notes) if (n.text !== undefined) texts.set(n.id, { rev: n.rev, text: n.text });
  renderList();
  document.body.dataset.loaded = notes.every((n) => texts.get(n.id)?.rev === n.rev) ? 'all' : 'some';
  for (const n of notes) {
    if (texts.get(n.id)?.rev === n.rev) continue;
    try {
      const { texts: got } = await ask({ op: 'texts', ids: [n.id] });
      if (got[n.id] !== undefined) {
        texts.set(n.id, { rev: n.rev, text: got[n.id] });
        if (n.id === current && $('text').disabled) {
          $('text').value = got[n.id];
          $('text').disabled = false;
        }
      }
    } catch (e) {
      showError(e);
      return;
    }
    renderList();
  }
  document.body.dataset.loaded = 'all';
}

// --- the editor ---

function showEditor(on) {
  if (isPage) {
    $('editor-pane').hidden = !on;
    return;
  }
  $('editor-pane').hidden = !on;
  $('list-pane').hidden = on;
}

function open(id) {
  current = id;
  $('text').value = texts.get(id)?.text ?? '';
  $('text').disabled = !texts.has(id) && notes.some((n) => n.id === id); // still decompressing
  $('delete').textContent = 'Delete';
  showEditor(true);
  renderList();
  $('text').focus();
}

function scheduleSweep() {
  clearTimeout(sweepTimer);
  sweepTimer = setTimeout(() => {
    ask({ op: 'sweep' }).catch(showError);
  }, 800);
}

$('text').addEventListener('input', () => {
  const id = current;
  const text = $('text').value;
  // Every edit goes to the database at once, in order; compression comes later.
  saving = saving
    .then(() => saveText(id, text))
    .then((rec) => {
      texts.set(id, { rev: rec.rev, text });
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
  if (!n?.raw) throw Object.assign(new Error('the note changed while it was being exported; try again'), { code: 'LMZ_EXTENSION' });
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

$('import').addEventListener('change', async (ev) => {
  const files = [...ev.target.files];
  ev.target.value = '';
  showError(null);
  for (const f of files) {
    try {
      await ask({ op: 'import', name: f.name, base64: toBase64(new Uint8Array(await f.arrayBuffer())) });
      await refresh();
    } catch (e) {
      showError(Object.assign(new Error(`${f.name}: ${e.message}`), { code: e.code }));
    }
  }
});

// --- the full page and settings ---

$('open-page').addEventListener('click', async () => {
  await saving;
  await chrome.tabs.create({ url: chrome.runtime.getURL('notes.html?view=page') });
  window.close();
});

$('model-save').addEventListener('click', async () => {
  const url = $('model-url').value.trim();
  try {
    if (url) new URL(url); // throws a clear TypeError on a malformed URL, before it is stored
    await setMeta('modelUrl', url || undefined);
    await ask({ op: 'reset' });
    showError(null);
  } catch (e) {
    showError(e);
  }
});

// --- start ---

showEditor(false);
getMeta('modelUrl').then((u) => ($('model-url').value = u ?? ''));
ask({ op: 'status' }).then((a) => showStatus(a.status), showError);
refresh().catch(showError);
