// Contracts between the Rust library and the npm package that no type checker sees: the
// package's `isLmz` (web/src/format.ts, used by the demo to open a dropped file) against the
// CLI's files of every form, and against texts, which it must never take for a file; and the
// `Info` the wasm bindings build in Rust (crate/wasm/src/info.rs) against the TypeScript
// interface the package casts it to (web/src/types.ts `Info`, `ChunkInfo`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { lmz, ROOT, SITE, start } from './browser.mjs';

const FORMAT_JS = join(SITE, 'node_modules/lmz/dist/format.js');

test("isLmz knows the CLI's files of every form, and no text", async () => {
  assert.ok(existsSync(FORMAT_JS), `no installed package at ${FORMAT_JS}: run scripts/build-web.sh`);
  const { isLmz } = await import(pathToFileURL(FORMAT_JS).href);
  const text = Buffer.from('A short note about the garden chairs, and the bicycle.');
  const long = Buffer.from('The quick brown fox jumps over the lazy dog. '.repeat(12));
  const binary = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 2654435761) >>> 24));
  const files = {
    'compact, note frame (0xFE, the default for one chunk)': lmz(['-c'], text),
    'compact, adaptive bias (0xFC)': lmz(['-c', '--no-ngram'], text),
    'compact, model tables alone': lmz(['-c', '--no-adapt'], text),
    'compact, stored or zstd': lmz(['-c', '--use-model', 'never'], binary),
    'full form (several chunks)': lmz(['-c', '--chunk-tokens', '8'], long),
    'empty input': lmz(['-c'], Buffer.alloc(0)),
  };
  const tags = new Set();
  const tmp = mkdtempSync(join(tmpdir(), 'lmz-contract-'));
  try {
    for (const [what, file] of Object.entries(files)) {
      assert.ok(isLmz(file), `${what}: ${file.subarray(0, 4).toString('hex')} not taken for an lmz file`);
      tags.add(file[0]);
      // And the CLI reads what isLmz accepted.
      const path = join(tmp, 'f.lmz');
      writeFileSync(path, file);
      assert.match(lmz(['info', path]).toString(), /form:/, what);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  assert.ok(tags.has(0xfe) && tags.has(0xfc) && tags.has(0x89), `forms seen: ${[...tags].map((t) => t.toString(16))}`);
  for (const t of [text, long, Buffer.from('{"json": true}'), Buffer.from('é accented first'), Buffer.from('\u{1F600} emoji first'), Buffer.alloc(0), Buffer.from([0x89, 0x50, 0x4e, 0x47])]) {
    assert.equal(isLmz(t), false, `taken for an lmz file: ${t.subarray(0, 8).toString('hex')}`);
  }
  // The reserved compact tag is an lmz file of a later version: opened (and refused with a
  // clear code), never compressed again.
  assert.ok(isLmz(Uint8Array.of(0xff, 0, 0)) && isLmz(Uint8Array.of(0xff)));
});

/** The member names of `export interface NAME { … }` in web/src/types.ts. */
function tsMembers(name) {
  const src = readFileSync(join(ROOT, 'web/src/types.ts'), 'utf8');
  const body = src.match(new RegExp(`export interface ${name} \\{([\\s\\S]*?)\\n\\}`))?.[1];
  assert.ok(body, `no interface ${name} in web/src/types.ts`);
  return [...body.matchAll(/^ {2}(?:readonly )?(\w+)\??:/gm)].map((m) => m[1]).sort();
}

test("info(): the object Rust builds has exactly the members of the package's Info and ChunkInfo", { timeout: 5 * 60_000 }, async () => {
  const env = await start();
  try {
    const page = await env.context.newPage();
    await page.goto(env.url);
    // A full-form file (several chunks): its header writes the context policy (window, stride),
    // so every optional member is present.
    const file = lmz(['-c', '--chunk-tokens', '8'], Buffer.from('The quick brown fox jumps over the lazy dog. '.repeat(6)));
    const got = await page.evaluate(async (bytes) => {
      const { info } = await import('lmz');
      const i = await info(new Uint8Array(bytes));
      return { info: Object.keys(i).sort(), chunk: Object.keys(i.chunks[0]).sort(), form: i.form, window: i.window };
    }, [...file]);
    assert.equal(got.form, 'full');
    assert.equal(got.window, 2048);
    assert.deepEqual(got.info, tsMembers('Info'));
    assert.deepEqual(got.chunk, tsMembers('ChunkInfo'));
  } finally {
    await env.close();
  }
});
