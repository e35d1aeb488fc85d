/**
 * kiln's numeric assertions (no third-party test library): exact byte equality with the first
 * mismatches reported, element-wise closeness, and relative Frobenius error.
 *
 * @module
 */

/** Thrown by kiln's numeric assertions. */
export class NumericAssertionError extends Error {
  override name = "NumericAssertionError";
}

type Num = ArrayLike<number>;

/** ‖a − ref‖ / ‖ref‖ in float64. NaN anywhere gives NaN (which fails every bound). */
export function relFrobenius(a: Num, ref: Num): number {
  if (a.length !== ref.length) {
    throw new NumericAssertionError(`length ${a.length} vs reference ${ref.length}`);
  }
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return Math.sqrt(num) / Math.sqrt(den || 1);
}

/** Assert ‖a − ref‖ / ‖ref‖ ≤ bound. Returns the error. */
export function assertRelError(a: Num, ref: Num, bound: number, what = "result"): number {
  const e = relFrobenius(a, ref);
  if (!(e <= bound)) throw new NumericAssertionError(`${what}: relative Frobenius error ${e} > ${bound}`);
  return e;
}

/** Assert every element is exactly equal (NaN equals NaN). Reports the count and the first mismatches. */
export function assertExactlyEqual(a: Num, ref: Num, what = "result", show = 8): void {
  if (a.length !== ref.length) {
    throw new NumericAssertionError(`${what}: length ${a.length} vs reference ${ref.length}`);
  }
  const bad: number[] = [];
  let count = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== ref[i] && !(Number.isNaN(a[i]) && Number.isNaN(ref[i]))) {
      count++;
      if (bad.length < show) bad.push(i);
    }
  }
  if (count) {
    throw new NumericAssertionError(
      `${what}: ${count} of ${a.length} elements differ; first: ` +
        bad.map((i) => `[${i}] ${a[i]} vs ${ref[i]}`).join(", "),
    );
  }
}

/** Assert |a − ref| ≤ atol + rtol·|ref| element-wise; NaN never passes. */
export function assertClose(
  a: Num,
  ref: Num,
  opts: { rtol?: number; atol?: number; what?: string } = {},
): void {
  const rtol = opts.rtol ?? 1e-5, atol = opts.atol ?? 1e-8, what = opts.what ?? "result";
  if (a.length !== ref.length) {
    throw new NumericAssertionError(`${what}: length ${a.length} vs reference ${ref.length}`);
  }
  let count = 0, first = -1, worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - ref[i]);
    if (!(d <= atol + rtol * Math.abs(ref[i]))) {
      count++;
      if (first < 0) first = i;
      worst = Math.max(worst, d);
    }
  }
  if (count) {
    throw new NumericAssertionError(
      `${what}: ${count} of ${a.length} elements outside rtol ${rtol} atol ${atol}; first [${first}] ` +
        `${a[first]} vs ${ref[first]}, worst |diff| ${worst}`,
    );
  }
}

/** Assert no element is NaN (an unwritten poisoned output shows up as NaN). */
export function assertAllFinite(a: Num, what = "result"): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) throw new NumericAssertionError(`${what}: element [${i}] is ${a[i]}`);
  }
}
