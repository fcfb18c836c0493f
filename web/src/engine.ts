// The in-thread engine: the wasm module, the model and one engine (WebGPU or wasm-CPU) in
// the calling thread. The worker runs exactly this class; `createCompressor({ worker: false })`
// hands it to the page directly.

import init, { Compressor as WasmCompressor, info as wasmInfo, packFingerprint, rawToFile as wasmRawToFile } from './wasm/lmz_wasm.js';
import { LmzError, PackageCodes, toLmzError } from './errors.js';
import { readInput } from './input.js';
import { loadModel } from './model.js';
import { byteTransform } from './stream.js';
import type { ByteTransform, CallOptions, Compressor, EngineChoice, EngineKind, Info, Input, Phase, Progress, TokenScores } from './types.js';

let ready: Promise<unknown> | undefined;

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

/** Instantiates the wasm module once per thread (fetched next to this file): the relaxed-SIMD
 * build where the engine runs it (its kernels sum 8-bit products with
 * `i32x4.relaxed_dot_i8x16_i7x16_add_s`, ~2× the SIMD128 build's; same bits), else SIMD128.
 * Both literal `new URL(…, import.meta.url)` forms stay, so bundlers copy both files. */
export function loadWasm(): Promise<unknown> {
  if (ready) return ready;
  // The probe compiles a module: once per thread, not on every call.
  const url = hasRelaxedSimd() ? new URL('./wasm/lmz_wasm_relaxed_bg.wasm', import.meta.url) : new URL('./wasm/lmz_wasm_bg.wasm', import.meta.url);
  const p = init({ module_or_path: url }).catch((e: unknown) => {
    ready = undefined;
    throw new LmzError(PackageCodes.INTERNAL, `cannot load lmz's wasm module: ${(e as Error)?.message ?? e}`);
  });
  ready = p;
  return p;
}

/** A `.lmz` header, without a model. */
export async function readInfo(data: Uint8Array): Promise<Info> {
  await loadWasm();
  try {
    return wasmInfo(data) as Info;
  } catch (e) {
    throw toLmzError(e);
  }
}

/** The standalone compact `.lmz` of a raw stream of `length` bytes; needs no model. */
export async function readRawToFile(raw: Uint8Array, length: number): Promise<Uint8Array> {
  await loadWasm();
  try {
    return wasmRawToFile(raw, length);
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
 * words for the adapter, then the engine's (backend, device type, dot4 variant). */
async function adapterName(engineWords: string): Promise<string> {
  try {
    const gpu = (navigator as unknown as { gpu: { requestAdapter(o?: object): Promise<{ info?: GpuAdapterInfoLike } | null> } }).gpu;
    const i = (await gpu.requestAdapter({ powerPreference: 'high-performance' }))?.info;
    if (!i) return engineWords;
    const name = i.description || [i.vendor, i.architecture].filter(Boolean).join(' ') || 'unnamed adapter';
    return `${name}${i.isFallbackAdapter ? ' (fallback adapter)' : ''} ${engineWords.trim()}`;
  } catch {
    return engineWords;
  }
}

export interface EngineOptions {
  modelUrl: string;
  engine: EngineChoice;
  cache: boolean;
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
    const report = opts.onProgress ?? (() => {});
    await loadWasm();
    if (opts.engine === 'webgpu' && !(typeof navigator !== 'undefined' && 'gpu' in navigator)) {
      throw new LmzError(PackageCodes.GPU_NO_ADAPTER, 'this browser has no WebGPU (navigator.gpu is missing); use engine: "cpu" or "auto"');
    }
    const pack = await loadModel(opts.modelUrl, packFingerprint(), { cache: opts.cache, onProgress: report });
    report({ phase: 'load', done: 0, total: 1 });
    let c: WasmCompressor;
    try {
      c = await WasmCompressor.create(pack, opts.engine);
    } catch (e) {
      throw toLmzError(e);
    }
    report({ phase: 'load', done: 1, total: 1 });
    const adapter = c.engine === 'webgpu' ? await adapterName(c.adapter) : c.adapter;
    return new LocalEngine(c, adapter, opts.onProgress);
  }

  /** Runs `f` after every earlier call (the wasm compressor runs one call at a time); an
   * `input` is read (a Blob, a stream) when the call's turn comes. */
  #run<T>(phase: Phase, opts: CallOptions | undefined, input: Input, f: (c: WasmCompressor, data: Uint8Array, progress: (done: number, total: number) => void) => Promise<T>): Promise<T> {
    const onProgress = opts?.onProgress ?? this.#onProgress;
    const signal = opts?.signal;
    const next = this.#queue.then(async () => {
      const c = this.#c;
      if (!c) throw new LmzError(PackageCodes.DISPOSED, 'this compressor was disposed');
      const abort = () => c.cancel();
      signal?.addEventListener('abort', abort);
      try {
        if (signal?.aborted) throw new LmzError(PackageCodes.CANCELLED, 'the call was cancelled before it started');
        const data = await readInput(input, signal);
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
