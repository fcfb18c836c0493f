// A TypeScript user of the packed package (out/site/node_modules/lmz, installed from the
// `npm pack` tarball): types.test.mjs type-checks this file with tsc. Never run.
import { Codes, createCompressor, fileToRaw, info, isLmz, LibraryCodes, LmzError, PackageCodes, rawToFile, type ByteTransform, type Compressor, type Info, type Input, type ItemResult, type Progress, type RawItem } from 'lmz';

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

// Many items in one call: results in input order in Promise.allSettled's shape, each to onItem
// as it comes; a corrupt item is rejected alone with its code.
export async function many(lz: Compressor, notes: Uint8Array[], files: Uint8Array[]): Promise<string[]> {
  const seen: number[] = [];
  const made: ItemResult[] = await lz.compressRawMany(notes, { onItem: (i) => seen.push(i) });
  const raws: RawItem[] = made.flatMap((r, i) => (r.status === 'fulfilled' ? [{ raw: r.value, length: notes[i].length }] : []));
  const titles = await lz.decompressRawMany(raws, { prefix: 80, signal: new AbortController().signal, onProgress: (p: Progress) => void p.done });
  const back = await lz.decompressMany(files, { onItem: (i, r) => void (r.status === 'rejected' ? r.reason.code : r.value.length + i) });
  await lz.compressMany(notes);
  const one: RawItem = await fileToRaw(await rawToFile(raws[0].raw, raws[0].length));
  void one;
  return [...titles, ...back].map((r) => (r.status === 'fulfilled' ? new TextDecoder().decode(r.value, { stream: true }) : r.reason.code));
}

// The types refuse what the package refuses.
// @ts-expect-error: decompressRawMany needs each stream's length
void (null as unknown as Compressor).decompressRawMany([new Uint8Array(3)]);
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
