// The worker client: the same Compressor interface as LocalEngine, with the engine in a
// module Web Worker (worker.js next to this file). Inputs are copied to the worker (the
// caller's buffers stay usable); results are transferred back.
//
// Cancellation: an aborted call first asks the worker to stop (the engine checks between
// steps and rejects with LMZ_CANCELLED). A step can be long — a whole window of 2,048 tokens
// on wasm-CPU — so if the worker has not answered within CANCEL_GRACE_MS the client
// terminates it, rejects the call with LMZ_CANCELLED at once and starts a fresh worker (the
// model then comes from Cache Storage), to which the other queued calls are handed over.

import { fromErrorData, LmzError, PackageCodes } from './errors.js';
import type { FromWorker, Method, ToWorker } from './protocol.js';
import type { CallOptions, Compressor, EngineKind, Info, Progress, TokenScores } from './types.js';
import type { EngineOptions } from './engine.js';

/** How long a cancelled call may take to stop by itself before its worker is replaced. */
export const CANCEL_GRACE_MS = 1500;

interface Pending {
  method: Method;
  data: Uint8Array;
  /** The original length (decompressRaw). */
  length?: number;
  resolve: (v: unknown) => void;
  reject: (e: LmzError) => void;
  onProgress?: (p: Progress) => void;
}

type Ready = FromWorker & { type: 'ready' };

/** Starts a worker and resolves when its engine is ready. */
function spawn(opts: EngineOptions, onMessage: (w: Worker, m: FromWorker) => void, onError: (w: Worker, e: LmzError) => void): Promise<{ w: Worker; ready: Ready }> {
  return new Promise((resolve, reject) => {
    let w: Worker;
    try {
      w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'lmz' });
    } catch (e) {
      reject(new LmzError(PackageCodes.WORKER, `cannot start the lmz worker: ${(e as Error).message}`));
      return;
    }
    let started = false;
    w.onmessage = (ev: MessageEvent<FromWorker>) => {
      const m = ev.data;
      if (m.type === 'progress' && m.id === null) {
        opts.onProgress?.(m.progress); // loading the model
      } else if (!started && m.type === 'ready') {
        started = true;
        resolve({ w, ready: m });
      } else if (!started && m.type === 'error' && m.id === null) {
        w.terminate();
        reject(fromErrorData(m.error));
      } else {
        onMessage(w, m);
      }
    };
    w.onerror = (ev) => {
      const e = new LmzError(PackageCodes.WORKER, `the lmz worker failed: ${ev.message || 'script error'}`);
      if (!started) {
        w.terminate();
        reject(e);
      } else onError(w, e);
    };
    const init: ToWorker = { type: 'init', modelUrl: opts.modelUrl, engine: opts.engine, cache: opts.cache };
    w.postMessage(init);
  });
}

export class WorkerClient implements Compressor {
  readonly engine: EngineKind;
  readonly adapter: string;
  readonly fingerprint: string;
  #opts: EngineOptions;
  /** The current worker; `undefined` once disposed. */
  #worker: Promise<Worker> | undefined;
  #next = 1;
  #pending = new Map<number, Pending>();

  private constructor(w: Worker, ready: Ready, opts: EngineOptions) {
    this.#opts = opts;
    this.engine = ready.engine;
    this.adapter = ready.adapter;
    this.fingerprint = ready.fingerprint;
    this.#worker = Promise.resolve(w);
  }

  static async create(opts: EngineOptions): Promise<WorkerClient> {
    let client: WorkerClient | undefined;
    const { w, ready } = await spawn(
      opts,
      (_, m) => client?.receive(m),
      (w, e) => client?.fail(w, e),
    );
    client = new WorkerClient(w, ready, opts);
    return client;
  }

