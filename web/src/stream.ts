// compressStream / decompressStream: a WritableStream that collects the input and a
// ReadableStream that delivers the output, built on the engine's whole-input calls.
//
// When bytes flow (the format decides; docs/FORMAT.md):
// - compress: nothing comes out until the writable side is closed — the chunk table is
//   written before the payloads, and the chunks are cut from the whole input's tokens. Then
//   the `.lmz` file comes out as one chunk.
// - decompress: the `.lmz` file is collected whole (it is the small side), checked, and the
//   original comes out chunk by chunk in file order as each chunk is decoded (chunks of
//   16,384–32,767 tokens, ~60–120 KB of English, when the CLI or this package wrote them).
//
// Not a TransformStream: a TransformStream's transformer learns of a cancelled readable
// side only in newer browsers, and the work must stop then. Here the readable side's
// `cancel`, the writable side's `abort` and the signal all stop it, and both sides error
// with the same LmzError.

import { LmzError, PackageCodes, toLmzError } from './errors.js';
import { ByteAccumulator, chunkBytes } from './input.js';
import type { ByteTransform, CallOptions } from './types.js';

/** Runs once the input has ended: `emit` delivers output chunks; `signal` aborts. */
export type StreamWork = (input: Uint8Array, emit: (chunk: Uint8Array) => void, opts: CallOptions) => Promise<void>;

export function byteTransform(work: StreamWork, opts: CallOptions = {}): ByteTransform {
  const ac = new AbortController();
  const acc = new ByteAccumulator();
  let out!: ReadableStreamDefaultController<Uint8Array>;
  let input!: WritableStreamDefaultController;
  let settled = false;
  /** The error both sides were failed with, first wins. */
  let failure: LmzError | undefined;
  const outer = opts.signal;

  /** Errors both sides (once) and stops the work. */
  const fail = (e: LmzError) => {
    if (settled) return;
    settled = true;
    failure = e;
    ac.abort(e);
    outer?.removeEventListener('abort', onAbort);
    try {
      out.error(e);
    } catch {
      /* already closed or errored */
    }
    try {
      input.error(e);
    } catch {
      /* already closed or errored */
    }
  };
  const cancelled = (why: string, reason?: unknown) => {
    if (reason instanceof LmzError) return reason;
    const r = reason === undefined ? '' : `: ${(reason as Error)?.message ?? String(reason)}`;
    return new LmzError(PackageCodes.CANCELLED, `${why}${r}`);
  };
  const onAbort = () => fail(cancelled('the stream was cancelled through its AbortSignal'));

  const readable = new ReadableStream<Uint8Array>({
    start(c) {
      out = c;
    },
    cancel(reason) {
      fail(cancelled('the readable side was cancelled', reason));
    },
  });
  const writable = new WritableStream<Uint8Array>({
    start(c) {
      input = c;
    },
    write(chunk) {
      if (settled) return;
      acc.push(chunkBytes(chunk));
    },
    async close() {
      if (settled) return;
      try {
        const emit = (chunk: Uint8Array) => {
          if (!settled) out.enqueue(chunk);
        };
        await work(acc.take(), emit, { onProgress: opts.onProgress, signal: ac.signal, transfer: true });
      } catch (e) {
        // A cancel that stopped the work already failed both sides with its own error.
        const err = failure ?? toLmzError(e);
        fail(err);
        throw err;
      }
      if (settled) return;
      settled = true;
      outer?.removeEventListener('abort', onAbort);
      out.close();
    },
    abort(reason) {
      fail(cancelled('the writable side was aborted', reason));
    },
  });
  if (outer?.aborted) onAbort();
  else outer?.addEventListener('abort', onAbort, { once: true });
  return { readable, writable };
}
