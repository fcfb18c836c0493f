// Inputs: what `compress` and `decompress` accept, and how it becomes the one buffer the
// container needs (a `.lmz` file's chunk table comes before its payloads, and compression
// cuts the whole input's tokens into chunks, so neither can start on a prefix).

import { LmzError, PackageCodes, toLmzError } from './errors.js';
import type { Input } from './types.js';

/** Appends chunks into one growing buffer (doubling), so that the result is a buffer of its
 * own that can be transferred to the worker without another copy. */
export class ByteAccumulator {
  #buf = new Uint8Array(0);
  #n = 0;

  get length(): number {
    return this.#n;
  }

  /** Copies `chunk` in (the caller may reuse its buffer afterwards). */
  push(chunk: Uint8Array): void {
    if (this.#n + chunk.length > this.#buf.length) {
      const bigger = new Uint8Array(Math.max(64 * 1024, 2 * this.#buf.length, this.#n + chunk.length));
      bigger.set(this.#buf.subarray(0, this.#n));
      this.#buf = bigger;
    }
    this.#buf.set(chunk, this.#n);
    this.#n += chunk.length;
  }

  /** The bytes, in a buffer of exactly their length (the spare capacity is given back with
   * `ArrayBuffer.prototype.transfer` where the browser has it, else copied off once). */
  take(): Uint8Array {
    const buf = this.#buf.buffer as ArrayBuffer & { transfer?: (n: number) => ArrayBuffer };
    const out = this.#n === buf.byteLength ? this.#buf : typeof buf.transfer === 'function' ? new Uint8Array(buf.transfer(this.#n)) : this.#buf.slice(0, this.#n);
    this.#buf = new Uint8Array(0);
    this.#n = 0;
    return out;
  }
}

/** A chunk written to one of the package's streams: bytes (a view of any kind, or a buffer). */
export function chunkBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  throw new LmzError(PackageCodes.INVALID_ARGUMENT, `stream chunks must be Uint8Array (or another ArrayBufferView / ArrayBuffer), not ${describe(chunk)}`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return (v as object).constructor?.name ?? 'an object';
}

/** Reads a stream to the end into one buffer of its own. Aborting `signal` cancels the
 * stream and rejects with LMZ_CANCELLED; a stream that errors rejects with LMZ_INPUT (or the
 * error's own LMZ_* code). */
export async function readStream(stream: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<Uint8Array> {
  let reader: ReadableStreamDefaultReader<Uint8Array>;
  try {
    reader = stream.getReader();
  } catch (e) {
    throw new LmzError(PackageCodes.INVALID_ARGUMENT, `cannot read the input stream: ${(e as Error)?.message ?? e} (is it locked by another reader?)`);
  }
  const acc = new ByteAccumulator();
  const cancelled = () => new LmzError(PackageCodes.CANCELLED, 'cancelled while reading the input stream');
  const abort = () => void reader.cancel(cancelled()).catch(() => {});
  signal?.addEventListener('abort', abort, { once: true });
  try {
    for (;;) {
      if (signal?.aborted) throw cancelled();
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        if (signal?.aborted) throw cancelled();
        throw inputError(e, 'the input stream failed');
      }
      if (signal?.aborted) throw cancelled();
      if (r.done) break;
      acc.push(chunkBytes(r.value));
    }
  } catch (e) {
    void reader.cancel(e).catch(() => {});
    throw e;
  } finally {
    signal?.removeEventListener('abort', abort);
    reader.releaseLock();
  }
  return acc.take();
}

function inputError(e: unknown, what: string): LmzError {
  if (e instanceof LmzError) return e;
  const l = toLmzError(e);
  if (l.code !== PackageCodes.INTERNAL) return l;
  return new LmzError(PackageCodes.INPUT, `${what}: ${(e as Error)?.message ?? e}`);
}

/** Reads a Blob (a File) into a buffer of its own. */
export async function readBlob(blob: Blob): Promise<Uint8Array> {
  try {
    return new Uint8Array(await blob.arrayBuffer());
  } catch (e) {
    throw inputError(e, 'cannot read the Blob');
  }
}

/** What an input is, checked once. */
export type InputKind = 'bytes' | 'buffer' | 'blob' | 'stream';

export function inputKind(input: unknown): InputKind {
  if (input instanceof Uint8Array) return 'bytes';
  if (input instanceof ArrayBuffer) return 'buffer';
  if (typeof Blob !== 'undefined' && input instanceof Blob) return 'blob';
  if (typeof ReadableStream !== 'undefined' && input instanceof ReadableStream) return 'stream';
  throw new LmzError(PackageCodes.INVALID_ARGUMENT, `the input must be a Uint8Array, ArrayBuffer, Blob or ReadableStream<Uint8Array>, not ${describe(input)}`);
}

/** The input as one Uint8Array, in this thread: bytes as they are (no copy), a Blob or a
 * stream read to the end. */
export async function readInput(input: Input, signal?: AbortSignal): Promise<Uint8Array> {
  switch (inputKind(input)) {
    case 'bytes':
      return input as Uint8Array;
    case 'buffer':
      return new Uint8Array(input as ArrayBuffer);
    case 'blob':
      return readBlob(input as Blob);
    case 'stream':
      return readStream(input as ReadableStream<Uint8Array>, signal);
  }
}
