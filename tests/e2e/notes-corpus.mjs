// Short notes for the many-item tests and benchmarks: paragraphs of Canterbury's lcet10 (a
// report, held out from the demo's samples) of 120–400 bytes, in file order from the 11th
// such paragraph (the first ten are the workshop's programme: lists of names), with the
// file's CRLF line ends made LF (as a note typed in a browser has them). The CLI's
// `lmz bench --many` in BENCHMARKS.md took the same paragraphs with CRLF.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const CORPUS = process.env.LMZ_CORPUS ?? '/work/shared/corpus';
export const LCET10 = join(CORPUS, 'canterbury/lcet10.txt');

/** `n` paragraphs of lcet10 of 120–400 bytes (ASCII text), from the 11th. */
export function lcetNotes(n = 40, path = LCET10) {
  const text = readFileSync(path, 'latin1').replace(/\r\n/g, '\n');
  const notes = text
    .split(/\n[ \t]*\n/)
    .map((p) => p.trim())
    .filter((p) => p.length >= 120 && p.length <= 400)
    .slice(10);
  if (notes.length < n) throw new Error(`${path} has ${notes.length} paragraphs of 120–400 bytes after the 10th, not ${n}`);
  return notes.slice(0, n);
}
