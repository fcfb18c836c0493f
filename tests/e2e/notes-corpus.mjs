// Short notes for the many-item tests and benchmarks: paragraphs of Canterbury's lcet10 (a
// report, held out from the demo's samples) of 120–400 bytes, in file order, with the file's
// CRLF line ends made LF (as a note typed in a browser has them).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const CORPUS = process.env.LMZ_CORPUS ?? '/work/shared/corpus';
export const LCET10 = join(CORPUS, 'canterbury/lcet10.txt');

/** The first `n` paragraphs of lcet10 of 120–400 bytes (ASCII text). */
export function lcetNotes(n = 40, path = LCET10) {
  const text = readFileSync(path, 'latin1').replace(/\r\n/g, '\n');
  const notes = text
    .split(/\n[ \t]*\n/)
    .map((p) => p.trim())
    .filter((p) => p.length >= 120 && p.length <= 400);
  if (notes.length < n) throw new Error(`${path} has ${notes.length} paragraphs of 120–400 bytes, not ${n}`);
  return notes.slice(0, n);
}
