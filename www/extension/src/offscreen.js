// The offscreen document: the one place that runs the compressor. It outlives the popup, so
// a save that the popup started finishes after the popup closed; the package runs the model
// in a Web Worker, so even this document's thread stays free.
//
// It loads the model on first use (the packaged copy by default, or the URL set under
// "Model"), compresses pending notes into raw streams (`sweep`), decompresses stored ones
// for the pages (keeping the texts in memory, keyed by revision), and imports `.lmz` files.
//
// It holds ~300 MB (the model and the engine), so it closes itself when idle: IDLE_MS after
// the last job ends (meta 'offscreenIdleMs' overrides it, for tests), if no job is running or
// queued, it refuses new requests (LMZ_CLOSING: `ask` retries them with a new document) and
// asks the service worker to close it. Nothing is lost: every note's text is in the database
// before any job about it starts.

import { Codes as LmzCodes, createCompressor, MODEL_FILE } from './lmz.js';
import { allNotes, getMeta, getNote, saveText, setMeta, storeCompressed, trace, utf8 } from './store.js';
import { Codes, errorData } from './protocol.js';
import { PACKAGED_MODEL } from './config.js';

/** Default idle time before the document closes. */
const IDLE_MS = 60_000;

const status = { model: 'idle' };
let compressor; // Promise<Compressor>
/** A load that failed in a way retrying cannot fix (a wrong model at that URL): { url, error }.
 * Kept until the URL is set again (`reset`), so that every edit does not download 99 MB again. */
let failed;
const texts = new Map(); // id → { rev, text }: decompressed (or just compressed) texts

function broadcast() {
  chrome.runtime.sendMessage({ to: 'ui', type: 'status', status }).catch(() => {}); // no page open
}

function setStatus(patch) {
  Object.assign(status, patch);
  broadcast();
}

function coded(code, message) {
  return Object.assign(new Error(message), { code });
}

/** Where the model comes from: the URL set under "Model", else the packaged file. */
async function modelSource() {
  const url = await getMeta('modelUrl');
  if (url) return { modelUrl: url, cache: true, custom: true };
  if (!PACKAGED_MODEL) {
    throw coded(Codes.NO_MODEL_URL, 'this build of the extension carries no model: give the URL of smollm2-135m.lmz.safetensors under "Model" (it is downloaded once and kept)');
  }
  // The packaged copy is a file of the extension: already local, so no second copy in
  // Cache Storage; the package still checks its SHA-256 before use.
  return { modelUrl: chrome.runtime.getURL(`model/${MODEL_FILE}`), cache: false, custom: false };
}

/** Errors that the same URL will give again: the bytes there are not this build's model. */
const PERMANENT = new Set([LmzCodes.HASH_MISMATCH, LmzCodes.FORMAT_MODEL_MISMATCH]);

/** The compressor, created on first use; a failed load is retried on the next call, unless
 * it failed for good at this URL (`failed`). */
