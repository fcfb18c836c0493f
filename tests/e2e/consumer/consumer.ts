// A TypeScript user of the packed package (out/site/node_modules/lmz, installed from the
// `npm pack` tarball): types.test.mjs type-checks this file with tsc. Never run.
import { Codes, createCompressor, info, isLmz, LibraryCodes, LmzError, PackageCodes, type ByteTransform, type Compressor, type Info, type Input, type Progress } from 'lmz';

export async function roundTrip(bytes: Uint8Array): Promise<Uint8Array> {
  const seen: Progress[] = [];
  const lz: Compressor = await createCompressor({ modelUrl: '/models/smollm2-135m.lmz.safetensors', engine: 'auto', worker: true, onProgress: (p) => seen.push(p) });
  const engine: 'webgpu' | 'cpu' = lz.engine;
  const ac = new AbortController();
  const file: Uint8Array = await lz.compress(bytes, { signal: ac.signal });
  const head: Info = await lz.info(file);
  const bpb: number = head.bpb + (await info(file)).chunks[0].storedLength;
  try {
    return await lz.decompress(file);
  } catch (e) {
    if (e instanceof LmzError && e.code === PackageCodes.CANCELLED) return new Uint8Array();
    throw e;
  } finally {
    lz.dispose();
    void engine;
    void bpb;
  }
}

// Inputs and streams: a File through compressStream and back through decompressStream.
export async function streams(lz: Compressor, file: File): Promise<Blob> {
  const ac = new AbortController();
  const pair: ByteTransform = lz.compressStream({ signal: ac.signal, onProgress: (p) => void p.done });
  const lmzStream: ReadableStream<Uint8Array> = file.stream().pipeThrough(pair);
  const back = lmzStream.pipeThrough(lz.decompressStream());
  const inputs: Input[] = [file, new ArrayBuffer(4), new Uint8Array(4), file.stream()];
  for (const i of inputs) await lz.compress(i, { transfer: true });
  await lz.decompress(await file.arrayBuffer());
  const chunks: Uint8Array[] = [];
  const reader = back.getReader();
  for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(r.value);
  return new Blob(chunks as BlobPart[]);
}

// The types refuse what the package refuses.
// @ts-expect-error: not an engine
void createCompressor({ engine: 'vulkan' });
// @ts-expect-error: compress takes bytes, not a string
void (null as unknown as Compressor).compress('text');
// @ts-expect-error: streams carry bytes, not strings
void (null as unknown as Compressor).compressStream().writable.getWriter().write('text');

// Codes: the library's (generated from Rust), the package's, and both; isLmz needs no engine.
export function classify(e: unknown, bytes: Uint8Array): string {
  const checksum: 'LMZ_FORMAT_CHECKSUM' = LibraryCodes.FORMAT_CHECKSUM;
  const quota: 'LMZ_STORAGE_QUOTA' = Codes.STORAGE_QUOTA;
  const lmzFile: boolean = isLmz(bytes);
  if (e instanceof LmzError && (e.code === checksum || e.code === quota)) return lmzFile ? 'damaged lmz file' : 'not lmz';
  return e instanceof LmzError && e.code === Codes.FORMAT_BAD_MAGIC ? 'not lmz' : 'other';
}
