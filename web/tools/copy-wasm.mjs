// Copies the wasm-bindgen output (src/wasm/ and src/wasm-threads/, made by
// scripts/build-web.sh) next to the compiled package (dist/). tsc compiles src/*.ts only; the
// glue is already JS. The threaded build's glue comes with wasm-bindgen-rayon's worker script
// (under snippets/), which its pool loads by URL.
import { cpSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const need = {
  wasm: ['lmz_wasm.js', 'lmz_wasm.d.ts', 'lmz_wasm_bg.wasm', 'lmz_wasm_relaxed_bg.wasm'],
  'wasm-threads': ['lmz_wasm.js', 'lmz_wasm.d.ts', 'lmz_wasm_bg.wasm', 'lmz_wasm_simd128_bg.wasm', 'snippets'],
};
for (const [dir, files] of Object.entries(need)) {
  const src = fileURLToPath(new URL(`../src/${dir}/`, import.meta.url));
  const dst = fileURLToPath(new URL(`../dist/${dir}/`, import.meta.url));
  for (const f of files) {
    if (!existsSync(src + f)) {
      console.error(`missing ${src + f}: run scripts/build-web.sh (cargo + wasm-bindgen) first`);
      process.exit(1);
    }
    cpSync(src + f, dst + f, { recursive: true });
  }
}
