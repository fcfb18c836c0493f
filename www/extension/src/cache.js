// Decoded texts kept for the browser session: chrome.storage.session (memory only, cleared
// when the browser closes; the extension's pages and service worker may use it, the offscreen
// document may not). A popup opened again — with the offscreen document closed or not — lists
// every title and searches every note from here, without loading the model.
//
// One key per note, `t:<id>` → { rev, text, full }: `full` false for a title (the first
// TITLE_BYTES bytes of the note, decoded with `prefix`), true for the whole text. An entry of
// another revision is stale and ignored. The service worker writes what the offscreen document
// announces (protocol.js, type 'text'); pages read, and forget a deleted note.

const key = (id) => `t:${id}`;

/** The cached texts of notes `ids`: Map id → { rev, text, full }. Empty where the storage
 * cannot be read (a context without it): the texts are then decoded again. */
export async function cachedTexts(ids) {
  const out = new Map();
  if (!ids.length || !chrome.storage?.session) return out;
  try {
    const got = await chrome.storage.session.get(ids.map(key));
    for (const id of ids) {
      const v = got[key(id)];
      if (v && typeof v.text === 'string') out.set(id, v);
    }
  } catch (e) {
    console.warn('lmz notes: the session cache cannot be read:', e);
  }
  return out;
}

/** Keeps `text` of note `id` at `rev`; a title never replaces the whole text of that revision. */
export async function cacheText(id, rev, text, full) {
  if (!full) {
    const old = (await chrome.storage.session.get(key(id)))[key(id)];
    if (old?.rev === rev && old.full) return;
  }
  // Past the storage's quota (10 MB) the texts are simply decoded again next time.
  await chrome.storage.session.set({ [key(id)]: { rev, text, full } }).catch((e) => console.warn('lmz notes: session cache full:', e));
}

export function uncache(id) {
  return chrome.storage.session.remove(key(id)).catch(() => {});
}
