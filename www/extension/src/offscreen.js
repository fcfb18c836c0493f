// The offscreen document: the one place that runs the compressor. It outlives the popup, so
// a save that the popup started finishes after the popup closed; the package runs the model
// in a Web Worker, so even this document's thread stays free.
//
// It loads the model on first use (the packaged copy by default, or the URL set under
// "Model"), compresses pending notes into raw streams (`sweep`, many notes per call),
// decodes stored ones for the pages — titles first (each note's first TITLE_BYTES), then whole
// texts, many notes in one lock-step call, each announced as it comes and kept in memory by
// revision (the service worker keeps them for the session) — and imports `.lmz` files (a
// compact file as its raw stream, without running the model, then checked by decoding it).
//
// It holds ~300 MB (the model and the engine), so it closes itself when idle: IDLE_MS after
// the last job ends (meta 'offscreenIdleMs' overrides it, for tests), if no job is running or
// queued, it refuses new requests (LMZ_CLOSING: `ask` retries them with a new document) and
// asks the service worker to close it. Nothing is lost: every note's text is in the database
// before any job about it starts.

import { Codes as LmzCodes, createCompressor, fileToRaw, info as lmzInfo, MODEL_FILE } from './lmz.js';
import { addNotes, allNotes, dropUnchecked, getMeta, getNote, getNotes, markChecked, saveText, setMeta, storeCompressed, trace, utf8 } from './store.js';
import { Codes, errorData, TITLE_BYTES } from './protocol.js';
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
    const t0 = performance.now();
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
    trace('model-ready', { instance, ms: Math.round(performance.now() - t0), adapter: c.adapter });
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

/** Notes compressed in one call (`compressRawMany`); each is stored as soon as it is made. */
const SWEEP_BATCH = 16;

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
        for (let i = 0; i < pending.length; i += SWEEP_BATCH) await compressNotes(pending.slice(i, i + SWEEP_BATCH));
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

/** Compresses pending notes in one call and stores each raw stream if its note did not change
 * meanwhile; the text is announced for the session cache. */
async function compressNotes(ns) {
  const c = await lz();
  const stores = [];
  let failed;
  await c.compressRawMany(
    ns.map((n) => utf8.encode(n.text)),
    {
      ...busy('compress', ns.length === 1 ? ns[0].id : undefined),
      onItem: (i, r) => {
        const n = ns[i];
        if (r.status === 'rejected') {
          failed ??= r.reason;
          return;
        }
        stores.push(
          storeCompressed(n.id, n.rev, r.value).then((stored) => {
            if (!stored) return;
            texts.set(n.id, { rev: n.rev, text: n.text });
            announce(n, n.text, true);
            changed(n.id);
          }),
        );
      },
    },
  );
  await Promise.all(stores);
  if (failed) throw failed;
}

/** Tells the open pages that note `id` (or, without one, several notes) changed in the database. */
function changed(id) {
  chrome.runtime.sendMessage({ to: 'ui', type: 'changed', id }).catch(() => {});
}

/** Announces a decoded title (`full` false) or whole text of note `n` to the pages and to the
 * service worker, which keeps it in the session cache. */
function announce(n, text, full) {
  chrome.runtime.sendMessage({ to: 'ui', type: 'text', id: n.id, rev: n.rev, text, full }).catch(() => {});
}

// --- decoding for the pages ---
//
// Three queues of note ids, worked in this order, a batch per call: `urgent` (whole texts an
// editor waits for), `title` (the first TITLE_BYTES of each note, for the list), `full` (whole
// texts, for search, in the background). A batch is one `decompressRawMany` call: its notes
// are decoded in lock-step, one forward pass per step for all of them. The first batch of
// titles is small, so that a popup's first screen comes first; later ones are larger, which
// is faster per note.

const TITLE_FIRST = 8;
const BATCH = 48;
const queues = { urgent: [], title: [], full: [] };
let draining; // Promise while the queues are worked
/** Why an imported note was dropped (by id), until its import asks. */
const dropped = new Map();
/** Stored notes that did not decode (by id): { code, message }. */
const undecodable = new Map();

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function enqueue(kind, ids, first = false) {
  const q = queues[kind];
  const add = ids.filter((id) => first || !q.includes(id));
  for (const id of first ? add : []) {
    const at = q.indexOf(id);
    if (at >= 0) q.splice(at, 1);
  }
  if (first) q.unshift(...add);
  else q.push(...add);
}

const queued = (ids) => ids.some((id) => queues.urgent.includes(id) || queues.title.includes(id) || queues.full.includes(id));

/** Works the queues until they are empty; one drain at a time. */
function drain() {
  draining ??= job(async () => {
    let firstTitles = true;
    try {
      for (;;) {
        const kind = ['urgent', 'title', 'full'].find((k) => queues[k].length);
        if (!kind) break;
        const n = kind === 'title' && firstTitles ? TITLE_FIRST : BATCH;
        if (kind === 'title') firstTitles = false;
        await decodeBatch(queues[kind].splice(0, n), kind === 'title');
      }
    } catch (e) {
      // The model or the engine failed: what was asked is asked again by the pages.
      for (const q of Object.values(queues)) q.length = 0;
      throw e;
    } finally {
      draining = undefined;
      setStatus({ busy: undefined });
    }
  }, 'decode');
  return draining;
}

/** Decodes notes `ids` in one call: titles (their first TITLE_BYTES, unchecked), or whole
 * texts (checked; an imported note is then checked too, or dropped). */
