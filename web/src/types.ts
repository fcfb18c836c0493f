// The public types of the package: one interface, two implementations (a Web Worker client
// and the in-thread engine).

/** Which engine runs the model. Every engine gives the same bytes. */
export type EngineKind = 'webgpu' | 'cpu';
/** What to ask for: `auto` takes a hardware WebGPU adapter when there is one, else wasm-CPU. */
export type EngineChoice = 'auto' | EngineKind;

/** Phases a progress report can be in. */
export type Phase = 'download' | 'verify' | 'load' | 'compress' | 'decompress' | 'score';

export interface Progress {
  phase: Phase;
  /** Work done: bytes (download, verify, compress, decompress) or tokens (score). */
  done: number;
  /** Total work; 0 when unknown (a download without Content-Length). */
  total: number;
  /** Set when the model came from Cache Storage (`verify`), or when a cached copy was found
   * corrupt and is being downloaded again (`download`). */
  note?: 'cached' | 'cache-corrupt';
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
  /** Download, verification and model-loading progress; also the default for calls. */
  onProgress?: (p: Progress) => void;
}

export interface CallOptions {
  /** Aborting rejects the call with `LMZ_CANCELLED` and stops the work. */
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
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
  /** The WebGPU adapter's description, or `wasm32 CPU`. */
  readonly adapter: string;
  /** SHA-256 (hex) of the model pack: the fingerprint written into files. */
  readonly fingerprint: string;
  compress(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array>;
  decompress(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array>;
  info(data: Uint8Array): Promise<Info>;
  /** A raw stream (docs/FORMAT.md, "Raw stream"): 3 bytes over the coder's output, for an
   * embedder that keeps the original length itself (the notes extension). It is not a file:
   * `rawToFile(raw, length)` makes the standalone `.lmz` of it without running the model. */
  compressRaw(data: Uint8Array, opts?: CallOptions): Promise<Uint8Array>;
  /** Decodes a raw stream of exactly `length` original bytes (a wrong length is an error:
   * `LMZ_FORMAT_CHECKSUM` or `LMZ_FORMAT_CORRUPT`). */
  decompressRaw(raw: Uint8Array, length: number, opts?: CallOptions): Promise<Uint8Array>;
  /** Per-token cost of `data` under the model (for a heat map); runs the model once. */
  score(data: Uint8Array, opts?: CallOptions): Promise<TokenScores>;
  /** Frees the engine (terminates the worker); later calls reject with `LMZ_DISPOSED`. */
  dispose(): void;
}
