// The offscreen document: the one place that runs the compressor. It outlives the popup, so
// a save that the popup started finishes after the popup closed; the package runs the model
// in a Web Worker, so even this document's thread stays free.
//
// It loads the model on first use (the packaged copy by default, or the URL set on the
// notes page), compresses pending notes into raw streams (`sweep`), decompresses stored ones
// for the pages (keeping the texts in memory, keyed by revision), and imports `.lmz` files.

import { createCompressor, MODEL_FILE } from './lmz.js';
import { allNotes, getMeta, getNote, saveText, setMeta, storeCompressed, utf8 } from './store.js';
import { errorData } from './protocol.js';

const status = { model: 'idle' };
let compressor; // Promise<Compressor>
const texts = new Map(); // id → { rev, text }: decompressed (or just compressed) texts

function broadcast() {
  chrome.runtime.sendMessage({ to: 'ui', type: 'status', status }).catch(() => {}); // no page open
}

function setStatus(patch) {
  Object.assign(status, patch);
  broadcast();
}

/** Where the model comes from: the URL set on the notes page, else the packaged file. */
async function modelSource() {
  const url = await getMeta('modelUrl');
  if (url) return { modelUrl: url, cache: true };
  // The packaged copy is a file of the extension: already local, so no second copy in
  // Cache Storage; the package still checks its SHA-256 before use.
  return { modelUrl: chrome.runtime.getURL(`model/${MODEL_FILE}`), cache: false };
}

/** The compressor, created on first use; a failed load is retried on the next call. */
function lz() {
  compressor ??= (async () => {
    setStatus({ model: 'loading', progress: undefined, error: undefined });
    const src = await modelSource();
    const c = await createCompressor({ ...src, engine: 'auto', onProgress: (progress) => setStatus({ progress }) });
    // Raw streams carry no fingerprint: the database remembers which pack made them.
    const fp = await getMeta('fingerprint');
    if (fp === undefined) await setMeta('fingerprint', c.fingerprint);
    else if (fp !== c.fingerprint) {
      c.dispose();
      const e = new Error(`the notes were compressed with model pack ${fp.slice(0, 16)}…, this build of the extension has ${c.fingerprint.slice(0, 16)}…: install the build that made them to read them`);
      e.code = 'LMZ_FORMAT_MODEL_MISMATCH';
      throw e;
    }
    setStatus({ model: 'ready', progress: undefined, engine: c.engine, adapter: c.adapter });
    return c;
  })().catch((e) => {
    compressor = undefined;
    setStatus({ model: 'error', progress: undefined, error: errorData(e) });
    throw e;
  });
  return compressor;
}

function busy(op, id) {
  return {
    onProgress: (p) => setStatus({ busy: { op, id, phase: p.phase, done: p.done, total: p.total } }),
  };
}

// --- compression of pending notes ---

let sweeping; // Promise while a sweep runs
let again = false;

/** Compresses every pending note, oldest edit first, until none is left. */
function sweep() {
  if (sweeping) {
    again = true;
    return sweeping;
  }
  sweeping = (async () => {
    try {
      do {
        again = false;
        const pending = (await allNotes()).filter((n) => n.text !== undefined).reverse();
        for (const n of pending) await compressNote(n);
      } while (again);
    } finally {
      sweeping = undefined;
      setStatus({ busy: undefined });
    }
  })();
  return sweeping;
}

/** Compresses one pending note and stores the raw stream if the note did not change. */
async function compressNote(n) {
  const c = await lz();
  const raw = await c.compressRaw(utf8.encode(n.text), busy('compress', n.id));
  if (await storeCompressed(n.id, n.rev, raw)) {
    texts.set(n.id, { rev: n.rev, text: n.text });
    changed(n.id);
  }
}

/** Tells the open pages that note `id` changed in the database. */
function changed(id) {
  chrome.runtime.sendMessage({ to: 'ui', type: 'changed', id }).catch(() => {});
}

// --- decompression for the pages ---

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The text of note `n` (a record): its pending text, the cached text, or decompressed. */
async function textOf(n) {
  if (n.text !== undefined) return n.text;
  const hit = texts.get(n.id);
  if (hit?.rev === n.rev) return hit.text;
  const c = await lz();
  const bytes = await c.decompressRaw(n.raw, n.length, busy('decompress', n.id));
  const text = strictUtf8.decode(bytes);
  texts.set(n.id, { rev: n.rev, text });
  return text;
}

// --- import ---

function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** A `.lmz` file (from the CLI, the demo page or an export) → a new pending note. The file is
 * decoded and checked first: a damaged file or one that is not text adds nothing. */
async function importFile(name, base64) {
  const c = await lz();
  const bytes = await c.decompress(fromBase64(base64), busy('import', name));
  let text;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    const e = new Error(`${name} decompresses to ${bytes.length} bytes that are not UTF-8 text; notes hold text only`);
    e.code = 'LMZ_NOT_TEXT';
    throw e;
  }
  const rec = await saveText(crypto.randomUUID(), text);
  changed(rec.id);
  void sweep().catch(() => {}); // errors reach the pages through the status
  return { id: rec.id };
}

// --- messages ---

const ops = {
  async status() {
    return { status };
  },
  async sweep() {
    await sweep();
    return {};
  },
  async texts({ ids }) {
    const out = {};
    for (const id of ids) {
      const n = await getNote(id);
      if (n) out[id] = await textOf(n);
    }
    return { texts: out };
  },
  async compress({ id }) {
    const n = await getNote(id);
    if (n?.text !== undefined) await compressNote(n);
    return {};
  },
  async import({ name, base64 }) {
    return importFile(name, base64);
  },
  /** The model's URL changed: the next call loads the model again (after pending work). */
  async reset() {
    const c = compressor;
    compressor = undefined;
    setStatus({ model: 'idle', engine: undefined, adapter: undefined, error: undefined });
    if (c) {
      await sweeping?.catch(() => {});
      (await c.catch(() => undefined))?.dispose();
    }
    return {};
  },
};

chrome.runtime.onMessage.addListener((msg, _sender, respond) => {
  if (msg?.to !== 'offscreen') return false;
  const op = ops[msg.op];
  if (!op) {
    respond({ ok: false, error: { code: 'LMZ_EXTENSION', message: `unknown operation ${msg.op}` } });
    return false;
  }
  op(msg).then(
    (v) => respond({ ok: true, ...v }),
    (e) => respond({ ok: false, error: errorData(e) }),
  );
  return true; // answers asynchronously
});
