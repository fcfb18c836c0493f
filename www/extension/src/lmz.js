// The lmz npm package, as this extension consumes it: scripts/build-extension.sh installs the
// packed tarball (out/lmz-VERSION.tgz) into the build's node_modules, like any user would.
// Extension pages cannot use an inline import map (the CSP allows no inline script), so the
// bare name `lmz` is resolved here, once.
export * from './node_modules/lmz/dist/index.js';
