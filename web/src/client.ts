// The worker client: the same Compressor interface as LocalEngine, with the engine in a
// module Web Worker (worker.js next to this file).
//
// Calls queue here and go to the worker one at a time (the engine runs one call at a time
// anyway), so a call's input is prepared only when its turn comes and a worker never holds
// more than the call it is running. Inputs: a Uint8Array or ArrayBuffer is copied and the
// copy transferred (or, with `transfer: true`, transferred itself: zero-copy); a Blob is
// posted by reference and read in the worker; a stream is read here into one buffer, which
// is transferred. Results and decompressed chunks are transferred back.
//
// Cancellation: a queued call is simply dropped. The running call is asked to stop (the
// engine checks between steps and rejects with LMZ_CANCELLED). A step can be long — a whole
// window of 2,048 tokens on wasm-CPU — so if the worker has not answered within
// CANCEL_GRACE_MS the client terminates it, rejects the call with LMZ_CANCELLED at once and
// starts a fresh worker (the model then comes from Cache Storage) for the calls still queued.

import { fromErrorData, LmzError, PackageCodes } from './errors.js';
import { inputKind, readStream } from './input.js';
import { byteItems, rawItems, safeOnItem } from './many.js';
import type { FromWorker, ManyMethod, Method, ToWorker } from './protocol.js';
import { byteTransform } from './stream.js';
import type { ByteTransform, CallOptions, Compressor, EngineKind, Info, Input, ItemResult, ManyOptions, Progress, RawItem, RawManyOptions, TokenScores } from './types.js';
import type { EngineOptions } from './engine.js';

/** How long a cancelled call may take to stop by itself before its worker is replaced. */
export const CANCEL_GRACE_MS = 1500;

interface Call {
  id: number;
  method: Method;
  input: Input;
  /** The original length (decompressRaw). */
  length?: number;
  /** A many-item call: its inputs (copied and transferred when its turn comes), the raw
   * streams' lengths and prefix (decompressRawMany), `onItem`, and the results by index. */
  many?: { items: Uint8Array[]; lengths?: number[]; prefix?: number; onItem?: (index: number, r: ItemResult) => void; results: ItemResult[] };
  transfer: boolean;
  signal?: AbortSignal;
  resolve: (v: unknown) => void;
  reject: (e: LmzError) => void;
  onProgress?: (p: Progress) => void;
  onChunk?: (chunk: Uint8Array) => void;
  /** Aborts the preparation of the input (reading a stream). */
  prep: AbortController;
  /** Set once the call was posted to `worker`. */
  worker?: Worker;
  settled: boolean;
}

type Ready = FromWorker & { type: 'ready' };

/** Starts a worker and resolves when its engine is ready. */
function spawn(opts: EngineOptions, onMessage: (w: Worker, m: FromWorker) => void, onError: (w: Worker, e: LmzError) => void): Promise<{ w: Worker; ready: Ready }> {
  return new Promise((resolve, reject) => {
    let w: Worker;
    const spawned = performance.timeOrigin + performance.now();
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
    const init: ToWorker = { type: 'init', modelUrl: opts.modelUrl, engine: opts.engine, cache: opts.cache, threads: opts.threads, spawned };
    w.postMessage(init);
  });
}

/** `bytes`' own copy (or, with `transfer`, `bytes` itself when it covers its whole buffer). */
function owned(bytes: Uint8Array, transfer: boolean): Uint8Array {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
  return transfer && whole ? bytes : bytes.slice();
}

/** The items of a many-item call in input order; an index the worker never answered (a bug)
 * is rejected with LMZ_INTERNAL rather than left a hole. */
function ordered(results: ItemResult[], n: number): ItemResult[] {
  return Array.from({ length: n }, (_, i) => results[i] ?? { status: 'rejected', reason: new LmzError(PackageCodes.INTERNAL, `item ${i} got no result from the worker`) });
}

