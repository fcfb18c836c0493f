// The packed package's TypeScript types, as a user sees them: tsc (web/'s devDependency)
// type-checks consumer/consumer.ts against out/site/node_modules/lmz (the installed tarball).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, SITE } from './browser.mjs';

test('the packed package type-checks from a TypeScript consumer', () => {
  const tsc = join(ROOT, 'web/node_modules/typescript/bin/tsc');
  assert.ok(existsSync(tsc), 'no TypeScript in web/node_modules: run npm ci in web/ (scripts/build-web.sh does)');
  assert.ok(existsSync(join(SITE, 'node_modules/lmz/dist/index.d.ts')), 'no installed package: run scripts/build-web.sh');
  const r = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tests/e2e/consumer/tsconfig.json')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
