// lmz for the browser: lossless compression driven by SmolLM2-135M, bit-identical on WebGPU,
// wasm-CPU and the native CLI.
//
//   const lz = await createCompressor({ modelUrl });
//   const file = await lz.compress(bytes);       // Uint8Array → .lmz bytes
//   const back = await lz.decompress(file);      // .lmz bytes (also from the CLI) → original
//
// The weights (99 MB) are fetched once from `modelUrl`, kept in Cache Storage and SHA-256-
// checked against the fingerprint this build pins before every use.

import { LocalEngine, readFileToRaw, readInfo, readRawToFile } from './engine.js';
import { WorkerClient } from './client.js';
import { LmzError, PackageCodes } from './errors.js';
import type { Compressor, CompressorOptions, Info, RawItem } from './types.js';

export { Codes, LmzError, PackageCodes } from './errors.js';
export { LibraryCodes } from './codes.js';
export { CACHE_NAME } from './model.js';
export { isLmz } from './format.js';
export type { ByteTransform, CallOptions, ChunkInfo, Compressor, CompressorOptions, EngineChoice, EngineKind, Info, Input, ItemResult, LoadStep, ManyOptions, Phase, Progress, RawItem, RawManyOptions, TokenScores } from './types.js';

/** The model pack's file name; the default `modelUrl` is this name next to the package. */
export const MODEL_FILE = 'smollm2-135m.lmz.safetensors';

/** Loads the model (download with progress, or Cache Storage), checks it and opens an engine. */
export async function createCompressor(opts: CompressorOptions = {}): Promise<Compressor> {
  const engine = opts.engine ?? 'auto';
  if (!['auto', 'webgpu', 'cpu'].includes(engine)) {
    throw new LmzError(PackageCodes.INVALID_ARGUMENT, `engine ${JSON.stringify(engine)}: use 'auto', 'webgpu' or 'cpu'`);
  }
  const base = typeof location !== 'undefined' ? location.href : import.meta.url;
  const modelUrl = new URL(opts.modelUrl ?? new URL(MODEL_FILE, import.meta.url), base).href;
  if (opts.threads !== undefined && !(Number.isInteger(opts.threads) && opts.threads >= 1)) {
    throw new LmzError(PackageCodes.INVALID_ARGUMENT, `threads ${JSON.stringify(opts.threads)}: use a whole number ≥ 1`);
  }
  const o = { modelUrl, engine, cache: opts.cache ?? true, threads: opts.threads, onProgress: opts.onProgress };
  return (opts.worker ?? true) ? WorkerClient.create(o) : LocalEngine.create(o);
}

/** What a `.lmz` file's header says; needs the wasm module but no model. */
export function info(data: Uint8Array): Promise<Info> {
  return readInfo(data);
}

/** The standalone `.lmz` file (compact form) of a raw stream that `compressRaw` made from
 * `length` bytes: what `lmz -d` and `decompress` open. Runs no model (needs the wasm module). */
export function rawToFile(raw: Uint8Array, length: number): Promise<Uint8Array> {
  return readRawToFile(raw, length);
}

/** The raw stream inside a compact `.lmz` file and its original length — the inverse of
 * `rawToFile`, for an embedder that stores raw streams (the notes extension importing CLI
 * files keeps their coding as it is). Runs no model; checks only the header:
 * `LMZ_FORMAT_MODEL_MISMATCH` for another model pack's file, `LMZ_FORMAT_CORRUPT` for a
 * full-form file (several chunks or a long text: not one raw stream). Damaged payload bytes
 * show when the stream is decoded (`decompressRaw`: its check). */
export function fileToRaw(file: Uint8Array): Promise<RawItem> {
  return readFileToRaw(file);
}
