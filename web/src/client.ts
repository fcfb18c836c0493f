// The worker client: the same Compressor interface as LocalEngine, with the engine in a
// module Web Worker (worker.js next to this file). Inputs are copied to the worker (the
// caller's buffers stay usable); results are transferred back.

import { fromErrorData, LmzError, PackageCodes } from './errors.js';
import type { FromWorker, Method, ToWorker } from './protocol.js';
import type { CallOptions, Compressor, EngineKind, Info, Progress, TokenScores } from './types.js';
import type { EngineOptions } from './engine.js';

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: LmzError) => void;
  onProgress?: (p: Progress) => void;
}

export class WorkerClient implements Compressor {
  readonly engine: EngineKind;
  readonly adapter: string;
  readonly fingerprint: string;
  #w: Worker | undefined;
  #next = 1;
  #pending = new Map<number, Pending>();
  #onProgress?: (p: Progress) => void;

  private constructor(w: Worker, ready: FromWorker & { type: 'ready' }, onProgress?: (p: Progress) => void) {
    this.#w = w;
    this.engine = ready.engine;
    this.adapter = ready.adapter;
    this.fingerprint = ready.fingerprint;
    this.#onProgress = onProgress;
    w.onmessage = (ev: MessageEvent<FromWorker>) => this.#receive(ev.data);
    w.onerror = (ev) => this.#fail(new LmzError(PackageCodes.WORKER, `the lmz worker failed: ${ev.message}`));
  }

  static create(opts: EngineOptions): Promise<WorkerClient> {
    return new Promise((resolve, reject) => {
      let w: Worker;
      try {
        w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'lmz' });
      } catch (e) {
        reject(new LmzError(PackageCodes.WORKER, `cannot start the lmz worker: ${(e as Error).message}`));
        return;
      }
      w.onmessage = (ev: MessageEvent<FromWorker>) => {
        const m = ev.data;
        if (m.type === 'progress') opts.onProgress?.(m.progress);
        else if (m.type === 'ready') resolve(new WorkerClient(w, m, opts.onProgress));
        else if (m.type === 'error') {
          w.terminate();
          reject(fromErrorData(m.error));
        }
      };
      w.onerror = (ev) => {
        w.terminate();
        reject(new LmzError(PackageCodes.WORKER, `the lmz worker failed to start: ${ev.message || 'script error'}`));
      };
      const init: ToWorker = { type: 'init', modelUrl: opts.modelUrl, engine: opts.engine, cache: opts.cache };
      w.postMessage(init);
    });
  }

  #receive(m: FromWorker): void {
    if (m.type === 'progress') {
      const p = m.id === null ? undefined : this.#pending.get(m.id);
      (p ? p.onProgress : this.#onProgress)?.(m.progress);
      return;
    }
    if (m.type === 'result' || m.type === 'error') {
      if (m.id === null) return;
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.type === 'result') p.resolve(m.value);
      else p.reject(fromErrorData(m.error));
    }
  }

  #fail(e: LmzError): void {
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
    this.#w?.terminate();
    this.#w = undefined;
  }

  #call<T>(method: Method, data: Uint8Array, opts?: CallOptions): Promise<T> {
    const w = this.#w;
    if (!w) return Promise.reject(new LmzError(PackageCodes.DISPOSED, 'this compressor was disposed'));
    const signal = opts?.signal;
    if (signal?.aborted) return Promise.reject(new LmzError(PackageCodes.CANCELLED, 'the call was cancelled before it started'));
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const abort = () => w.postMessage({ type: 'cancel', id } satisfies ToWorker);
      signal?.addEventListener('abort', abort, { once: true });
      const done = () => signal?.removeEventListener('abort', abort);
      this.#pending.set(id, {
        resolve: (v) => {
          done();
          resolve(v as T);
        },
        reject: (e) => {
          done();
          reject(e);
        },
        onProgress: opts?.onProgress ?? this.#onProgress,
      });
      const msg: ToWorker = { type: 'call', id, method, data: data.slice() };
      w.postMessage(msg, [msg.data.buffer]);
    });
  }

  compress(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array> {
    return this.#call('compress', data, opts);
  }

  decompress(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array> {
    return this.#call('decompress', data, opts);
  }

  score(data: Uint8Array, opts?: CallOptions): Promise<TokenScores> {
    return this.#call('score', data, opts);
  }

  info(data: Uint8Array): Promise<Info> {
    return this.#call('info', data);
  }

  dispose(): void {
    this.#fail(new LmzError(PackageCodes.DISPOSED, 'this compressor was disposed'));
  }
}
