// The in-thread engine: the wasm module, the model and one engine (WebGPU or wasm-CPU) in
// the calling thread. The worker runs exactly this class; `createCompressor({ worker: false })`
// hands it to the page directly.

import type { Compressor as WasmCompressor } from './wasm/lmz_wasm.js';
import { LmzError, PackageCodes, toLmzError } from './errors.js';
import { readInput } from './input.js';
import { byteItems, itemResult, rawItems, safeOnItem } from './many.js';
import { loadModel } from './model.js';
import { byteTransform } from './stream.js';
import type { ByteTransform, CallOptions, Compressor, EngineChoice, EngineKind, Info, Input, ItemResult, LoadStep, ManyOptions, Phase, Progress, RawItem, RawManyOptions, TokenScores } from './types.js';

/** The bindings of one build: the single-threaded glue (SIMD128 and relaxed-SIMD modules share
 * it) or the threaded one, which adds `initThreadPool`. */
type Bindings = Pick<typeof import('./wasm/lmz_wasm.js'), 'default' | 'Compressor' | 'info' | 'packFingerprint' | 'rawToFile' | 'fileToRaw'> & { initThreadPool?: (n: number) => Promise<unknown> };

/** The builds instantiated in this thread, by kind (at most one of each). */
const loaded = new Map<'single' | 'threads', Promise<Bindings>>();

/** A 92-byte module whose function `f` returns lane 0 of one `i32x4.relaxed_dot_i8x16_i7x16_add_s`
 * on constants: a = (−128, 127, −3, 50, …), b = (15, 7, 127, 100, …), c = (1000, …), so
 * −1920 + 889 − 381 + 5000 + 1000 = 4588. Validating is not enough: Node 20's
 * `--experimental-wasm-relaxed-simd` accepts the opcode but implements an older draft (7176). */
const RELAXED_DOT_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 64, 1, 62, 0, 253, 12, 128, 127, 253, 50, 1, 2,
  3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 253, 12, 15, 7, 127, 100, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 253, 12, 232, 3, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 253, 147, 2, 253, 27, 0, 11,
]);

/** Whether this engine runs relaxed SIMD with the final semantics of the 8-bit dot product the
 * relaxed build's kernels use (Chromium-based browsers from 114; elsewhere the SIMD128 build
 * loads). */
export function hasRelaxedSimd(): boolean {
  try {
    if (!WebAssembly.validate(RELAXED_DOT_PROBE)) return false;
    const f = new WebAssembly.Instance(new WebAssembly.Module(RELAXED_DOT_PROBE)).exports.f as () => number;
    return f() === 4588;
  } catch {
    return false;
  }
}

/** Whether this thread may run the threaded build: a Worker (its calling thread blocks while
 * a parallel loop runs, which a page's main thread may not) of a cross-origin-isolated page
 * (shared wasm memory needs `SharedArrayBuffer`: the page is served with
 * `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`). */
export function canUseThreads(): boolean {
  const g = globalThis as unknown as { crossOriginIsolated?: boolean; WorkerGlobalScope?: new () => unknown };
  return typeof SharedArrayBuffer === 'function' && g.crossOriginIsolated === true && typeof g.WorkerGlobalScope === 'function' && globalThis instanceof g.WorkerGlobalScope;
}

/** The threads the wasm-CPU engine gets for `threads` (an option; default: one per logical
 * core): 1 where this thread cannot run the threaded build. */
export function wasmThreads(threads: number | undefined): number {
  const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
  const n = Math.max(1, Math.min(Math.floor(threads ?? cores), 64));
  return n > 1 && canUseThreads() ? n : 1;
}

function wasmError(e: unknown): LmzError {
  return new LmzError(PackageCodes.INTERNAL, `cannot load lmz's wasm module: ${(e as Error)?.message ?? e}`);
}

/** The threaded build's pool of Web Workers: `loadWasm` starts it once the module is
 * instantiated and does not wait for it, so it starts while the compressor is built (which
 * touches no thread). A compressor of that build may run a call or name its adapter only
 * once this has resolved. */
let pool: Promise<void> = Promise.resolve();

/** Resolves once the threaded build's pool of workers (if one is starting) has started. */
export function threadPool(): Promise<void> {
  return pool;
}

/** Instantiates a build of the wasm module once per thread (fetched next to this file): the
 * relaxed-SIMD build where the engine runs it (its kernels sum 8-bit products with
 * `i32x4.relaxed_dot_i8x16_i7x16_add_s`, ~2× the SIMD128 build's; same bits), else SIMD128;
 * with `threads` > 1 (from [`wasmThreads`]) the threaded one of the two, with a pool of that
 * many Web Workers sharing its memory ([`threadPool`]). The literal `import(…)` and `new URL(…,
 * import.meta.url)` forms stay, so bundlers copy every file. */
