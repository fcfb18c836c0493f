// The Web Worker: runs a LocalEngine and answers the client's messages (protocol.ts).
// Errors travel as { name, code, message } and are rebuilt into LmzError by the client.

import { LocalEngine } from './engine.js';
import { errorData, LmzError, PackageCodes } from './errors.js';
import { readInput } from './input.js';
import type { FromWorker, ToWorker } from './protocol.js';
import type { ItemResult, Progress, TokenScores } from './types.js';

const scope = self as unknown as DedicatedWorkerGlobalScope;
const post = (m: FromWorker, transfer: Transferable[] = []) => scope.postMessage(m, transfer);

let engine: Promise<LocalEngine> | undefined;
const calls = new Map<number, AbortController>();

scope.onmessage = async (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  if (m.type === 'init') {
    // The worker's start: from its creation in the client (the clocks of two threads meet
    // in timeOrigin) until it runs.
    if (m.spawned !== undefined) post({ type: 'progress', id: null, progress: { phase: 'load', done: 0, total: 1, step: 'worker', ms: performance.timeOrigin + performance.now() - m.spawned } });
    engine = LocalEngine.create({ modelUrl: m.modelUrl, engine: m.engine, cache: m.cache, threads: m.threads, onProgress: (progress) => post({ type: 'progress', id: null, progress }) });
    try {
      const e = await engine;
      post({ type: 'ready', engine: e.engine, adapter: e.adapter, fingerprint: e.fingerprint });
    } catch (err) {
      post({ type: 'error', id: null, error: errorData(err) });
    }
    return;
  }
  if (m.type === 'cancel') {
    calls.get(m.id)?.abort();
    return;
  }
  const ac = new AbortController();
  calls.set(m.id, ac);
  try {
    if (!engine) throw new LmzError(PackageCodes.WORKER, 'the worker was called before init');
    const e = await engine;
    const opts = { signal: ac.signal, onProgress: (progress: Progress) => post({ type: 'progress', id: m.id, progress }) };
    if ('items' in m) {
      // Each item goes to the client as it comes (its bytes transferred: a fresh copy out of
      // wasm memory); the client puts them in order, so the result itself is empty.
      const onItem = (index: number, r: ItemResult) =>
        r.status === 'fulfilled' ? post({ type: 'item', id: m.id, index, value: r.value }, [r.value.buffer]) : post({ type: 'item', id: m.id, index, error: errorData(r.reason) });
      const o = { ...opts, onItem };
      if (m.method === 'decompressRawMany') {
        const lengths = m.lengths ?? [];
        await e.decompressRawMany(m.items.map((raw, i) => ({ raw, length: lengths[i] ?? Number.NaN })), { ...o, prefix: m.prefix });
      } else {
        await e[m.method](m.items, o);
      }
      post({ type: 'result', id: m.id, value: undefined });
      return;
    }
    switch (m.method) {
      case 'compress':
      case 'decompress': {
        const out = await e[m.method](m.data, opts);
        post({ type: 'result', id: m.id, value: out }, [out.buffer]);
        break;
      }
      case 'decompressChunks': {
        // Each chunk is a fresh Uint8Array copied out of wasm memory: transferred, not copied again.
        await e.decompressChunks(m.data, (bytes) => post({ type: 'chunk', id: m.id, bytes }, [bytes.buffer]), opts);
        post({ type: 'result', id: m.id, value: undefined });
        break;
      }
      case 'compressRaw': {
        const out = await e.compressRaw(await readInput(m.data), opts);
        post({ type: 'result', id: m.id, value: out }, [out.buffer]);
        break;
      }
      case 'decompressRaw': {
        const out = await e.decompressRaw(await readInput(m.data), m.length ?? Number.NaN, opts);
        post({ type: 'result', id: m.id, value: out }, [out.buffer]);
        break;
      }
      case 'score': {
        const s: TokenScores = await e.score(await readInput(m.data), opts);
        post({ type: 'result', id: m.id, value: s }, [s.lengths.buffer, s.bits.buffer]);
        break;
      }
      case 'info':
        post({ type: 'result', id: m.id, value: await e.info(await readInput(m.data)) });
        break;
    }
  } catch (err) {
    post({ type: 'error', id: m.id, error: errorData(err) });
  } finally {
    calls.delete(m.id);
  }
};
