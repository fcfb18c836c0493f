// Messages between the worker client (client.ts) and the worker (worker.ts).

import type { ErrorData } from './errors.js';
import type { EngineChoice, EngineKind, Progress } from './types.js';

export type Method = 'compress' | 'decompress' | 'score' | 'info' | 'compressRaw' | 'decompressRaw';

export type ToWorker =
  | { type: 'init'; modelUrl: string; engine: EngineChoice; cache: boolean }
  | { type: 'call'; id: number; method: Method; data: Uint8Array; length?: number }
  | { type: 'cancel'; id: number };

export type FromWorker =
  | { type: 'ready'; engine: EngineKind; adapter: string; fingerprint: string }
  | { type: 'progress'; id: number | null; progress: Progress }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number | null; error: ErrorData };
