// ESLint for the hand-written JavaScript of the repo: the demo and the extension (www/), the
// browser tests and the scripts. The package (web/) is TypeScript, checked by tsc. scripts/test.sh
// runs it (tier browser) with the copy of ESLint that tests/e2e installs.
import { createRequire } from 'node:module';

// ESLint and its configs are tests/e2e's devDependencies (one npm ci for the browser tier).
const require = createRequire(new URL('./tests/e2e/package.json', import.meta.url));
const js = require('@eslint/js');
const globals = require('globals');

export default [
  { ignores: ['**/node_modules/**', 'out/**', 'web/**', 'fuzz/**', 'tests/e2e/artifacts/**'] },
  js.configs.recommended,
  {
    files: ['www/**/*.js'],
    languageOptions: { sourceType: 'module', globals: { ...globals.browser, chrome: 'readonly' } },
  },
  {
    files: ['tests/e2e/**/*.mjs', 'scripts/**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: { ...globals.node, ...globals.browser, chrome: 'readonly' } },
  },
  { rules: { 'no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }] } },
];