function lz() {
  compressor ??= (async () => {
    setStatus({ model: 'loading', progress: undefined, error: undefined });
    const { custom, ...src } = await modelSource();
    if (failed?.url === src.modelUrl) throw failed.error;
    let c;
    try {
      c = await createCompressor({ ...src, engine: 'auto', onProgress: (progress) => setStatus({ progress }) });
    } catch (e) {
      // A page cannot see why a fetch failed; the usual reason for a URL of one's own.
      if (custom && e?.code === LmzCodes.FETCH && /failed to fetch/i.test(e.message)) {
        e.message += ' (offline, a wrong address, or a server that does not allow cross-origin requests: Access-Control-Allow-Origin?)';
      }
      if (PERMANENT.has(e?.code)) failed = { url: src.modelUrl, error: e };
      throw e;
    }
    // Raw streams carry no fingerprint: the database remembers which pack made them.
    const fp = await getMeta('fingerprint');
    if (fp === undefined) await setMeta('fingerprint', c.fingerprint);
    else if (fp !== c.fingerprint) {
      c.dispose();
      const e = coded(LmzCodes.FORMAT_MODEL_MISMATCH, `the notes were compressed with model pack ${fp.slice(0, 16)}…, this build of the extension has ${c.fingerprint.slice(0, 16)}…: install the build that made them to read them`);
      failed = { url: src.modelUrl, error: e };
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

// --- closing when idle ---

/** Names this document to the service worker (which cannot tell offscreen documents apart). */
const instance = crypto.randomUUID();
let jobs = 0; // requests being answered, sweeps running
let idleTimer;
let closing = false;

/** Runs `f` as a job: the document does not close while it runs. */
async function job(f, what) {
  jobs++;
  clearTimeout(idleTimer);
  trace('job-start', { instance, what, jobs });
  try {
    return await f();
  } finally {
    trace('job-end', { instance, what, jobs: jobs - 1 });
    if (--jobs === 0) void armIdle();
  }
}

async function armIdle() {
  const ms = (await getMeta('offscreenIdleMs').catch(() => undefined)) ?? IDLE_MS;
  if (jobs > 0 || closing) return; // a job started meanwhile: it arms the timer when it ends
  clearTimeout(idleTimer);
  trace('idle-armed', { instance, ms });
  idleTimer = setTimeout(() => void closeIfIdle(), ms);
}

/** The idle timer ran out: close, unless a note is waiting to be compressed. Such a note was
 * written while no request reached this document (a page that closed or gave up at the wrong
 * moment): it is compressed now, and the timer starts again after. A sweep that failed (a
 * model that does not load) is not retried here: the note waits, safe as text, for the next
 * page or edit, and the document closes. */
async function closeIfIdle() {
  if (jobs > 0 || closing) return;
  closing = true; // from here on requests are refused (LMZ_CLOSING: `ask` sends them again)
  const waiting = !lastSweepFailed && (await allNotes().then((ns) => ns.some((n) => n.text !== undefined), () => false));
  if (waiting) {
    closing = false; // the refused requests, sent again, are answered by this document
    trace('idle-but-pending', { instance });
    void sweep().catch(() => {}); // errors reach the pages through the status
    return;
  }
  trace('closing', { instance });
  setStatus({ model: 'idle', progress: undefined, busy: undefined, engine: undefined, adapter: undefined });
  // The service worker closes this document; the message is repeated in case it is lost.
  const tell = () => chrome.runtime.sendMessage({ to: 'background', type: 'idle', instance }).catch(() => {});
  tell();
  setInterval(tell, 2000);
}

// --- compression of pending notes ---

let sweeping; // Promise while a sweep runs
let again = false;
let lastSweepFailed = false;

/** Compresses every pending note, oldest edit first, until none is left. */
function sweep() {
  if (sweeping) {
    again = true;
    return sweeping;
  }
  sweeping = job(async () => {
    trace('sweep', { instance });
    try {
      do {
        again = false;
        const pending = (await allNotes()).filter((n) => n.text !== undefined).reverse();
        for (const n of pending) await compressNote(n);
      } while (again);
      lastSweepFailed = false;
    } catch (e) {
      lastSweepFailed = true;
      throw e;
    } finally {
      sweeping = undefined;
      setStatus({ busy: undefined });
    }
  }, 'sweep');
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
    e.code = Codes.NOT_TEXT;
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
  async load() {
    await lz();
    return {};
  },
  /** The model's URL changed: the next call loads the model again (after pending work). */
  async reset() {
    const c = compressor;
    compressor = undefined;
    failed = undefined;
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
  if (msg.op === 'closing') {
    // The service worker checks that the document it is about to close is this one.
    respond({ ok: true, instance, closing });
    return false;
  }
  const op = ops[msg.op];
  if (!op) {
    respond({ ok: false, error: { code: Codes.EXTENSION, message: `unknown operation ${msg.op}` } });
    return false;
  }
  if (closing) {
    trace('refused', { instance, op: msg.op });
    respond({ ok: false, error: { code: Codes.CLOSING, message: 'the compressor is closing (idle); ask again' } });
    return false;
  }
  job(() => op(msg), msg.op).then(
    (v) => respond({ ok: true, ...v }),
    (e) => respond({ ok: false, error: errorData(e) }),
  );
  return true; // answers asynchronously
});

// Opened for nothing (a page that only asked for the status and closed): close when idle too.
trace('open', { instance });
void armIdle();
