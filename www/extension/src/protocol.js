// Messages between the extension's contexts (chrome.runtime.sendMessage, JSON only).
//
//   page/worker → offscreen   { to: 'offscreen', op, ... }  answered through sendResponse
//       op 'sweep'                            compress every pending note, in batches (resolves when none is left)
//       op 'decode', titles: ids, full: ids, first?   decode those notes' titles (their first
//                                             TITLE_BYTES, in one lock-step call per batch), then
//                                             their whole texts; each announced as it comes (type
//                                             'text' below); `first`: ahead of queued work (the
//                                             note an editor waits for). Resolves once the queue
//                                             is empty: { errors: [{ id, code, message }] }
//       op 'compress', id                     compress note `id` now (export of a pending note)
//       op 'import', files: [{ name, base64 }]   .lmz files → new notes: a compact file of this
//                                             model is kept as its raw stream (no model run) and
//                                             checked by decoding it; others are decoded and
//                                             stored as pending text. { ids, errors: [{ name, code, message }] }
//       op 'load'                             load the model now (after its URL was set)
//       op 'status'                           the current status (below)
//       op 'reset'                            forget the loaded model and a failed load (its URL changed)
//       op 'closing'                          (service worker) { instance, closing }: which document, closing or not
//   offscreen → pages          { to: 'ui', type: 'status', status }   broadcast
//       status: { model: 'idle'|'loading'|'ready'|'error', progress?: {phase, done, total},
//                 engine?, adapter?, error?: {code, message}, busy?: {op, id, done, total} }
//   offscreen → pages          { to: 'ui', type: 'changed', id }      note `id` changed in the database
//   offscreen → pages, worker  { to: 'ui', type: 'text', id, rev, text, full }   a note's title
//                              (full: false) or whole text (full: true) at revision `rev`, decoded;
//                              the service worker keeps it in chrome.storage.session (cache.js)
//   offscreen → pages          { to: 'ui', type: 'text-error', id, rev, error }   a stored note that does not decode
//   offscreen → worker         { to: 'background', type: 'idle', instance }   idle: close me (repeated until closed)
//   any answer: { ok: true, ...value } or { ok: false, error: { code, message } }
//
// The offscreen document closes when it has been idle for a while (offscreen.js): from the
// moment it decides to, it answers every request with LMZ_CLOSING, and `ask` waits for it to
// be gone and sends the request to a new one. So no request is ever lost to a closing document,
// nor to one that is still loading (`ask`).

import { trace } from './store.js';

export const OFFSCREEN_URL = 'offscreen.html';
/** Bytes of a note decoded for its title (the list shows the first line, at most 80
 * characters): the rest of the text follows in the background. */
export const TITLE_BYTES = 80;

/** The extension's own error codes (the package's and the library's come through as they are). */
export const Codes = {
  /** A bug or an unexpected state of the extension. */
  EXTENSION: 'LMZ_EXTENSION',
  /** An imported file is not UTF-8 text. */
  NOT_TEXT: 'LMZ_NOT_TEXT',
  /** This build has no packaged model and no URL is set for it. */
  NO_MODEL_URL: 'LMZ_NO_MODEL_URL',
  /** The model URL given is not an http(s) URL. */
  INVALID_URL: 'LMZ_INVALID_URL',
  /** The offscreen document is closing (idle): ask again, a new one will answer. */
  CLOSING: 'LMZ_CLOSING',
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** How long `ask` keeps trying to reach a document that is starting or closing. A document
 * starts in well under a second and closes in a few, even on a slow, loaded machine; past
 * this something is wrong, and the error says so. */
const REACH_MS = 60_000;
/** Operations that must not be sent twice: a document that closed before answering may have
 * done them (an import adds a note). Every other operation may be sent again. */
const ONCE = new Set(['import']);

/** Why a message got no answer from a document, when it can be sent again: no document was
 * listening (it was still loading, or none was open), no listener answered (only other
 * contexts heard it while the document loaded — Chromium then closes the port without an
 * answer), or the document closed before it answered or before it had loaded. */
function notAnswered(e, op) {
  const m = String(e?.message ?? e);
  if (/Receiving end does not exist/i.test(m)) return true; // never delivered: safe for every op
  return !ONCE.has(op) && /message port closed|closed before fully loading|before a response was received/i.test(m);
}

/** Sends `msg` to the offscreen document (creating it if needed) and returns its answer;
 * rejects with an Error carrying `code` when it answers with an error.
 *
 * A document that is starting, or closing (it answers LMZ_CLOSING), or that closes while it
 * works, is not an error: the request goes to the document that is open next, until REACH_MS.
 * The document may be opened by another context at the same moment (a page, the service
 * worker): a message sent while it loads reaches no listener of its, and is sent again. */
export async function ask(msg) {
  const t0 = Date.now();
  for (let attempt = 0; ; attempt++) {
    let answer;
    let failure;
    try {
      await ensureOffscreen();
      answer = await chrome.runtime.sendMessage({ to: 'offscreen', ...msg });
    } catch (e) {
      failure = e;
    }
    const again = failure ? notAnswered(failure, msg.op) : answer === undefined || answer?.error?.code === Codes.CLOSING;
    if (again && Date.now() - t0 < REACH_MS) {
      trace('ask-retry', { op: msg.op, attempt, why: failure ? String(failure?.message ?? failure) : (answer?.error?.code ?? 'no answer') });
      await sleep(Math.min(100 * (attempt + 1), 500));
      continue;
    }
    trace('ask-done', { op: msg.op, attempt, ok: Boolean(answer?.ok), code: answer?.error?.code, failure: failure && String(failure?.message ?? failure) });
    if (failure) throw Object.assign(failure, { code: failure.code ?? Codes.EXTENSION });
    if (!answer?.ok) {
      const err = new Error(answer?.error?.message ?? `no answer from the offscreen document in ${REACH_MS / 1000} s`);
      err.code = answer?.error?.code ?? Codes.EXTENSION;
      throw err;
    }
    return answer;
  }
}

let creating;

/** Creates the offscreen document that holds the compressor, unless it exists. */
export async function ensureOffscreen() {
  if (await hasOffscreen()) return;
  trace('create');
  creating ??= chrome.offscreen
    .createDocument({ url: OFFSCREEN_URL, reasons: ['WORKERS'], justification: 'runs the lmz compressor (a language model in a Web Worker) so that notes are compressed off the UI and finish saving after the popup closes' })
    .catch((e) => {
      trace('create-error', { message: String(e?.message ?? e) });
      // Another context created it first.
      if (!/single offscreen document/i.test(String(e?.message))) throw e;
    })
    .finally(() => (creating = undefined));
  await creating;
}

/** The offscreen document's context, if it is open: { contextId, documentId, … } or undefined. */
export async function offscreenContext() {
  const url = chrome.runtime.getURL(OFFSCREEN_URL);
  const have = await chrome.runtime.getContexts({ contextTypes: ['OFFSCREEN_DOCUMENT'], documentUrls: [url] });
  return have[0];
}

async function hasOffscreen() {
  return (await offscreenContext()) !== undefined;
}

/** An error as it crosses a message: { code, message }. */
export function errorData(e) {
  return { code: e?.code ?? e?.name ?? Codes.EXTENSION, message: String(e?.message ?? e) };
}
