// A TypeScript user of the packed package (out/site/node_modules/lmz, installed from the
// `npm pack` tarball): types.test.mjs type-checks this file with tsc. Never run.
import { createCompressor, info, LmzError, PackageCodes, type Compressor, type Info, type Progress } from 'lmz';

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

// The types refuse what the package refuses.
// @ts-expect-error: not an engine
void createCompressor({ engine: 'vulkan' });
// @ts-expect-error: compress takes bytes, not a string
void (null as unknown as Compressor).compress('text');