export function loadWasm(threads = 1): Promise<Bindings> {
  const kind = threads > 1 ? 'threads' : 'single';
  const have = loaded.get(kind);
  if (have) return have;
  const p = (async (): Promise<Bindings> => {
    try {
      if (kind === 'threads') {
        // The same exports (one crate), typed apart by wasm-bindgen: its classes are nominal.
        const m = (await import('./wasm-threads/lmz_wasm.js')) as unknown as Bindings;
        const url = hasRelaxedSimd() ? new URL('./wasm-threads/lmz_wasm_bg.wasm', import.meta.url) : new URL('./wasm-threads/lmz_wasm_simd128_bg.wasm', import.meta.url);
        await m.default({ module_or_path: url });
        pool = Promise.resolve(m.initThreadPool?.(threads)).then(
          () => undefined,
          (e) => {
            loaded.delete(kind);
            throw wasmError(e);
          },
        );
        pool.catch(() => {}); // awaited by the compressor; this keeps it from counting as unhandled meanwhile
        return m;
      }
      const m: Bindings = await import('./wasm/lmz_wasm.js');
      // The probe compiles a module: once per thread, not on every call.
      const url = hasRelaxedSimd() ? new URL('./wasm/lmz_wasm_relaxed_bg.wasm', import.meta.url) : new URL('./wasm/lmz_wasm_bg.wasm', import.meta.url);
      await m.default({ module_or_path: url });
      return m;
    } catch (e) {
      loaded.delete(kind);
      throw wasmError(e);
    }
  })();
  loaded.set(kind, p);
  return p;
}

/** Any build already instantiated here (a header needs no engine), else the single one. */
function anyWasm(): Promise<Bindings> {
  return loaded.get('threads') ?? loadWasm(1);
}

/** A `.lmz` header, without a model. */
export async function readInfo(data: Uint8Array): Promise<Info> {
  const m = await anyWasm();
  try {
    return m.info(data) as Info;
  } catch (e) {
    throw toLmzError(e);
  }
}

/** The standalone compact `.lmz` of a raw stream of `length` bytes; needs no model. */
export async function readRawToFile(raw: Uint8Array, length: number): Promise<Uint8Array> {
  const m = await anyWasm();
  try {
    return m.rawToFile(raw, length);
  } catch (e) {
    throw toLmzError(e);
  }
}

/** The raw stream and length inside a compact `.lmz` file of this build's model; needs no model. */
export async function readFileToRaw(file: Uint8Array): Promise<RawItem> {
  const m = await anyWasm();
  try {
    return m.fileToRaw(file);
  } catch (e) {
    throw toLmzError(e);
  }
}

/** The part of WebGPU's adapter info that names it (wgpu passes on only `description`,
 * which Chromium leaves empty for SwiftShader). */
interface GpuAdapterInfoLike {
  vendor?: string;
  architecture?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

/** "google swiftshader (fallback adapter) (BrowserWebGpu, Cpu, dot4I8Packed)": the browser's
 * words for `adapter`, then the engine's (backend, device type, dot4 variant). */
async function adapterName(adapter: Promise<GpuAdapterLike | null>, engineWords: string): Promise<string> {
  const i = (await adapter)?.info;
  if (!i) return engineWords;
  const name = i.description || [i.vendor, i.architecture].filter(Boolean).join(' ') || 'unnamed adapter';
  return `${name}${i.isFallbackAdapter ? ' (fallback adapter)' : ''} ${engineWords.trim()}`;
}

/** The part of a WebGPU adapter read here (older browsers put `isFallbackAdapter` on it). */
interface GpuAdapterLike {
  info?: GpuAdapterInfoLike;
  isFallbackAdapter?: boolean;
}

/** The high-performance adapter WebGPU offers, or null (no WebGPU, no adapter, an error). */
async function requestAdapter(): Promise<GpuAdapterLike | null> {
  try {
    const gpu = (navigator as unknown as { gpu?: { requestAdapter(o?: object): Promise<GpuAdapterLike | null> } }).gpu;
    return (await gpu?.requestAdapter({ powerPreference: 'high-performance' })) ?? null;
  } catch {
    return null;
  }
}

/** Whether `auto` will take WebGPU: a hardware adapter (not a fallback one such as
 * SwiftShader; the engine's own test is the same). The GPU engine runs in the single-threaded
 * build, so the pool of workers is only started for the CPU engine. */
async function hasHardwareGpu(adapter: Promise<GpuAdapterLike | null>): Promise<boolean> {
  const a = await adapter;
  return !!a && !(a.info?.isFallbackAdapter ?? a.isFallbackAdapter ?? false);
}

/** A load's progress reports, and its steps' times as reports that repeat the latest one's
 * phase and amounts (before any: `load`, 0 of 1). */
export function loadReporter(onProgress?: (p: Progress) => void): { report: (p: Progress) => void; step: (step: LoadStep, ms: number) => void } {
  let last: Progress = { phase: 'load', done: 0, total: 1 };
  return {
    report: (p) => {
      last = p;
      onProgress?.(p);
    },
    step: (step, ms) => onProgress?.({ ...last, step, ms }),
  };
}

export interface EngineOptions {
  modelUrl: string;
  engine: EngineChoice;
  cache: boolean;
  /** Threads of the wasm-CPU engine (see `CompressorOptions.threads`). */
  threads?: number;
  onProgress?: (p: Progress) => void;
}

export class LocalEngine implements Compressor {
  readonly engine: EngineKind;
  readonly adapter: string;
  readonly fingerprint: string;
  #c: WasmCompressor | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #onProgress?: (p: Progress) => void;

