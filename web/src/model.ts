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

/** The model pack at `url`, verified to hash to `fingerprint` (lower-case hex). */
export async function loadModel(url: string, fingerprint: string, opts: LoadOptions): Promise<Uint8Array> {
  const cache = opts.cache ? await openCache() : undefined;
  let note: Progress['note'];
  if (cache) {
    let t = performance.now();
    const hit = await cache.match(url);
    if (hit) {
      let bytes: Uint8Array | undefined;
      try {
        bytes = new Uint8Array(await hit.arrayBuffer());
      } catch {
        bytes = undefined; // an unreadable entry is as good as a corrupt one
      }
      opts.onStep('read', performance.now() - t);
      if (bytes) {
        opts.onProgress({ phase: 'verify', done: 0, total: bytes.length, note: 'cached' });
        t = performance.now();
        const hash = await sha256hex(bytes);
        opts.onStep('hash', performance.now() - t);
        if (hash === fingerprint) {
          opts.onProgress({ phase: 'verify', done: bytes.length, total: bytes.length, note: 'cached' });
          return bytes;
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
  t = performance.now();
  const got = await sha256hex(bytes);
  opts.onStep('hash', performance.now() - t);
  if (got !== fingerprint) {
    throw new LmzError(
      PackageCodes.HASH_MISMATCH,
      `the model at ${url} has SHA-256 ${got}, this build of lmz needs the pack ${fingerprint} (${bytes.length} bytes downloaded): serve the file that \`lmz model fetch\` makes`,
    );
  }
  opts.onProgress({ phase: 'verify', done: bytes.length, total: bytes.length });
  if (cache) {
    t = performance.now();
    await store(cache, url, bytes);
    opts.onStep('store', performance.now() - t);
  }
  return bytes;
}
