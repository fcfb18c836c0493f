// Messages between the extension's contexts (chrome.runtime.sendMessage, JSON only).
//
//   page/worker → offscreen   { to: 'offscreen', op, ... }  answered through sendResponse
//       op 'sweep'                            compress every pending note (resolves when none is left)
//       op 'texts', ids: string[]             the texts of those notes: { texts: { id: text } }
//       op 'compress', id                     compress note `id` now (export of a pending note)
//       op 'import', name, base64             a .lmz file → a new note: { id }
//       op 'load'                             load the model now (after its URL was set)
//       op 'status'                           the current status (below)
//       op 'reset'                            forget the loaded model and a failed load (its URL changed)
//       op 'closing'                          (service worker) { instance, closing }: which document, closing or not
//   offscreen → pages          { to: 'ui', type: 'status', status }   broadcast
//       status: { model: 'idle'|'loading'|'ready'|'error', progress?: {phase, done, total},
//                 engine?, adapter?, error?: {code, message}, busy?: {op, id, done, total} }
//   offscreen → pages          { to: 'ui', type: 'changed', id }      note `id` changed in the database
//   offscreen → worker         { to: 'background', type: 'idle', instance }   idle: close me (repeated until closed)
//   any answer: { ok: true, ...value } or { ok: false, error: { code, message } }
//
// The offscreen document closes when it has been idle for a while (offscreen.js): from the
// moment it decides to, it answers every request with LMZ_CLOSING, and `ask` waits for it to
// be gone and sends the request to a new one. So no request is ever lost to a closing document.

export const OFFSCREEN_URL = 'offscreen.html';

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
/** How long `ask` waits for a starting document to listen, or a closing one to go (×100 ms). */
const ATTEMPTS = 100;

/** Sends `msg` to the offscreen document (creating it if needed) and returns its answer;
 * rejects with an Error carrying `code` when it answers with an error. */
export async function ask(msg) {
  let answer;
  for (let attempt = 0; ; attempt++) {
    await ensureOffscreen();
    try {
      answer = await chrome.runtime.sendMessage({ to: 'offscreen', ...msg });
    } catch (e) {
      // The document may still be starting (its listener not yet added), or just closed.
      if (attempt < ATTEMPTS && /Receiving end does not exist/.test(String(e?.message))) {
        await sleep(100);
        continue;
      }
      throw e;
    }
    // No answer: starting (only pages' listeners heard it). LMZ_CLOSING: the service worker
    // is closing it; the next attempt goes to the new document.
    if (attempt < ATTEMPTS && (answer === undefined || answer?.error?.code === Codes.CLOSING)) {
      await sleep(100);
      continue;
    }
    break;
  }
  if (!answer?.ok) {
    const err = new Error(answer?.error?.message ?? 'no answer from the offscreen document');
    err.code = answer?.error?.code ?? Codes.EXTENSION;
    throw err;
  }
  return answer;
}

let creating;

/** Creates the offscreen document that holds the compressor, unless it exists. */
export async function ensureOffscreen() {
  if (await hasOffscreen()) return;
  creating ??= chrome.offscreen
    .createDocument({ url: OFFSCREEN_URL, reasons: ['WORKERS'], justification: 'runs the lmz compressor (a language model in a Web Worker) so that notes are compressed off the UI and finish saving after the popup closes' })
    .catch((e) => {
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