  private constructor(c: WasmCompressor, adapter: string, onProgress?: (p: Progress) => void) {
    this.#c = c;
    this.engine = c.engine as EngineKind;
    this.adapter = adapter;
    this.fingerprint = c.fingerprint;
    this.#onProgress = onProgress;
  }

  static async create(opts: EngineOptions): Promise<LocalEngine> {
    const { report, step } = loadReporter(opts.onProgress);
    if (opts.engine === 'webgpu' && !(typeof navigator !== 'undefined' && 'gpu' in navigator)) {
      throw new LmzError(PackageCodes.GPU_NO_ADAPTER, 'this browser has no WebGPU (navigator.gpu is missing); use engine: "cpu" or "auto"');
    }
    // The wasm module loads while the model is read. One adapter request (~0.2 s on
    // SwiftShader) serves `auto`'s choice and the adapter's name.
    const t0 = performance.now();
    const gpuAdapter = opts.engine === 'cpu' ? Promise.resolve(null) : requestAdapter();
    let threads = 1;
    const wasm = (async () => {
      threads = opts.engine === 'cpu' || (opts.engine === 'auto' && !(await hasHardwareGpu(gpuAdapter))) ? wasmThreads(opts.threads) : 1;
      const m = await loadWasm(threads);
      step('wasm', performance.now() - t0);
      return m;
    })();
    const fingerprint = wasm.then((m) => m.packFingerprint());
    fingerprint.catch(() => {}); // awaited once the model is read; a module that fails to load fails `wasm`
    // A module that fails to load fails the call at once (the read goes on, unused).
    const [m, { bytes, stored }] = await Promise.all([wasm, loadModel(opts.modelUrl, fingerprint, { cache: opts.cache, onProgress: report, onStep: step })]);
    report({ phase: 'load', done: 0, total: 1 });
    let c: WasmCompressor;
    try {
      // The call copies the pack into wasm memory first; the first step the module times
      // starts after that: the time before it is the copy.
      const t = performance.now();
      let first = true;
      c = await m.Compressor.createVerified(bytes, opts.engine, m.packFingerprint(), (name: LoadStep, ms: number) => {
        if (first) step('copy', performance.now() - t - ms);
        first = false;
        step(name, ms);
      });
    } catch (e) {
      throw toLmzError(e);
    }
    try {
      if (threads > 1) {
        const t = performance.now();
        await threadPool();
        step('threads', performance.now() - t);
      }
      await stored;
    } catch (e) {
      c.free();
      throw e;
    }
    report({ phase: 'load', done: 1, total: 1 });
    const t = performance.now();
    const adapter = c.engine === 'webgpu' ? await adapterName(gpuAdapter, c.adapter) : c.adapter;
    if (c.engine === 'webgpu') step('adapter', performance.now() - t);
    return new LocalEngine(c, adapter, opts.onProgress);
  }

  /** Runs `f` after every earlier call (the wasm compressor runs one call at a time); an
   * `input` is read (a Blob, a stream) when the call's turn comes. */
  #run<T>(phase: Phase, opts: CallOptions | undefined, input: Input, f: (c: WasmCompressor, data: Uint8Array, progress: (done: number, total: number) => void) => Promise<T>): Promise<T> {
    return this.#queued(phase, opts, (signal) => readInput(input, signal), f);
  }