export class WorkerClient implements Compressor {
  readonly engine: EngineKind;
  readonly adapter: string;
  readonly fingerprint: string;
  #opts: EngineOptions;
  /** The current worker; `undefined` once disposed or dead. */
  #worker: Promise<Worker> | undefined;
  #next = 1;
  #queue: Call[] = [];
  /** The call being prepared or run by the worker. */
  #active: Call | undefined;

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
      (w, m) => client?.receive(w, m),
      (w, e) => client?.fail(w, e),
    );
    client = new WorkerClient(w, ready, opts);
    return client;
  }

  private receive(w: Worker, m: FromWorker): void {
    const a = this.#active;
    // Messages of a replaced worker, or about a call that was already settled, are dropped.
    if (!a || a.worker !== w || !('id' in m) || m.id !== a.id) return;
    switch (m.type) {
      case 'progress':
        a.onProgress?.(m.progress);
        break;
      case 'chunk':
        a.onChunk?.(m.bytes);
        break;
      case 'item': {
        if (!a.many) break;
        const r: ItemResult = m.error ? { status: 'rejected', reason: fromErrorData(m.error) } : { status: 'fulfilled', value: m.value ?? new Uint8Array() };
        a.many.results[m.index] = r;
        a.many.onItem?.(m.index, r);
        break;
      }
      case 'result':
        this.finish(a, () => a.resolve(a.many ? ordered(a.many.results, a.many.items.length) : m.value));
        break;
      case 'error':
        this.finish(a, () => a.reject(fromErrorData(m.error)));
        break;
    }
  }

  /** Settles the active call and starts the next one. */
  private finish(a: Call, settle: () => void): void {
    if (a.settled) return;
    a.settled = true;
    if (this.#active === a) this.#active = undefined;
    settle();
    void this.pump();
  }

  /** The worker died: every call fails, and the compressor is unusable. */
  private fail(w: Worker, e: LmzError): void {
    w.terminate();
    this.#worker = undefined;
    this.rejectAll(e);
  }

  private rejectAll(e: LmzError): void {
    const calls = [...(this.#active ? [this.#active] : []), ...this.#queue];
    this.#active = undefined;
    this.#queue = [];
    for (const c of calls) {
      if (c.settled) continue;
      c.settled = true;
      c.prep.abort();
      c.reject(e);
    }
  }

  /** Starts the next queued call when none is running. */
  private async pump(): Promise<void> {
    if (this.#active || !this.#queue.length) return;
    const c = this.#queue.shift()!;
    this.#active = c;
    let w: Worker;
    let msg: ToWorker;
    const transfer: Transferable[] = [];
    try {
      if (!this.#worker) throw new LmzError(PackageCodes.DISPOSED, 'this compressor was disposed');
      w = await this.#worker;
      if (c.many) {
        // Copies (the caller's arrays stay theirs), transferred.
        const items = c.many.items.map((b) => b.slice());
        for (const b of items) transfer.push(b.buffer);
        msg = { type: 'call', id: c.id, method: c.method as ManyMethod, items, lengths: c.many.lengths, prefix: c.many.prefix };
      } else {
        let data: Uint8Array | Blob;
        switch (inputKind(c.input)) {
          case 'bytes':
            data = owned(c.input as Uint8Array, c.transfer);
            break;
          case 'buffer':
            data = owned(new Uint8Array(c.input as ArrayBuffer), c.transfer);
            break;
          case 'blob':
            data = c.input as Blob;
            break;
          case 'stream':
            data = await readStream(c.input as ReadableStream<Uint8Array>, c.prep.signal);
            break;
        }
        if (data instanceof Uint8Array) transfer.push(data.buffer);
        msg = { type: 'call', id: c.id, method: c.method as Exclude<Method, ManyMethod>, data, length: c.length };
      }
    } catch (e) {
      this.finish(c, () => c.reject(e instanceof LmzError ? e : new LmzError(PackageCodes.INTERNAL, String(e))));
      return;
    }
    if (c.settled) return; // cancelled (or disposed) while its input was read
    c.worker = w;
    w.postMessage(msg, transfer);
  }

  /** Replaces a worker that did not stop in time; the queued calls go to the new one. */
  private async replace(old: Worker): Promise<void> {
    old.terminate();
    if (!this.#worker) return; // disposed meanwhile
    const next = spawn(
      this.#opts,
      (w, m) => this.receive(w, m),
      (w, e) => this.fail(w, e),
    ).then(({ w }) => w);
    this.#worker = next;
    try {
      await next;
    } catch (e) {
      if (this.#worker === next) this.#worker = undefined;
      this.rejectAll(e as LmzError);
      return;
    }
    void this.pump();
  }

  /** Aborts call `c`: dropped if queued or still reading its input; else the worker is asked
   * to stop, and replaced if it does not answer within CANCEL_GRACE_MS. */
  private abort(c: Call): void {
    if (c.settled) return;
    const cancelled = (m: string) => new LmzError(PackageCodes.CANCELLED, m);
    const queued = this.#queue.indexOf(c);
    if (queued >= 0) {
      this.#queue.splice(queued, 1);
      c.settled = true;
      c.reject(cancelled('the call was cancelled before it started'));
      return;
    }
    const w = c.worker;
    if (!w) {
      // Reading its input: stop that; pump() sees `settled` and does not post it.
      c.prep.abort();
      this.finish(c, () => c.reject(cancelled('the call was cancelled while its input was read')));
      return;
    }
    w.postMessage({ type: 'cancel', id: c.id } satisfies ToWorker);
    setTimeout(() => {
      if (c.settled) return;
      // replace() puts the new worker's promise in place synchronously, before finish()
      // starts the next call, which then waits for it.
      void this.replace(w);
      this.finish(c, () => c.reject(cancelled(`cancelled (the worker did not stop within ${CANCEL_GRACE_MS} ms, so it was replaced)`)));
    }, CANCEL_GRACE_MS);
  }

  private call<T>(method: Method, input: Input, opts?: CallOptions, extra: { length?: number; onChunk?: (chunk: Uint8Array) => void; many?: Call['many'] } = {}): Promise<T> {
    const signal = opts?.signal;
    return new Promise<T>((resolve, reject) => {
      if (!this.#worker) {
        reject(new LmzError(PackageCodes.DISPOSED, 'this compressor was disposed'));
        return;
      }
      if (signal?.aborted) {
        reject(new LmzError(PackageCodes.CANCELLED, 'the call was cancelled before it started'));
        return;
      }
      try {
        inputKind(input); // refuse a wrong type now, not when its turn comes
      } catch (e) {
        reject(e);
        return;
      }
      const onAbort = () => this.abort(c);
      const c: Call = {
        id: this.#next++,
        method,
        input,
        length: extra.length,
        transfer: opts?.transfer ?? false,
        signal,
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v as T);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
        onProgress: opts?.onProgress ?? this.#opts.onProgress,
        onChunk: extra.onChunk,
        many: extra.many,
        prep: new AbortController(),
        settled: false,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(c);
      void this.pump();
    });
  }

  compress(data: Input, opts?: CallOptions): Promise<Uint8Array> {
    return this.call('compress', data, opts);
  }

  decompress(data: Input, opts?: CallOptions): Promise<Uint8Array> {
    return this.call('decompress', data, opts);
  }

  /** The original of a `.lmz` file chunk by chunk (decompressStream's work; not part of the
   * public interface). */
  decompressChunks(data: Input, onChunk: (chunk: Uint8Array) => void, opts?: CallOptions): Promise<void> {
    return this.call('decompressChunks', data, opts, { onChunk });
  }

  compressStream(opts?: CallOptions): ByteTransform {
    return byteTransform(async (input, emit, o) => emit(await this.compress(input, o)), opts);
  }

  decompressStream(opts?: CallOptions): ByteTransform {
    return byteTransform((input, emit, o) => this.decompressChunks(input, emit, o), opts);
  }

  compressRaw(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array> {
    return this.call('compressRaw', data, opts);
  }

  decompressRaw(raw: Uint8Array, length: number, opts?: CallOptions): Promise<Uint8Array> {
    return this.call('decompressRaw', raw, opts, { length });
  }

  /** A many-item call: its inputs are checked now, copied when its turn comes. */
  private callMany(method: ManyMethod, items: Uint8Array[], opts: ManyOptions | undefined, raw: { lengths?: number[]; prefix?: number } = {}): Promise<ItemResult[]> {
    const many = { items, ...raw, onItem: safeOnItem(opts?.onItem), results: [] as ItemResult[] };
    // `input` is unused by a many-item call; an empty array passes the input check.
    return this.call(method, new Uint8Array(), opts, { many });
  }

  async compressMany(inputs: readonly Uint8Array[], opts?: ManyOptions): Promise<ItemResult[]> {
    return this.callMany('compressMany', byteItems(inputs, 'inputs'), opts);
  }

  async decompressMany(files: readonly Uint8Array[], opts?: ManyOptions): Promise<ItemResult[]> {
    return this.callMany('decompressMany', byteItems(files, 'files'), opts);
  }

  async compressRawMany(inputs: readonly Uint8Array[], opts?: ManyOptions): Promise<ItemResult[]> {
    return this.callMany('compressRawMany', byteItems(inputs, 'inputs'), opts);
  }

  async decompressRawMany(items: readonly RawItem[], opts?: RawManyOptions): Promise<ItemResult[]> {
    const { raws, lengths, prefix } = rawItems(items, opts?.prefix);
    return this.callMany('decompressRawMany', raws, opts, { lengths, prefix });
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
    this.rejectAll(new LmzError(PackageCodes.DISPOSED, 'this compressor was disposed'));
    void w?.then((w) => w.terminate(), () => {});
  }
}
