// The service worker: makes sure no note stays uncompressed, closes the offscreen document
// when it is idle, and keeps the texts the offscreen document decodes in the session cache
// (cache.js; the offscreen document cannot reach chrome.storage itself). Pages keep a port open to it; when the last one closes (the popup closed,
// maybe in the middle of an edit whose text is already in the database) and whenever the
// browser starts with pending notes, it asks the offscreen document to compress them. The
// service worker itself never runs the model.

import { allNotes, trace } from './store.js';
import { ask, offscreenContext } from './protocol.js';
import { cacheText } from './cache.js';

async function sweepIfPending() {
  const pending = (await allNotes()).some((n) => n.text !== undefined);
  trace('sweep-check', { pending });
  if (pending) await ask({ op: 'sweep' });
}

function sweepLater() {
  sweepIfPending().catch((e) => console.error('lmz notes: compressing pending notes failed:', e));
}

chrome.runtime.onStartup.addListener(sweepLater);
chrome.runtime.onInstalled.addListener(sweepLater);

chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== 'notes-page') return;
  port.onDisconnect.addListener(sweepLater);
});

// --- closing the idle offscreen document ---
//
// The document decides (offscreen.js: no job running or queued for a while; from then on it
// refuses new ones with LMZ_CLOSING) and says so with its instance id. Only that document is
// closed — never a newer one that a page may have opened since: closeDocument takes no id, and
// a message from an offscreen document carries no documentId, so the worker asks the open
// document who it is first (op 'closing', which a closing document still answers). The
// checks and closes run one at a time.

let closing = Promise.resolve();

async function closeIfStill(instance) {
  if (!(await offscreenContext())) return;
  let who;
  try {
    who = await chrome.runtime.sendMessage({ to: 'offscreen', op: 'closing' });
  } catch {
    return; // gone already
  }
  trace('close-check', { instance, answered: who?.instance, closing: who?.closing });
  if (who?.instance === instance && who.closing) {
    await chrome.offscreen.closeDocument();
    trace('closed', { instance });
  }
}

chrome.runtime.onMessage.addListener((msg) => {
  if (msg?.to !== 'background' || msg.type !== 'idle') return false;
  closing = closing
    .then(() => closeIfStill(msg.instance))
    .catch((e) => console.error('lmz notes: closing the idle offscreen document failed:', e));
  return false;
});

// --- the session cache ---
//
// Every title and text the offscreen document announces, kept for the browser session, so that
// a popup opened again shows them at once. One write at a time: a title announced just before
// the whole text must not land after it.

let caching = Promise.resolve();

chrome.runtime.onMessage.addListener((msg) => {
  if (msg?.to !== 'ui' || msg.type !== 'text') return false;
  caching = caching.then(() => cacheText(msg.id, msg.rev, msg.text, msg.full)).catch((e) => console.error('lmz notes: caching a text failed:', e));
  return false;
});
