/**
 * Seeded random numbers for tests, examples and benchmarks (mulberry32 + Box–Muller). A seed makes a
 * failure reproducible; tests still draw a fresh seed per run and print it on failure.
 *
 * @module
 */

/** A seeded generator of uniform [0, 1) floats. */
export class Rng {
  #s: number;
  readonly seed: number;
  constructor(seed: number = (Math.random() * 2 ** 32) >>> 0) {
    this.seed = seed >>> 0;
    this.#s = this.seed;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Uniform integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo));
  }
  /** Standard normal. */
  normal(): number {
    const u = Math.max(this.next(), 1e-300), v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  /** `n` normals times `scale`. */
  normals(n: number, scale = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal() * scale;
    return out;
  }
  /** `n` uniforms in [lo, hi). */
  uniforms(n: number, lo = -1, hi = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.next();
    return out;
  }
}
