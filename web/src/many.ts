// The many-item calls' arguments and results, shared by the in-thread engine and the worker
// client: checked inputs, the `Promise.allSettled` shape of each item's outcome, and the
// user's `onItem` kept from breaking the call.

import { LmzError, PackageCodes, toLmzError } from './errors.js';
import type { ItemResult, RawItem } from './types.js';

/** `items` as an array of Uint8Arrays; anything else is LMZ_INVALID_ARGUMENT (thrown). */
export function byteItems(items: unknown, what: string): Uint8Array[] {
  if (!Array.isArray(items)) throw new LmzError(PackageCodes.INVALID_ARGUMENT, `${what} must be an array of Uint8Array`);
  items.forEach((b, i) => {
    if (!(b instanceof Uint8Array)) throw new LmzError(PackageCodes.INVALID_ARGUMENT, `${what}[${i}] is not a Uint8Array`);
  });
  return items as Uint8Array[];
}

/** Raw items as two arrays (streams, lengths), checked. Lengths must be whole numbers ≥ 0;
 * `prefix`, when given, too. */
export function rawItems(items: unknown, prefix: unknown): { raws: Uint8Array[]; lengths: number[]; prefix?: number } {
  if (!Array.isArray(items)) throw new LmzError(PackageCodes.INVALID_ARGUMENT, 'items must be an array of { raw, length }');
  const raws: Uint8Array[] = [];
  const lengths: number[] = [];
  const whole = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  (items as RawItem[]).forEach((it, i) => {
    if (!(it?.raw instanceof Uint8Array)) throw new LmzError(PackageCodes.INVALID_ARGUMENT, `items[${i}].raw is not a Uint8Array`);
    if (!whole(it.length)) throw new LmzError(PackageCodes.INVALID_ARGUMENT, `items[${i}].length ${JSON.stringify(it.length)}: the original length must be a whole number ≥ 0`);
    raws.push(it.raw);
    lengths.push(it.length);
  });
  if (prefix !== undefined && !whole(prefix)) throw new LmzError(PackageCodes.INVALID_ARGUMENT, `prefix ${JSON.stringify(prefix)}: use a whole number of bytes ≥ 0`);
  return { raws, lengths, prefix: prefix as number | undefined };
}

/** An element of the wasm bindings' result (bytes, or a JS Error with its LMZ_* code). */
export function itemResult(v: unknown): ItemResult {
  return v instanceof Uint8Array ? { status: 'fulfilled', value: v } : { status: 'rejected', reason: toLmzError(v) };
}

/** The user's `onItem`, made safe to call from inside the engine: what it throws is rethrown
 * on a task of its own, and the call goes on. */
export function safeOnItem(f: ((index: number, r: ItemResult) => void) | undefined): ((index: number, r: ItemResult) => void) | undefined {
  if (!f) return undefined;
  return (index, r) => {
    try {
      f(index, r);
    } catch (e) {
      setTimeout(() => {
        throw e;
      });
    }
  };
}
