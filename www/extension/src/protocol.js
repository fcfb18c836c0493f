// Messages between the extension's contexts (chrome.runtime.sendMessage, JSON only).
//
//   page/worker → offscreen   { to: 'offscreen', op, ... }  answered through sendResponse
//       op 'sweep'                            compress every pending note (resolves when none is left)
//       op 'texts', ids: string[]             the texts of those notes: { texts: { id: text } }
//       op 'compress', id                     compress note `id` now (export of a pending note)
//       op 'import', name, base64             a .lmz file → a new note: { id }
//       op 'status'                           the current status (below)
//       op 'reset'                            forget the loaded model (its URL changed)
//   offscreen → pages          { to: 'ui', type: 'status', status }   broadcast
//       status: { model: 'idle'|'loading'|'ready'|'error', progress?: {phase, done, total},
//                 engine?, adapter?, error?: {code, message}, busy?: {op, id, done, total} }
//   offscreen → worker         { to: 'background', type: 'idle' }  may be closed
//   any answer: { ok: true, ...value } or { ok: false, error: { code, message } }

export const OFFSCREEN_URL = 'offscreen.html';

/** Sends `msg` to the offscreen document (creating it if needed) and returns its answer;
 * rejects with an Error carrying `code` when it answers with an error. */
export async function ask(msg) {
  await ensureOffscreen();
  let answer;
  for (let attempt = 0; ; attempt++) {
    try {
      answer = await chrome.runtime.sendMessage({ to: 'offscreen', ...msg });
    } catch (e) {
      // The document may still be starting (its listener not yet added): retry briefly.
      if (attempt < 20 && /Receiving end does not exist/.test(String(e?.message))) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      throw e;
    }
    if (answer === undefined && attempt < 20) {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    break;
  }
  if (!answer?.ok) {
    const err = new Error(answer?.error?.message ?? 'no answer from the offscreen document');
    err.code = answer?.error?.code ?? 'LMZ_EXTENSION';
    throw err;
  }
  return answer;
}

let creating;

/** Creates the offscreen document that holds the compressor, unless it exists. */
export async function ensureOffscreen() {
  const url = chrome.runtime.getURL(OFFSCREEN_URL);
  const have = await chrome.runtime.getContexts({ contextTypes: ['OFFSCREEN_DOCUMENT'], documentUrls: [url] });
  if (have.length) return;
  creating ??= chrome.offscreen
    .createDocument({ url: OFFSCREEN_URL, reasons: ['WORKERS'], justification: 'runs the lmz compressor (a language model in a Web Worker) so that notes are compressed off the UI and finish saving after the popup closes' })
    .catch((e) => {
      // Another context created it first.
      if (!/single offscreen document/i.test(String(e?.message))) throw e;
    })
    .finally(() => (creating = undefined));
  await creating;
}

/** An error as it crosses a message: { code, message }. */
export function errorData(e) {
  return { code: e?.code ?? e?.name ?? 'LMZ_EXTENSION', message: String(e?.message ?? e) };
}
