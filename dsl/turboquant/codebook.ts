/**
 * Key codebooks: the Lloyd–Max quantizer of a rotated unit vector's coordinate, which is close to
 * N(0, 1/D). {@linkcode lloydMaxCentroids} runs vLLM's exact procedure (float64, trapezoid rule with 200
 * sub-intervals, 200 iterations at most, cast to float32) so the tables match the serving path bit for
 * bit; {@linkcode midpoints} gives the decision boundaries the store kernel compares against.
 *
 * @module
 */

function gaussianPdf(x: number, sigma2: number): number {
  return (1.0 / Math.sqrt(2 * Math.PI * sigma2)) * Math.exp((-x * x) / (2 * sigma2));
}

function trapz(f: (x: number) => number, a: number, b: number, n = 200): number {
  const h = (b - a) / n;
  let result = 0.5 * (f(a) + f(b));
  for (let i = 1; i < n; i++) result += f(a + i * h);
  return result * h;
}

const cache = new Map<string, Float32Array>();

/**
 * The `2^bits` Lloyd–Max centroids for N(0, 1/headDim), sorted ascending, as float32 — vLLM's
 * `solve_lloyd_max(d, bits)` step for step: start from `L` points spread uniformly over ±3.5σ, move
 * each centroid to the conditional mean of its cell (outer edges ±10.5σ), stop when no centroid moves
 * by 1e-10 (keeping the previous iterate, as vLLM does) or after 200 iterations. Cached per (D, bits);
 * the returned array is a fresh copy.
 *
 * @example
 * ```ts
 * import { lloydMaxCentroids } from "./codebook.ts";
 * console.log(lloydMaxCentroids(128, 2)); // Float32Array [-0.1334…, -0.0400…, 0.0400…, 0.1334…]
 * ```
 */
export function lloydMaxCentroids(headDim: number, bits: number, maxIter = 200, tol = 1e-10): Float32Array {
  if (!Number.isInteger(headDim) || headDim <= 0) {
    throw new RangeError(`head dim must be a positive integer, got ${headDim}`);
  }
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) {
    throw new RangeError(`codebook bits must be 1..8, got ${bits}`);
  }
  const key = `${headDim}/${bits}/${maxIter}/${tol}`;
  let hit = cache.get(key);
  if (!hit) {
    hit = solve(headDim, bits, maxIter, tol);
    cache.set(key, hit);
  }
  return hit.slice();
}

function solve(d: number, bits: number, maxIter: number, tol: number): Float32Array {
  const n = 2 ** bits;
  const sigma2 = 1.0 / d;
  const sigma = Math.sqrt(sigma2);
  const pdf = (x: number) => gaussianPdf(x, sigma2);
  const lo = -3.5 * sigma, hi = 3.5 * sigma;
  let c = Array.from({ length: n }, (_, i) => lo + ((hi - lo) * (i + 0.5)) / n);
  for (let it = 0; it < maxIter; it++) {
    const edges = [lo * 3];
    for (let i = 0; i < n - 1; i++) edges.push((c[i] + c[i + 1]) / 2.0);
    edges.push(hi * 3);
    const next: number[] = [];
    for (let i = 0; i < n; i++) {
      const a = edges[i], b = edges[i + 1];
      const num = trapz((x) => x * pdf(x), a, b);
      const den = trapz(pdf, a, b);
      next.push(den > 1e-15 ? num / den : c[i]);
    }
    let moved = 0;
    for (let i = 0; i < n; i++) moved = Math.max(moved, Math.abs(next[i] - c[i]));
    if (moved < tol) break;
    c = next;
  }
  return Float32Array.from(c);
}

/**
 * Decision boundaries of a sorted float32 codebook as the serving path computes them in float32:
 * `m_i = fp32(c_i + c_{i+1}) / 2`. A coordinate y gets index `#{i : y ≥ m_i}` (ties go up).
 */
export function midpoints(centroids: ArrayLike<number>): Float32Array {
  const m = new Float32Array(centroids.length - 1);
  for (let i = 0; i < m.length; i++) m[i] = Math.fround(centroids[i] + centroids[i + 1]) / 2;
  return m;
}

/** True when the codebook is exactly antisymmetric (c_i = −c_{L−1−i}), so kernels may fold on |y|. */
export function isSymmetric(centroids: ArrayLike<number>): boolean {
  const L = centroids.length;
  for (let i = 0; i < L; i++) if (centroids[i] !== -centroids[L - 1 - i]) return false;
  return true;
}

/** `#{i : y ≥ m_i}`: the bucket of `y` for sorted boundaries `m` (ties go to the upper bucket). */
export function bucketize(y: number, m: ArrayLike<number>): number {
  let idx = 0;
  for (let i = 0; i < m.length; i++) if (y >= m[i]) idx++;
  return idx;
}
