// The service worker: makes sure no note stays uncompressed. Pages keep a port open to it;
// when the last one closes (the popup closed, maybe in the middle of an edit whose text is
// already in the database) and whenever the browser starts with pending notes, it asks the
// offscreen document to compress them. The service worker itself never runs the model.

import { allNotes } from './store.js';
import { ask } from './protocol.js';

async function sweepIfPending() {
  const pending = (await allNotes()).some((n) => n.text !== undefined);
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
