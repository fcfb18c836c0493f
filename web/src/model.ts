// The model pack on demand: Cache Storage first, else a download with progress; either way
// the bytes are SHA-256-checked (SubtleCrypto) against the fingerprint the wasm build was
// made for before anything uses them. A cached copy that fails the check (corrupted,
// truncated, or an older pack at the same URL) is deleted and downloaded again.

import { LmzError, PackageCodes } from './errors.js';
import type { LoadStep, Progress } from './types.js';

/** The Cache Storage bucket; the key is the model's absolute URL. */
export const CACHE_NAME = 'lmz-model-v1';

export interface LoadOptions {
  cache: boolean;
  onProgress: (p: Progress) => void;
  /** A step of the load has ended, having taken `ms` milliseconds. */
  onStep: (step: LoadStep, ms: number) => void;
}

async function sha256hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function openCache(): Promise<Cache | undefined> {
  // Cache Storage needs a secure context (https or localhost) and may be disabled.
  if (typeof caches === 'undefined') return undefined;
  try {
    return await caches.open(CACHE_NAME);
  } catch {
    return undefined;
  }
}

async function download(url: string, onProgress: (p: Progress) => void, note?: Progress['note']): Promise<Uint8Array> {
  let res: Response;
  try {
    // Cache Storage keeps the copy; no second one in the HTTP cache.
    res = await fetch(url, { cache: 'no-store' });
  } catch (e) {
    throw new LmzError(PackageCodes.FETCH, `cannot fetch the model from ${url}: ${(e as Error).message}`);
  }
  if (!res.ok || !res.body) {
    throw new LmzError(PackageCodes.FETCH, `cannot fetch the model from ${url}: HTTP ${res.status} ${res.statusText}`);
  }
  const total = Number(res.headers.get('content-length') ?? 0) || 0;
  const reader = res.body.getReader();
  let buf = new Uint8Array(total || 1 << 20);
  let done = 0;
  onProgress({ phase: 'download', done, total, note });
  for (;;) {
    const { done: end, value } = await reader.read();
    if (end) break;
    if (done + value.length > buf.length) {
      const bigger = new Uint8Array(Math.max(buf.length * 2, done + value.length));
      bigger.set(buf.subarray(0, done));
      buf = bigger;
    }
    buf.set(value, done);
    done += value.length;
    onProgress({ phase: 'download', done, total, note });
  }
  if (total && done !== total) {
    throw new LmzError(PackageCodes.FETCH, `the model download from ${url} ended after ${done} of ${total} bytes`);
  }
  return done === buf.length ? buf : buf.slice(0, done);
}

/** Puts the model into Cache Storage. The browser decides whether it fits: its
 * QuotaExceededError becomes LMZ_STORAGE_QUOTA. (`navigator.storage.estimate()` is only an
 * estimate; under a quota set through DevTools it still reports the disk-based quota.) */
async function store(cache: Cache, url: string, bytes: Uint8Array): Promise<void> {
  const need = bytes.length;
  try {
    await cache.put(url, new Response(bytes as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(need) } }));
  } catch (e) {
    if ((e as Error)?.name === 'QuotaExceededError') {
      throw new LmzError(
        PackageCodes.STORAGE_QUOTA,
        `Cache Storage has no room for the ${need}-byte model (the browser refused it: ${(e as Error).message || 'quota exceeded'}); free some space for this site, or pass cache: false to download the model on every load`,
      );
    }
    throw e;
  }
}

/** Whether `bytes` hash to `fingerprint` (lower-case hex), timed; `''` if they do, else their
 * hash. In Chromium SubtleCrypto hashes on the calling thread (99 MB: ~0.15–0.3 s), so the
 * fingerprint is awaited first: the wasm module it comes from loads meanwhile, undisturbed. */
async function check(bytes: Uint8Array, fingerprint: Promise<string>, onStep: LoadOptions['onStep']): Promise<string> {
  const want = await fingerprint;
  const t = performance.now();
  const got = await sha256hex(bytes);
  onStep('hash', performance.now() - t);
  return got === want ? '' : got;
}

/** The model pack at `url`, verified to hash to `fingerprint` (lower-case hex, awaited only
 * when the bytes are there). A download is put into Cache Storage once verified: `stored`
 * settles when it is there (rejecting with `LMZ_STORAGE_QUOTA` if it does not fit), so the
 * caller can load the pack meanwhile. */
export async function loadModel(url: string, fingerprint: Promise<string>, opts: LoadOptions): Promise<{ bytes: Uint8Array; stored: Promise<void> }> {
  const cache = opts.cache ? await openCache() : undefined;
  let note: Progress['note'];
  if (cache) {
    const t = performance.now();
    const hit = await cache.match(url);
    if (hit) {
      let bytes: Uint8Array | undefined;
      try {
        // Through a Blob: Chromium reads a cached body that way in ~60 % of the time
        // `hit.arrayBuffer()` takes (99 MB: 77–108 against 132–164 ms, three reads each).
        bytes = new Uint8Array(await (await hit.blob()).arrayBuffer());
      } catch {
        bytes = undefined; // an unreadable entry is as good as a corrupt one
      }
      opts.onStep('read', performance.now() - t);
      if (bytes) {
        opts.onProgress({ phase: 'verify', done: 0, total: bytes.length, note: 'cached' });
        if ((await check(bytes, fingerprint, opts.onStep)) === '') {
          opts.onProgress({ phase: 'verify', done: bytes.length, total: bytes.length, note: 'cached' });
          return { bytes, stored: Promise.resolve() };
        }
      }
      // Corrupted or truncated (or another pack at this URL): never use it; fetch again.
      await cache.delete(url);
      note = 'cache-corrupt';
    }
  }
  let t = performance.now();
  const bytes = await download(url, opts.onProgress, note);
  opts.onStep('download', performance.now() - t);
  opts.onProgress({ phase: 'verify', done: 0, total: bytes.length });
  const got = await check(bytes, fingerprint, opts.onStep);
  if (got !== '') {
    throw new LmzError(
      PackageCodes.HASH_MISMATCH,
      `the model at ${url} has SHA-256 ${got}, this build of lmz needs the pack ${await fingerprint} (${bytes.length} bytes downloaded): serve the file that \`lmz model fetch\` makes`,
    );
  }
  opts.onProgress({ phase: 'verify', done: bytes.length, total: bytes.length });
  if (!cache) return { bytes, stored: Promise.resolve() };
  t = performance.now();
  const stored = store(cache, url, bytes).then(() => opts.onStep('store', performance.now() - t));
  stored.catch(() => {}); // the caller awaits it; this keeps an early rejection from counting as unhandled
  return { bytes, stored };
}
