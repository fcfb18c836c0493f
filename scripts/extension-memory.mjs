#!/usr/bin/env node
// What the notes extension's model costs in memory, and what closing the idle offscreen
// document gives back: the built extension (out/extension, with its model) in headless
// Chromium with a fresh profile; one note written in the popup loads the model; then the
// offscreen document is closed as the idle timer would. Prints the resident memory (VmRSS)
// summed over the browser's process tree at each step. Needs what tests/e2e needs
// (playwright-core installed there, Debian's Chromium).
//
//   node scripts/extension-memory.mjs [EXTENSION_DIR]
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../tests/e2e/browser.mjs';
import { launch, notesApp } from '../tests/e2e/extension-lib.mjs';

const ext = process.argv[2] ?? join(ROOT, 'out/extension');
const profile = mkdtempSync(join(tmpdir(), 'lmz-ext-memory-'));

/** MB of VmRSS summed over the process whose command line names `profile` and its descendants. */
function rssMB() {
  const procs = new Map(); // pid → { ppid, kb, cmd }
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const ppid = Number(readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      const kb = Number(readFileSync(`/proc/${p}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1] ?? 0);
      procs.set(Number(p), { ppid, kb, cmd: readFileSync(`/proc/${p}/cmdline`, 'utf8') });
    } catch {
      // gone meanwhile
    }
  }
  const roots = [...procs].filter(([, v]) => v.cmd.includes(profile) && !v.cmd.includes('--type=')).map(([p]) => p);
  const inTree = (p) => {
    for (let q = p; q > 1; q = procs.get(q)?.ppid ?? 0) if (roots.includes(q)) return true;
    return false;
  };
  let kb = 0;
  for (const [p, v] of procs) if (inTree(p)) kb += v.kb;
  return Math.round(kb / 1024);
}

const launched = await launch(ext, profile);
const app = notesApp(launched);
try {
  const page = await app.open();
  await page.waitForTimeout(2000);
  const before = rssMB();
  await app.write(page, 'A note that makes the offscreen document load the model.');
  await app.settled(page, 1);
  const loaded = rssMB();
  await app.closeOffscreen();
  await page.waitForTimeout(2000);
  const closed = rssMB();
  console.log(`browser RSS: ${before} MB before the model, ${loaded} MB with it loaded (+${loaded - before}), ${closed} MB 2 s after the offscreen document closed (${closed - loaded})`);
} finally {
  await launched.ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
