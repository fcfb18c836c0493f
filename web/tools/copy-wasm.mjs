// Copies the wasm-bindgen output (src/wasm/, made by scripts/build-web.sh) next to the
// compiled package (dist/wasm/). tsc compiles src/*.ts only; the glue is already JS.
import { cpSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const src = fileURLToPath(new URL('../src/wasm/', import.meta.url));
const dst = fileURLToPath(new URL('../dist/wasm/', import.meta.url));
for (const f of ['lmz_wasm.js', 'lmz_wasm.d.ts', 'lmz_wasm_bg.wasm', 'lmz_wasm_relaxed_bg.wasm']) {
  if (!existsSync(src + f)) {
    console.error(`missing ${src + f}: run scripts/build-web.sh (cargo + wasm-bindgen) first`);
    process.exit(1);
  }
  cpSync(src + f, dst + f);
}
