// The public types of the package: one interface, two implementations (a Web Worker client
// and the in-thread engine).

import type { LmzError } from './errors.js';

/** Which engine runs the model. Every engine gives the same bytes. */
export type EngineKind = 'webgpu' | 'cpu';
/** What to ask for: `auto` takes a hardware WebGPU adapter when there is one, else wasm-CPU. */
export type EngineChoice = 'auto' | EngineKind;

/** Phases a progress report can be in. */
export type Phase = 'download' | 'verify' | 'load' | 'compress' | 'decompress' | 'score';

/** The steps of loading the model, each timed (`Progress.step`, `Progress.ms`): `worker` (the
 * Web Worker's start, until it runs), `wasm` (the wasm module fetched, compiled and
 * instantiated), `read` (the model from Cache Storage) or `download`, `hash` (its SHA-256),
 * `copy` (into wasm memory, while it is hashed), `parse` (the pack into the model), `codec`
 * (the tokenizer), `engine` (the wasm-CPU engine's weight layout, or the WebGPU device and
 * the upload of the weights), `threads` (the wait for the threaded build's workers, which
 * start while the model loads), `store` (a download into Cache Storage, while the model
 * loads), `adapter` (the WebGPU adapter's name). Steps overlap (the wasm module loads while
 * the model is read), so they need not add up to the wait. */
export type LoadStep = 'worker' | 'wasm' | 'read' | 'download' | 'hash' | 'copy' | 'parse' | 'codec' | 'engine' | 'threads' | 'store' | 'adapter';

export interface Progress {
  phase: Phase;
  /** Work done: bytes (download, verify, compress, decompress) or tokens (score). */
  done: number;
  /** Total work; 0 when unknown (a download without Content-Length). */
  total: number;
  /** Set when the model came from Cache Storage (`verify`), or when a cached copy was found
   * corrupt and is being downloaded again (`download`). */
  note?: 'cached' | 'cache-corrupt';
  /** Set while the model loads, when one of its steps has ended: which. Such a report
   * repeats the phase and amounts of the one before it (before any: `load`, 0 of 1). */
  step?: LoadStep;
  /** With `step`: how long that step took, in milliseconds. */
  ms?: number;
}

export interface CompressorOptions {
  /** Where the model pack is. Default: `smollm2-135m.lmz.safetensors` next to the package's
   * `index.js`. Fetched once, stored in Cache Storage, SHA-256-checked before every use. */
  modelUrl?: string | URL;
  /** Default `auto`. */
  engine?: EngineChoice;
  /** Run in a Web Worker (default `true`): the page stays responsive while the model runs. */
  worker?: boolean;
  /** Keep the model in Cache Storage (default `true`). */
  cache?: boolean;
  /** Threads of the wasm-CPU engine (default: `navigator.hardwareConcurrency`). More than one
   * needs the worker (`worker: true`), a cross-origin-isolated page (served with
   * `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy:
   * require-corp`) and relaxed SIMD (Chromium 114+); elsewhere the engine runs on 1 thread.
   * `adapter` says how many it got. The bytes never depend on it. */
  threads?: number;
  /** Download, verification and model-loading progress; also the default for calls. */
  onProgress?: (p: Progress) => void;
}

/** What `compress` and `decompress` take. The container needs the whole input before it
 * can start (a `.lmz` file's chunk table comes before its payloads; compression cuts the
 * whole input's tokens into chunks), so a Blob is read and a stream is read to its end
 * first. With the worker (the default) a Blob crosses to it by reference and is read there;
 * a stream is read in the calling thread into one buffer, which is then transferred. */
export type Input = Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array>;

export interface CallOptions {
  /** Aborting rejects the call (or errors the stream) with `LMZ_CANCELLED` and stops the work. */
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** Hand a Uint8Array's or ArrayBuffer's memory to the worker instead of copying it
   * (zero-copy; your buffer is detached: `byteLength` 0 afterwards). Only where the view
   * covers its whole ArrayBuffer; otherwise it is copied as without this option. No effect
   * with `worker: false` (nothing is copied there). Default `false`. */
  transfer?: boolean;
}

/** One item's outcome in a many-item call, in the shape of `Promise.allSettled`'s elements:
 * its bytes, or why it failed (an `LmzError` with the item's own `LMZ_*` code). */
export type ItemResult<T = Uint8Array> = { status: 'fulfilled'; value: T } | { status: 'rejected'; reason: LmzError };

/** Options of the many-item calls (`compressMany`, `decompressMany`, …). */
export interface ManyOptions {
  /** Aborting rejects the whole call with `LMZ_CANCELLED` and stops the work (items already
   * handed to `onItem` stay delivered). */
  signal?: AbortSignal;
  /** Progress over all items: bytes out (decompressing) or in (compressing). */
  onProgress?: (p: Progress) => void;
  /** Each item's result as soon as it is known, in any order (`index`: its place in the
   * input; the same object is in the final array). An exception thrown here does not stop
   * the call; it is rethrown on its own task (it shows as an uncaught error). */
  onItem?: (index: number, result: ItemResult) => void;
}

/** A raw stream and the length of its original (what `compressRaw` made, and the length the
 * embedder kept). */
export interface RawItem {
  raw: Uint8Array;
  length: number;
}

export interface RawManyOptions extends ManyOptions {
  /** Stop each model-coded stream once it has spelled at least this many bytes (a whole
   * number): its value is then the start of the original (at least `prefix` bytes, unless
   * the original is shorter; it may end inside a UTF-8 character — decode it with
   * `TextDecoder`'s `stream: true`) and is **not checked** (the check covers the whole
   * original). Values of the stated length were checked. For titles and previews, at a
   * fraction of the work. */
  prefix?: number;
}

