// The notes database (IndexedDB, the extension's origin: shared by the notes page, the
// offscreen document and the service worker).
//
// A note is one record in the store `notes`:
//   { id, created, updated, rev, length, text }   pending: the raw text, written first
//   { id, created, updated, rev, length, raw }    stored: the lmz raw stream (Uint8Array)
//   { …, raw, unchecked: name }                   imported from the compact .lmz file `name`
//                                                 as its raw stream (no model run), not yet
//                                                 decoded and checked: deleted if it fails
// `length` is the UTF-8 byte length of the text; `rev` grows with every edit. The page writes
// the text on every edit (a pending record), and the offscreen document replaces it with the
// raw stream once compressed — only if `rev` has not moved meanwhile (`storeCompressed`), so
// a newer edit is never overwritten by an older compression, and a note is never only in
// memory. The store `meta` holds the model fingerprint the raw streams were made with.

export const DB_NAME = 'lmz-notes';
const VERSION = 1;

let opening;

/** The database, opened once per context. */
export function db() {
  opening ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, VERSION);
    req.onupgradeneeded = () => {
      const d = req.result;
      if (!d.objectStoreNames.contains('notes')) d.createObjectStore('notes', { keyPath: 'id' });
      if (!d.objectStoreNames.contains('meta')) d.createObjectStore('meta');
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => {
      opening = undefined;
      reject(new Error(`cannot open the notes database: ${req.error?.message ?? 'unknown error'}`));
    };
  });
  return opening;
}

/** Runs `f(store)` in one transaction on `name`; resolves with f's value once committed. */
async function tx(name, mode, f) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(name, mode, { durability: 'strict' });
    let value;
    t.oncomplete = () => resolve(value);
    t.onerror = () => reject(new Error(`notes database: ${t.error?.message ?? 'transaction failed'}`));
    t.onabort = () => reject(new Error(`notes database: ${t.error?.message ?? 'transaction aborted'}`));
    Promise.resolve(f(t.objectStore(name))).then(
      (v) => (value = v),
      (e) => {
        t.abort();
        reject(e);
      },
    );
  });
}

const request = (r) =>
  new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });

export const utf8 = new TextEncoder();

/** Every note, newest edit first. */
export async function allNotes() {
  const notes = await tx('notes', 'readonly', (s) => request(s.getAll()));
  return notes.sort((a, b) => b.updated - a.updated);
}

export function getNote(id) {
  return tx('notes', 'readonly', (s) => request(s.get(id)));
}

/** The records of notes `ids` that exist, in the order of `ids` (one transaction). */
export function getNotes(ids) {
  return tx('notes', 'readonly', async (s) => (await Promise.all(ids.map((id) => request(s.get(id))))).filter(Boolean));
}

/** Writes `text` as the pending form of note `id` (a new note when there is none) and
 * resolves with the record once the write is durable. */
export function saveText(id, text) {
  return tx('notes', 'readwrite', async (s) => {
    const old = await request(s.get(id));
    const now = Date.now();
    const rec = { id, created: old?.created ?? now, updated: now, rev: (old?.rev ?? 0) + 1, length: utf8.encode(text).length, text };
    await request(s.put(rec));
    return rec;
  });
}

/** Replaces the pending text of note `id` at revision `rev` with its raw stream; does
 * nothing (resolves false) if the note was edited or deleted meanwhile. */
export function storeCompressed(id, rev, raw) {
  return tx('notes', 'readwrite', async (s) => {
    const old = await request(s.get(id));
    if (!old || old.rev !== rev || old.text === undefined) return false;
    const { text: _, ...rest } = old;
    await request(s.put({ ...rest, raw }));
    return true;
  });
}

/** Adds imported notes (records with `raw` and `unchecked`) in one transaction. */
export function addNotes(records) {
  return tx('notes', 'readwrite', async (s) => {
    for (const r of records) await request(s.put(r));
  });
}

/** An imported note decoded and checked: no longer `unchecked` (if still at revision `rev`). */
export function markChecked(id, rev) {
  return tx('notes', 'readwrite', async (s) => {
    const old = await request(s.get(id));
    if (!old || old.rev !== rev || old.unchecked === undefined) return false;
    const { unchecked: _, ...rest } = old;
    await request(s.put(rest));
    return true;
  });
}

/** Deletes an imported note that failed its check (only while it is still unchecked at `rev`). */
export function dropUnchecked(id, rev) {
  return tx('notes', 'readwrite', async (s) => {
    const old = await request(s.get(id));
    if (!old || old.rev !== rev || old.unchecked === undefined) return false;
    await request(s.delete(id));
    return true;
  });
}

export function deleteNote(id) {
  return tx('notes', 'readwrite', (s) => request(s.delete(id)));
}

export function getMeta(key) {
  return tx('meta', 'readonly', (s) => request(s.get(key)));
}

export function setMeta(key, value) {
  return tx('meta', 'readwrite', (s) => request(s.put(value, key)));
}

// --- trace ---
//
// The lifecycle of the extension's contexts (the offscreen document opening, its jobs, its idle
// close; the service worker's closes and sweeps; every retry of `ask`), kept in the database
// when meta 'traceOn' is set, the last TRACE_MAX events under meta 'trace': what a bug report
// or a failed test reads when a note is not compressed. Off by default; a look-up of the flag
// every couple of seconds is all it costs then.

const TRACE_MAX = 500;
/** This context in the trace: its file and a few random letters (pages open more than once). */
const WHO = `${(globalThis.location?.pathname ?? '?').split('/').pop()}#${Math.random().toString(36).slice(2, 6)}`;
let traceFlag = { at: -Infinity, on: Promise.resolve(false) };

function tracing() {
  const now = Date.now();
  if (now - traceFlag.at > 2000) traceFlag = { at: now, on: getMeta('traceOn').then(Boolean, () => false) };
  return traceFlag.on;
}

/** Records `event` of this context with `detail` (an object of JSON values) when tracing is on. */
export function trace(event, detail = {}) {
  const t = Date.now();
  void tracing()
    .then(
      (on) =>
        on &&
        tx('meta', 'readwrite', async (s) => {
          const log = (await request(s.get('trace'))) ?? [];
          log.push({ t, who: WHO, event, ...detail });
          await request(s.put(log.slice(-TRACE_MAX), 'trace'));
        }),
    )
    .catch(() => {}); // a trace never fails what it traces
}

/** Bytes of an unsigned LEB128 varint of `n`. */
export function varintBytes(n) {
  let b = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    b++;
  }
  return b;
}

/** What a note costs in storage, counted the way the benchmark counts it: the raw stream
 * plus its original length as a varint (the stream needs it to decode); a pending note
 * costs its UTF-8 text. */
export function storedBytes(note) {
  return note.raw ? note.raw.length + varintBytes(note.length) : note.length;
}