  private async current(): Promise<Worker> {
    if (!this.#worker) throw new LmzError(PackageCodes.DISPOSED, 'this compressor was disposed');
    return this.#worker;
  }

  private receive(m: FromWorker): void {
    if (m.type === 'progress' && m.id !== null) {
      this.#pending.get(m.id)?.onProgress?.(m.progress);
      return;
    }
    if ((m.type === 'result' || m.type === 'error') && m.id !== null) {
      const p = this.#pending.get(m.id);
      if (!p) return; // a call cancelled and answered by a replaced worker
      this.#pending.delete(m.id);
      if (m.type === 'result') p.resolve(m.value);
      else p.reject(fromErrorData(m.error));
    }
  }

  /** The worker died: every call fails, and the compressor is unusable. */
  private fail(w: Worker, e: LmzError): void {
    w.terminate();
    this.#worker = undefined;
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  private send(w: Worker, id: number, p: Pending): void {
    const msg: ToWorker = { type: 'call', id, method: p.method, data: p.data.slice(), length: p.length };
    w.postMessage(msg, [msg.data.buffer]);
  }

  /** Replaces a worker that did not stop in time; calls still queued move to the new one. */
  private async replace(old: Worker): Promise<void> {
    old.terminate();
    // The calls the old worker had; calls made from now on go to the new one by themselves.
    const carried = [...this.#pending];
    const next = spawn(
      this.#opts,
      (_, m) => this.receive(m),
      (w, e) => this.fail(w, e),
    ).then(({ w }) => w);
    this.#worker = next;
    let w: Worker;
    try {
      w = await next;
    } catch (e) {
      this.#worker = undefined;
      for (const p of this.#pending.values()) p.reject(e as LmzError);
      this.#pending.clear();
      return;
    }
    for (const [id, p] of carried) if (this.#pending.has(id)) this.send(w, id, p);
  }

  private call<T>(method: Method, data: Uint8Array, opts?: CallOptions, length?: number): Promise<T> {
    const signal = opts?.signal;
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new LmzError(PackageCodes.CANCELLED, 'the call was cancelled before it started'));
        return;
      }
      const id = this.#next++;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const abort = async () => {
        let w: Worker;
        try {
          w = await this.current();
        } catch {
          return;
        }
        w.postMessage({ type: 'cancel', id } satisfies ToWorker);
        timer = setTimeout(() => {
          const p = this.#pending.get(id);
          if (!p) return;
          this.#pending.delete(id);
          p.reject(new LmzError(PackageCodes.CANCELLED, `cancelled (the worker did not stop within ${CANCEL_GRACE_MS} ms, so it was replaced)`));
          void this.replace(w);
        }, CANCEL_GRACE_MS);
      };
      signal?.addEventListener('abort', abort, { once: true });
      const settle = () => {
        signal?.removeEventListener('abort', abort);
        if (timer !== undefined) clearTimeout(timer);
      };
      const p: Pending = {
        method,
        data,
        length,
        resolve: (v) => {
          settle();
          resolve(v as T);
        },
        reject: (e) => {
          settle();
          reject(e);
        },
        onProgress: opts?.onProgress ?? this.#opts.onProgress,
      };
      this.current().then(
        (w) => {
          this.#pending.set(id, p);
          this.send(w, id, p);
        },
        (e: LmzError) => p.reject(e),
      );
    });
  }

  compress(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array> {
    return this.call('compress', data, opts);
  }

  decompress(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array> {
    return this.call('decompress', data, opts);
  }

  compressRaw(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array> {
    return this.call('compressRaw', data, opts);
  }

  decompressRaw(raw: Uint8Array, length: number, opts?: CallOptions): Promise<Uint8Array> {
    return this.call('decompressRaw', raw, opts, length);
  }

  score(data: Uint8Array, opts?: CallOptions): Promise<TokenScores> {
    return this.call('score', data, opts);
  }

  info(data: Uint8Array): Promise<Info> {
    return this.call('info', data);
  }

  dispose(): void {
    const w = this.#worker;
    this.#worker = undefined;
    const e = new LmzError(PackageCodes.DISPOSED, 'this compressor was disposed');
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
    void w?.then((w) => w.terminate(), () => {});
  }
}