/** A pair of streams, like `CompressionStream`: write bytes into `writable`, read the result
 * from `readable`; `source.pipeThrough(pair)` works. Chunks may be any ArrayBufferView or
 * ArrayBuffer. See web/README.md, "Streams", for when bytes come out and what memory is held. */
export interface ByteTransform {
  readonly writable: WritableStream<Uint8Array>;
  readonly readable: ReadableStream<Uint8Array>;
}

export interface ChunkInfo {
  method: 'stored' | 'zstd' | 'model';
  originalLength: number;
  storedLength: number;
}

/** What a `.lmz` header says (`lmz info` in the CLI). */
export interface Info {
  form: 'full' | 'compact';
  version: number;
  /** Hex: the model pack's SHA-256 (full form) or its first 2 bytes (compact form). */
  fingerprint: string;
  originalLength: number;
  compressedLength: number;
  checksum: number;
  /** The context policy (full form); `undefined` means the model's default. */
  window?: number;
  stride?: number;
  /** Whether the model's tables are reweighted by the adaptive bias learned from the text. */
  adapt: boolean;
  /** Whether the n-gram mixer of the text's repeats follows the bias. */
  ngram: boolean;
  /** Bits per byte of the original, every header byte included. */
  bpb: number;
  chunks: ChunkInfo[];
}

/** Bits spent per token: token `i` spells the next `lengths[i]` bytes and costs `bits[i]`. */
export interface TokenScores {
  lengths: Uint32Array;
  bits: Float64Array;
}

export interface Compressor {
  /** The engine that actually runs. */
  readonly engine: EngineKind;
  /** The WebGPU adapter's description, or `wasm32 CPU (RelaxedSimd), 1 thread` (the kernels
   * of the wasm build this browser loaded: `RelaxedSimd` where it has relaxed SIMD, else
   * `Simd128`). */
  readonly adapter: string;
  /** SHA-256 (hex) of the model pack: the fingerprint written into files. */
  readonly fingerprint: string;
  /** Compresses the input into a `.lmz` file (the CLI's bytes for the same input). */
  compress(data: Input, opts?: CallOptions): Promise<Uint8Array>;
  /** Decompresses a `.lmz` file (also the CLI's); the checksum is verified before it resolves. */
  decompress(data: Input, opts?: CallOptions): Promise<Uint8Array>;
  /** `compress` as a stream pair: `file.stream().pipeThrough(lz.compressStream())`. The
   * `.lmz` bytes come out only after the input has ended (the format puts the chunk table
   * before the payloads), as one chunk. Cancelling the readable side, aborting the writable
   * side or aborting `signal` stops the work; both sides then error with `LMZ_CANCELLED`. */
  compressStream(opts?: CallOptions): ByteTransform;
  /** `decompress` as a stream pair. The `.lmz` file is read whole first (it is the small
   * side), checked, then the original comes out chunk by chunk in file order as each chunk
   * is decoded. The whole-file checksum can only be verified after the last chunk: a
   * mismatch errors the stream (`LMZ_FORMAT_CHECKSUM`) after the chunks before it were
   * delivered, so treat an errored stream as a failed decode. Cancellation as for
   * `compressStream`. */
  decompressStream(opts?: CallOptions): ByteTransform;
  info(data: Uint8Array): Promise<Info>;
  /** A raw stream (docs/FORMAT.md, "Raw stream"): 3 bytes over the coder's output, for an
   * embedder that keeps the original length itself (the notes extension). It is not a file:
   * `rawToFile(raw, length)` makes the standalone `.lmz` of it without running the model. */
  compressRaw(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array>;
  /** Decodes a raw stream of exactly `length` original bytes (a wrong length is an error:
   * `LMZ_FORMAT_CHECKSUM` or `LMZ_FORMAT_CORRUPT`). */
  decompressRaw(raw: Uint8Array, length: number, opts?: CallOptions): Promise<Uint8Array>;
  /** Compresses many inputs in one call (messages, rows, notes): element `i` of the result is
   * exactly what `compress` makes of input `i`, or its error. Results in input order;
   * `onItem` hears of each as soon as it is made. */
  compressMany(inputs: readonly Uint8Array[], opts?: ManyOptions): Promise<ItemResult[]>;
  /** Decompresses many `.lmz` files in one call; short files (one model chunk: every text
   * up to ~60 KB) decode in lock-step — one forward pass per step for all of them, several
   * times faster than one after the other (web/README.md). A corrupt file is `rejected` with
   * its `LMZ_FORMAT_*` code and the others still decode. Results in input order; `onItem`
   * hears of each as soon as it is checked. */
  decompressMany(files: readonly Uint8Array[], opts?: ManyOptions): Promise<ItemResult[]>;
  /** `compressRaw` of many inputs in one call (results in input order). */
  compressRawMany(inputs: readonly Uint8Array[], opts?: ManyOptions): Promise<ItemResult[]>;
  /** `decompressRaw` of many raw streams in one call, in lock-step; with `prefix`, only the
   * start of each (titles). Results in input order. */
  decompressRawMany(items: readonly RawItem[], opts?: RawManyOptions): Promise<ItemResult[]>;
  /** Per-token cost of `data` under the model (for a heat map); runs the model once. */
  score(data: Uint8Array, opts?: CallOptions): Promise<TokenScores>;
  /** Frees the engine (terminates the worker); later calls reject with `LMZ_DISPOSED`. */
  dispose(): void;
}