async function decodeBatch(ids, title) {
  const todo = [];
  for (const n of await getNotes(ids)) {
    const hit = texts.get(n.id);
    if (n.text !== undefined) announce(n, n.text, true);
    else if (hit?.rev === n.rev) announce(n, hit.text, true);
    else todo.push(n);
  }
  if (!todo.length) return;
  const c = await lz();
  const done = [];
  const t0 = performance.now();
  await c.decompressRawMany(
    todo.map((n) => ({ raw: n.raw, length: n.length })),
    { ...busy('decompress'), prefix: title ? TITLE_BYTES : undefined, onItem: (i, r) => done.push(settle(todo[i], r)) },
  );
  await Promise.all(done);
  trace('decoded', { instance, notes: todo.length, title, bytes: todo.reduce((a, n) => a + (title ? Math.min(n.length, TITLE_BYTES) : n.length), 0), ms: Math.round(performance.now() - t0) });
}

/** One note's decoded bytes (or error): announced, kept, and for an import checked or dropped. */
async function settle(n, r) {
  if (r.status === 'fulfilled' && r.value.length < n.length) {
    // A title: the start of the text, maybe cut inside a character (dropped by `stream`).
    announce(n, new TextDecoder().decode(r.value, { stream: true }), false);
    return;
  }
  let error = r.reason;
  if (r.status === 'fulfilled') {
    try {
      const text = strictUtf8.decode(r.value);
      texts.set(n.id, { rev: n.rev, text });
      if (n.unchecked !== undefined) await markChecked(n.id, n.rev);
      undecodable.delete(n.id);
      announce(n, text, true);
      return;
    } catch {
      error = coded(Codes.NOT_TEXT, `it decodes to ${r.value.length} bytes that are not UTF-8 text; notes hold text only`);
    }
  }
  if (n.unchecked !== undefined) {
    // An imported file that does not decode was never a note: it goes, and its import says why.
    if (await dropUnchecked(n.id, n.rev)) {
      dropped.set(n.id, { name: n.unchecked, ...errorData(error) });
      changed(n.id);
    }
    return;
  }
  undecodable.set(n.id, errorData(error));
  chrome.runtime.sendMessage({ to: 'ui', type: 'text-error', id: n.id, rev: n.rev, error: errorData(error) }).catch(() => {});
}

/** Decodes what `titles` and `full` ask for (and whatever else is queued); resolves when the
 * queues are empty, with the errors of the notes asked for. */
async function decode({ titles = [], full = [], first = false }) {
  if (first) enqueue('urgent', full, true);
  else {
    enqueue('title', titles);
    enqueue('full', full);
  }
  const ids = [...titles, ...full];
  // A drain that was finishing when these were queued does not see them: drain again.
  do await drain();
  while (queued(ids));
  return { errors: ids.filter((id) => undecodable.has(id)).map((id) => ({ id, ...undecodable.get(id) })) };
}

// --- import ---

function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** `.lmz` files (from the CLI, the demo page or an export) → new notes. A compact file made
 * with this model is kept as its raw stream, as it is — no model run to store it — and then
 * decoded in lock-step with the others, titles first: that checks it (a damaged file or one
 * that is not text is dropped, and its error returned). Any other file (the full form: a long
 * text, several chunks) is decoded and checked first (all of them in one call) and stored as
 * a pending note, compressed by the next sweep. Resolves with the new notes' ids and each
 * failed file's error. */
async function importFiles(files) {
  const errors = [];
  const fail = (name, e) => errors.push({ name, ...errorData(e) });
  const now = Date.now();
  const records = [];
  const whole = [];
  for (const f of files) {
    const bytes = fromBase64(f.base64);
    try {
      if ((await lmzInfo(bytes)).form !== 'compact') {
        whole.push({ name: f.name, bytes });
        continue;
      }
      const { raw, length } = await fileToRaw(bytes);
      // Newest first in the list is the order the files were given in.
      const t = now - records.length;
      records.push({ id: crypto.randomUUID(), created: t, updated: t, rev: 1, length, raw, unchecked: f.name });
    } catch (e) {
      fail(f.name, e);
    }
  }
  const ids = records.map((r) => r.id);
  if (records.length) {
    await addNotes(records);
    changed();
  }
  if (whole.length) {
    const c = await lz();
    const out = await c.decompressMany(
      whole.map((w) => w.bytes),
      busy('import'),
    );
    for (const [i, r] of out.entries()) {
      const { name } = whole[i];
      if (r.status === 'rejected') {
        fail(name, r.reason);
        continue;
      }
      let text;
      try {
        text = strictUtf8.decode(r.value);
      } catch {
        fail(name, coded(Codes.NOT_TEXT, `it decompresses to ${r.value.length} bytes that are not UTF-8 text; notes hold text only`));
        continue;
      }
      ids.push((await saveText(crypto.randomUUID(), text)).id);
    }
    changed();
    void sweep().catch(() => {}); // errors reach the pages through the status
  }
  if (records.length) {
    await decode({ titles: records.map((r) => r.id), full: records.map((r) => r.id) });
    for (const r of records) {
      const why = dropped.get(r.id);
      if (!why) continue;
      dropped.delete(r.id);
      errors.push(why);
      ids.splice(ids.indexOf(r.id), 1);
    }
  }
  return { ids, errors };
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
  async decode(msg) {
    return decode(msg);
  },
  async compress({ id }) {
    const n = await getNote(id);
    if (n?.text !== undefined) await compressNotes([n]);
    return {};
  },
  async import({ files }) {
    return importFiles(files);
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
