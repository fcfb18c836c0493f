// Messages between the worker client (client.ts) and the worker (worker.ts). The client
// sends one call at a time; the worker answers it with progress, chunks (decompressChunks),
// items (the many-item calls: each item's result as it comes; the final result is then
// empty, the client puts the items in order) and one result or error.

import type { ErrorData } from './errors.js';
import type { EngineChoice, EngineKind, Progress } from './types.js';

export type Method = 'compress' | 'decompress' | 'decompressChunks' | 'score' | 'info' | 'compressRaw' | 'decompressRaw' | ManyMethod;
export type ManyMethod = 'compressMany' | 'decompressMany' | 'compressRawMany' | 'decompressRawMany';

export type ToWorker =
  /** `spawned`: when the client created the worker (`performance.timeOrigin + now()`). */
  | { type: 'init'; modelUrl: string; engine: EngineChoice; cache: boolean; threads?: number; spawned?: number }
  /** `data`: bytes (transferred) or a Blob (by reference; read in the worker). */
  | { type: 'call'; id: number; method: Exclude<Method, ManyMethod>; data: Uint8Array | Blob; length?: number }
  /** A many-item call: `items` transferred; `lengths` and `prefix` for decompressRawMany. */
  | { type: 'call'; id: number; method: ManyMethod; items: Uint8Array[]; lengths?: number[]; prefix?: number }
  | { type: 'cancel'; id: number };

export type FromWorker =
  | { type: 'ready'; engine: EngineKind; adapter: string; fingerprint: string }
  | { type: 'progress'; id: number | null; progress: Progress }
  /** One chunk of a decompressChunks call's output (transferred). */
  | { type: 'chunk'; id: number; bytes: Uint8Array }
  /** One item of a many-item call: its bytes (transferred) or its error. */
  | { type: 'item'; id: number; index: number; value?: Uint8Array; error?: ErrorData }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number | null; error: ErrorData };
