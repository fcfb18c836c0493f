// Errors: one class, `LmzError`, whose `name` and `code` are a stable `LMZ_*` string.
//
// The codes of the Rust library (`Error::code()` in crate/src/error.rs) come through the wasm
// boundary as JS Errors with that name; the package adds its own codes below. Across the
// worker an error travels as `{ name, code, message }` and is rebuilt into an `LmzError`.

import { LibraryCodes } from './codes.js';

/** Codes the package itself raises (the library's are `LibraryCodes`, generated from
 * crate/src/error.rs; some codes are raised by both, with the same meaning). */
export const PackageCodes = {
  /** The model could not be downloaded (HTTP status, network). */
  FETCH: 'LMZ_FETCH',
  /** The downloaded weights are not the pinned model pack (SHA-256 mismatch). */
  HASH_MISMATCH: 'LMZ_HASH_MISMATCH',
  /** Cache Storage has no room for the model; pass `cache: false` to run without caching. */
  STORAGE_QUOTA: 'LMZ_STORAGE_QUOTA',
  /** `engine: 'webgpu'` was asked for and this browser has no WebGPU. */
  GPU_NO_ADAPTER: 'LMZ_GPU_NO_ADAPTER',
  /** The call was cancelled through its AbortSignal. */
  CANCELLED: 'LMZ_CANCELLED',
  /** The compressor was disposed. */
  DISPOSED: 'LMZ_DISPOSED',
  /** The worker failed to start or died. */
  WORKER: 'LMZ_WORKER',
  /** A bug: a panic inside wasm, or an error without a code. The instance is unusable. */
  INTERNAL: 'LMZ_INTERNAL',
  /** Reading the input failed: its ReadableStream errored, or its Blob could not be read. */
  INPUT: 'LMZ_INPUT',
  /** Bad arguments to the package. */
  INVALID_ARGUMENT: 'LMZ_INVALID_ARGUMENT',
} as const;

/** Every code an `LmzError` of this package can carry: the library's and the package's. */
export const Codes = { ...LibraryCodes, ...PackageCodes } as const;

export class LmzError extends Error {
  /** A stable `LMZ_*` code: match on this, not on the message. */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = code;
    this.code = code;
  }
}

/** What crosses `postMessage`. */
export interface ErrorData {
  name: string;
  code: string;
  message: string;
}

/** Any thrown value → an LmzError (a wasm error keeps its code; anything else is INTERNAL). */
export function toLmzError(e: unknown): LmzError {
  if (e instanceof LmzError) return e;
  if (e && typeof e === 'object') {
    const o = e as { code?: unknown; name?: unknown; message?: unknown };
    const message = typeof o.message === 'string' ? o.message : String(e);
    if (typeof o.code === 'string' && o.code.startsWith('LMZ_')) return new LmzError(o.code, message);
    if (o.name === 'QuotaExceededError') return new LmzError(PackageCodes.STORAGE_QUOTA, message);
    if (o.name === 'AbortError') return new LmzError(PackageCodes.CANCELLED, message);
    return new LmzError(PackageCodes.INTERNAL, `${typeof o.name === 'string' ? o.name + ': ' : ''}${message}`);
  }
  return new LmzError(PackageCodes.INTERNAL, String(e));
}

export function errorData(e: unknown): ErrorData {
  const l = toLmzError(e);
  return { name: l.name, code: l.code, message: l.message };
}

export function fromErrorData(d: ErrorData): LmzError {
  return new LmzError(d.code, d.message);
}