  /** A many-item call: its results in item order, each `onItem` as it comes. */
  #many(phase: Phase, opts: ManyOptions | undefined, f: (c: WasmCompressor, progress: (done: number, total: number) => void, onItem: (index: number, v: unknown) => void) => Promise<unknown[]>): Promise<ItemResult[]> {
    const onItem = safeOnItem(opts?.onItem);
    return this.#queued(phase, opts, async () => undefined, async (c, _, p) => {
      const out = await f(c, p, (i, v) => onItem?.(i, itemResult(v)));
      return out.map(itemResult);
    });
  }

  #queued<D, T>(phase: Phase, opts: Pick<CallOptions, 'signal' | 'onProgress'> | undefined, read: (signal?: AbortSignal) => Promise<D>, f: (c: WasmCompressor, data: D, progress: (done: number, total: number) => void) => Promise<T>): Promise<T> {
    const onProgress = opts?.onProgress ?? this.#onProgress;
    const signal = opts?.signal;
    const next = this.#queue.then(async () => {
      const c = this.#c;
      if (!c) throw new LmzError(PackageCodes.DISPOSED, 'this compressor was disposed');
      const abort = () => c.cancel();
      signal?.addEventListener('abort', abort);
      try {
        if (signal?.aborted) throw new LmzError(PackageCodes.CANCELLED, 'the call was cancelled before it started');
        const data = await read(signal);
        if (signal?.aborted) throw new LmzError(PackageCodes.CANCELLED, 'the call was cancelled before it started');
        return await f(c, data, (done, total) => onProgress?.({ phase, done, total }));
      } catch (e) {
        const err = toLmzError(e);
        // A panic leaves the wasm instance in an unknown state: refuse further calls.
        if (err.code === PackageCodes.INTERNAL) this.#c = undefined;
        throw err;
      } finally {
        signal?.removeEventListener('abort', abort);
      }
    });
    this.#queue = next.catch(() => {});
    return next;
  }

  compress(data: Input, opts?: CallOptions): Promise<Uint8Array> {
    return this.#run('compress', opts, data, (c, d, p) => c.compress(d, p));
  }

  decompress(data: Input, opts?: CallOptions): Promise<Uint8Array> {
    return this.#run('decompress', opts, data, (c, d, p) => c.decompress(d, p));
  }

  /** The original of a `.lmz` file chunk by chunk, in file order (decompressStream's work;
   * not part of the public interface). Resolves once the whole-file checksum is verified. */
  decompressChunks(data: Input, onChunk: (chunk: Uint8Array) => void, opts?: CallOptions): Promise<void> {
    return this.#run('decompress', opts, data, (c, d, p) => c.decompressChunks(d, p, onChunk));
  }

  compressStream(opts?: CallOptions): ByteTransform {
    return byteTransform(async (input, emit, o) => emit(await this.compress(input, o)), opts);
  }

  decompressStream(opts?: CallOptions): ByteTransform {
    return byteTransform((input, emit, o) => this.decompressChunks(input, emit, o), opts);
  }

  compressRaw(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array> {
    return this.#run('compress', opts, data, (c, d, p) => c.compressRaw(d, p));
  }

  decompressRaw(raw: Uint8Array, length: number, opts?: CallOptions): Promise<Uint8Array> {
    return this.#run('decompress', opts, raw, (c, d, p) => c.decompressRaw(d, length, p));
  }

  async compressMany(inputs: readonly Uint8Array[], opts?: ManyOptions): Promise<ItemResult[]> {
    const items = byteItems(inputs, 'inputs');
    return this.#many('compress', opts, (c, p, onItem) => c.compressMany(items, p, onItem));
  }

  async decompressMany(files: readonly Uint8Array[], opts?: ManyOptions): Promise<ItemResult[]> {
    const items = byteItems(files, 'files');
    return this.#many('decompress', opts, (c, p, onItem) => c.decompressMany(items, p, onItem));
  }

  async compressRawMany(inputs: readonly Uint8Array[], opts?: ManyOptions): Promise<ItemResult[]> {
    const items = byteItems(inputs, 'inputs');
    return this.#many('compress', opts, (c, p, onItem) => c.compressRawMany(items, p, onItem));
  }

  async decompressRawMany(items: readonly RawItem[], opts?: RawManyOptions): Promise<ItemResult[]> {
    const { raws, lengths, prefix } = rawItems(items, opts?.prefix);
    return this.#many('decompress', opts, (c, p, onItem) => c.decompressRawMany(raws, new Float64Array(lengths), prefix, p, onItem));
  }

  score(data: Uint8Array, opts?: CallOptions): Promise<TokenScores> {
    return this.#run('score', opts, data, (c, d, p) => c.score(d, p) as Promise<TokenScores>);
  }

  info(data: Uint8Array): Promise<Info> {
    return readInfo(data);
  }

  dispose(): void {
    const c = this.#c;
    this.#c = undefined;
    if (!c) return;
    // Stop a running call, free the engine when it has returned (the queue never rejects).
    c.cancel();
    void this.#queue.then(() => c.free());
  }
}
