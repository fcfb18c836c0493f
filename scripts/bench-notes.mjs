#!/usr/bin/env node
// Notes benchmark (issue 7): paragraphs of a corpus text stored one at a time as the notes
// extension stores them, against brotli -11 and gzip -9 of each paragraph alone.
//
// What a note costs in the extension is its raw stream (tag, check16, coder output) plus its
// length as a varint (www/extension/src/store.js, storedBytes). The CLI's compact file of the
// same text is that plus the fingerprint's first 2 bytes (docs/FORMAT.md; the extension's
// export is exactly this file, and tests/e2e/extension.test.mjs checks that the CLI makes the
// same bytes), so a note's stored size = `lmz -c` size − 2. The CLI is used because it is
// the fastest engine here; every engine makes the same bytes.
//
//   node scripts/bench-notes.mjs [--select shortest|notes] [--count 40] [TEXT]
//     shortest: the COUNT shortest paragraphs (split on blank lines, trimmed, non-empty)
//     notes:    the COUNT shortest paragraphs of at least 200 bytes (note-sized prose)
//   LMZ_BIN: the CLI (default: $CARGO_TARGET_DIR/release/lmz, else …/ci/lmz)
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const select = opt('--select', 'shortest');
const count = Number(opt('--count', '40'));
const file = args[0] ?? new URL('../../shared/corpus/canterbury/alice29.txt', import.meta.url).pathname;
if (!['shortest', 'notes'].includes(select) || !(count > 0)) {
  console.error('usage: bench-notes.mjs [--select shortest|notes] [--count N] [TEXT]');
  process.exit(2);
}
const target = process.env.CARGO_TARGET_DIR ?? join(process.env.HOME, '.cache/lmz/target');
const bin = process.env.LMZ_BIN ?? [join(target, 'release/lmz'), join(target, 'ci/lmz')].find(existsSync);
if (!bin) {
  console.error(`no lmz CLI under ${target} (release/ or ci/): build it, or set LMZ_BIN`);
  process.exit(1);
}

const text = readFileSync(file);
// Paragraphs: split on blank lines (CRLF or LF), trimmed of surrounding white space, as bytes.
const paragraphs = text
  .toString('latin1')
  .split(/\r?\n[ \t]*\r?\n/)
  .map((p) => p.replace(/^\s+|\s+$/g, ''))
  .filter((p) => p.length > 0)
  .map((p) => Buffer.from(p, 'latin1'));
const pool = select === 'notes' ? paragraphs.filter((p) => p.length >= 200) : paragraphs;
// Stable: equal lengths keep their order in the text.
const picked = pool
  .map((p, i) => ({ p, i }))
  .sort((a, b) => a.p.length - b.p.length || a.i - b.i)
  .slice(0, count)
  .map((x) => x.p);

const brotli = (b) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: b.length } }).length;
const gzip = (b) => gzipSync(b, { level: 9 }).length; // = gzip -9 -n: 10-byte header, no name

const rows = [];
for (const p of picked) {
  const compact = execFileSync(bin, ['-c'], { input: p, maxBuffer: 1 << 24 });
  if (compact[0] < 0xf8 || compact[0] > 0xfe) throw new Error(`lmz -c did not write the compact form (first byte ${compact[0].toString(16)})`);
  const back = execFileSync(bin, ['-d', '-c'], { input: compact, maxBuffer: 1 << 24 });
  if (!back.equals(p)) throw new Error('a paragraph did not round-trip');
  rows.push({ bytes: p.length, method: { 0xf8: 'stored', 0xf9: 'zstd', 0xfa: 'model', 0xfb: 'model', 0xfc: 'model', 0xfd: 'model', 0xfe: 'model' }[compact[0]], note: compact.length - 2, brotli: brotli(p), gzip: gzip(p), text: p.toString('latin1') });
  process.stderr.write('.');
}
process.stderr.write('\n');

const sum = (k) => rows.reduce((a, r) => a + r[k], 0);
const t = { bytes: sum('bytes'), note: sum('note'), brotli: sum('brotli'), gzip: sum('gzip') };
const esc = (s) => s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ').slice(0, 48);
console.log(`${rows.length} paragraphs of ${file.split('/').pop()} (${select === 'notes' ? 'the shortest of ≥ 200 bytes' : 'the shortest'}), one note each; CLI ${bin}`);
console.log('');
console.log('| paragraph | bytes | lmz note (stored) | brotli -11 | gzip -9 |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(`| ${esc(r.text)} | ${r.bytes} | ${r.note}${r.method === 'model' ? '' : ` (${r.method})`} | ${r.brotli} | ${r.gzip} |`);
console.log(`| **total** | **${t.bytes}** | **${t.note}** | **${t.brotli}** | **${t.gzip}** |`);
console.log('');
console.log(`lmz notes: ${(t.brotli / t.note).toFixed(2)}x smaller than brotli -11, ${(t.gzip / t.note).toFixed(2)}x smaller than gzip -9; ${((8 * t.note) / t.bytes).toFixed(3)} bits per byte (brotli ${((8 * t.brotli) / t.bytes).toFixed(3)}, gzip ${((8 * t.gzip) / t.bytes).toFixed(3)})`);
