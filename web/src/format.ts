// What a file is, from its first bytes: no wasm, no model (docs/FORMAT.md).

/** Whether `bytes` are an lmz file (by their first bytes, no wasm needed): the full form's magic
 * `89 4C 4D 5A`, or a compact form's tag `F8`–`FF` (`FF` is reserved for a later compact
 * version: opening one gives `LMZ_FORMAT_UNSUPPORTED_VERSION`, which says more than
 * compressing it would). No UTF-8 text starts with either. docs/FORMAT.md; tests/e2e/contract.test.mjs
 * checks it against the CLI's files of every form. */
export function isLmz(bytes: Uint8Array): boolean {
  if (bytes.length === 0) return false;
  if (bytes[0] >= 0xf8) return true;
  return bytes.length >= 4 && bytes[0] === 0x89 && bytes[1] === 0x4c && bytes[2] === 0x4d && bytes[3] === 0x5a;
}
