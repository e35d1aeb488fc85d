/**
 * TurboQuant tables and primitives, mirroring vLLM's centroid / rotation tests: Lloyd–Max centroid
 * count, order, symmetry, range, the spec's printed tables (bit patterns at D = 128), agreement with an
 * independent fine quadrature of the same iteration; midpoints; the Hadamard matrix (orthonormal,
 * symmetric) and the float32 FWHT against it; LSB-first packing; the host fma against exact arithmetic.
 */
import assert from "node:assert/strict";
import {
  bucketize,
  fmaf32,
  fwhtF32,
  hadamardMatrix,
  isSymmetric,
  lloydMaxCentroids,
  midpoints,
  packBits,
  randomSigns,
  rotateF64,
  signMaskWords,
  unpackBits,
} from "../../dsl/turboquant/mod.ts";
import { packNibbles } from "../../dsl/dtype.ts";
import { Rng } from "../../testing/mod.ts";

const hex = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0].toString(16);

Deno.test("turboquant codebook: count, order, symmetry and range (vLLM's centroid tests)", () => {
  for (const bits of [2, 3, 4]) {
    const c = lloydMaxCentroids(128, bits);
    assert.equal(c.length, 2 ** bits);
    for (let i = 1; i < c.length; i++) assert.ok(c[i] > c[i - 1]);
    const mean = c.reduce((a, b) => a + b, 0) / c.length;
    assert.ok(Math.abs(mean) < 0.01);
    assert.ok(Math.abs(c[0] + c[c.length - 1]) < 0.01);
    assert.ok(isSymmetric(c), "float32 centroids are exactly antisymmetric");
    const sigma = 1 / Math.sqrt(128);
    for (const x of c) assert.ok(Math.abs(x) < 4 * sigma);
    const m = midpoints(c);
    for (let i = 0; i < m.length; i++) {
      assert.ok(c[i] < m[i] && m[i] < c[i + 1]);
      assert.ok(Math.abs(m[i] - (c[i] + c[i + 1]) / 2) < 1e-6);
    }
    assert.deepEqual(lloydMaxCentroids(128, bits), c, "deterministic");
    assert.notDeepEqual(lloydMaxCentroids(64, bits), c, "depends on D");
  }
  // D = 256 values are exactly half the D = 64 ones
  assert.deepEqual(lloydMaxCentroids(256, 3), lloydMaxCentroids(64, 3).map((x) => x / 2));
});

Deno.test("turboquant codebook: matches the spec's tables (fp32 bit patterns at D = 128)", () => {
  const pos = (d: number, b: number) => Array.from(lloydMaxCentroids(d, b).slice(2 ** (b - 1)));
  assert.deepEqual(pos(128, 3).map(hex), ["3cb16317", "3d88c955", "3df3243d", "3e42a09f"]);
  assert.deepEqual(
    pos(128, 4).map(hex),
    ["3c39fbae", "3d0c8559", "3d6dd0e1", "3daa99f2", "3de3682b", "3e126f17", "3e3b36e7", "3e772cc4"],
  );
  const near = (a: number[], b: number[]) =>
    a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) < 5e-9 * Math.max(1, b[i] * 100), `${x} vs ${b[i]}`));
  near(pos(128, 2), [0.0400020853, 0.133427396]);
  near(pos(64, 3), [0.0306229498, 0.0944556892, 0.167897508, 0.268793702]);
  near(pos(256, 4), [
    0.00802672841,
    0.0242586117,
    0.0410549939,
    0.0589030161,
    0.0785160959,
    0.101117611,
    0.129277945,
    0.170682639,
  ]);
  const m = midpoints(lloydMaxCentroids(128, 4));
  near(Array.from(m.slice(7)), [
    0,
    0.0228291824,
    0.0461836942,
    0.0706809834,
    0.0971699804,
    0.12702021,
    0.162914261,
    0.212104172,
  ]);
});

Deno.test("turboquant codebook: within 1e-3 of the same iteration with fine quadrature (vLLM's scipy check)", () => {
  // independent reference: Simpson's rule with 4000 panels per cell, same init / edges / stopping rule
  const solve = (d: number, bits: number) => {
    const n = 2 ** bits, s2 = 1 / d, s = Math.sqrt(s2);
    const pdf = (x: number) => Math.exp(-x * x / (2 * s2)) / Math.sqrt(2 * Math.PI * s2);
    const simpson = (f: (x: number) => number, a: number, b: number, k = 4000) => {
      const h = (b - a) / k;
      let acc = f(a) + f(b);
      for (let i = 1; i < k; i++) acc += (i % 2 ? 4 : 2) * f(a + i * h);
      return acc * h / 3;
    };
    let c = Array.from({ length: n }, (_, i) => -3.5 * s + 7 * s * (i + 0.5) / n);
    for (let it = 0; it < 200; it++) {
      const e = [-10.5 * s, ...c.slice(0, -1).map((x, i) => (x + c[i + 1]) / 2), 10.5 * s];
      const next = c.map((_, i) => simpson((x) => x * pdf(x), e[i], e[i + 1]) / simpson(pdf, e[i], e[i + 1]));
      if (Math.max(...next.map((x, i) => Math.abs(x - c[i]))) < 1e-10) break;
      c = next;
    }
    return c;
  };
  for (const bits of [3, 4]) {
    const ref = solve(128, bits), got = lloydMaxCentroids(128, bits);
    assert.ok(Math.max(...ref.map((x, i) => Math.abs(x - got[i]))) < 1e-3);
  }
});

Deno.test("turboquant rotation: Hadamard orthonormal and symmetric; fp32 FWHT ≈ the matrix product", () => {
  const rng = new Rng();
  for (const n of [64, 128, 256]) {
    const H = hadamardMatrix(n);
    let worst = 0, asym = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let k = 0; k < n; k++) dot += H[i * n + k] * H[j * n + k];
        worst = Math.max(worst, Math.abs(dot - (i === j ? 1 : 0)));
        asym = Math.max(asym, Math.abs(H[i * n + j] - H[j * n + i]));
      }
    }
    assert.ok(worst < 1e-5 && asym < 1e-6, `n=${n}`);
    const x = rng.normals(n);
    const y = fwhtF32(Float32Array.from(x)).map((v) => v / Math.sqrt(n));
    const yr = rotateF64(x);
    for (let i = 0; i < n; i++) assert.ok(Math.abs(y[i] - yr[i]) < 1e-5, `seed ${rng.seed}`);
    // H/√n is its own inverse, with signs: x = s ⊙ H(H(s ⊙ x))
    const s = randomSigns(n, 7);
    const back = rotateF64(rotateF64(x, s)).map((v, i) => v * s[i]);
    for (let i = 0; i < n; i++) assert.ok(Math.abs(back[i] - x[i]) < 1e-5);
    const words = signMaskWords(s);
    for (let i = 0; i < n; i++) assert.equal((words[i >> 5] >>> (i & 31)) & 1, s[i] < 0 ? 1 : 0);
  }
});

Deno.test("turboquant packing: LSB-first bit stream for 1..8 bits; 4-bit = nibbles; vLLM's 3-bit reader", () => {
  const rng = new Rng();
  for (let bits = 1; bits <= 8; bits++) {
    for (const n of [8, 64, 96, 128]) {
      const codes = Array.from({ length: n }, () => rng.int(0, 2 ** bits));
      const packed = packBits(codes, bits);
      assert.equal(packed.length, Math.ceil(n * bits / 8));
      assert.deepEqual(Array.from(unpackBits(packed, n, bits)), codes, `bits ${bits} seed ${rng.seed}`);
      if (bits === 4) assert.deepEqual(packed, packNibbles(codes));
      if (bits === 3) {
        const withSpill = new Uint8Array([...packed, 0]);
        for (let d = 0; d < n; d++) {
          const w16 = withSpill[(3 * d) >> 3] | (withSpill[((3 * d) >> 3) + 1] << 8);
          assert.equal((w16 >> ((3 * d) & 7)) & 7, codes[d]);
        }
      }
    }
  }
  assert.deepEqual(packBits([1, 2, 3, 4, 5, 6, 7, 0], 3), new Uint8Array([209, 88, 31]));
  assert.throws(() => packBits([8], 3), /does not fit/);
  assert.equal(bucketize(0, [-1, 0, 1]), 2, "ties go up");
});

Deno.test("turboquant f32: fmaf32 is the correctly rounded fused multiply-add (vs exact rationals)", () => {
  const rng = new Rng();
  // exact value of a float as a BigInt-scaled rational: v = m · 2^e
  const parts = (x: number): [bigint, number] => {
    if (x === 0) return [0n, 0];
    const b = new DataView(new Float64Array([x]).buffer).getBigUint64(0, true);
    const e = Number((b >> 52n) & 0x7ffn), m = b & ((1n << 52n) - 1n);
    const mant = e === 0 ? m : m | (1n << 52n), exp = (e === 0 ? 1 : e) - 1075;
    return [x < 0 ? -mant : mant, exp];
  };
  const exactRound32 = (a: number, b: number, c: number): number => {
    const [ma, ea] = parts(a), [mb, eb] = parts(b), [mc, ec] = parts(c);
    const e = Math.min(ea + eb, ec);
    const num = ma * mb * (1n << BigInt(ea + eb - e)) + mc * (1n << BigInt(ec - e)); // exact = num · 2^e
    if (num === 0n) return 0;
    // candidates: the float32 around num·2^e; pick nearest, ties to even (compare exactly)
    const approx = Math.fround(Number(num) * 2 ** e);
    const cands = [approx, nextTo(approx, -Infinity), nextTo(approx, Infinity)];
    const dist = (f: number) => {
      const [mf, ef] = parts(f);
      const k = Math.min(ef, e);
      const d = mf * (1n << BigInt(ef - k)) - num * (1n << BigInt(e - k));
      return [d < 0n ? -d : d, k] as const;
    };
    cands.sort((x, y) => {
      const [dx, kx] = dist(x), [dy, ky] = dist(y);
      const k = Math.min(kx, ky);
      const a1 = dx * (1n << BigInt(kx - k)), b1 = dy * (1n << BigInt(ky - k));
      if (a1 !== b1) return a1 < b1 ? -1 : 1;
      return (new Uint32Array(new Float32Array([x]).buffer)[0] & 1) -
        (new Uint32Array(new Float32Array([y]).buffer)[0] & 1);
    });
    return cands[0];
  };
  const nextTo = (x: number, dir: number) => {
    const f = new Float32Array([x]), u = new Uint32Array(f.buffer);
    if (x === 0) return dir > 0 ? 1.4e-45 : -1.4e-45;
    u[0] += (x > 0) === (dir > 0) ? 1 : -1;
    return f[0];
  };
  const f = (x: number) => Math.fround(x);
  for (let i = 0; i < 3000; i++) {
    const a = f(rng.normal() * 2 ** rng.int(-10, 10)),
      b = f(rng.normal()),
      c = f(rng.normal() * 2 ** rng.int(-30, 10));
    assert.equal(fmaf32(a, b, c), exactRound32(a, b, c), `fma(${a}, ${b}, ${c}) seed ${rng.seed}`);
  }
  // a float64 sum that lands exactly halfway between two float32 values while the tiny c is lost:
  // (1 + 2^-12)² = 1 + 2^-11 + 2^-24, so only c's sign decides (a plain fround would tie to even)
  const a0 = 1 + 2 ** -12;
  assert.equal(fmaf32(a0, a0, 2 ** -80), 1 + 2 ** -11 + 2 ** -23);
  assert.equal(fmaf32(a0, a0, -(2 ** -80)), 1 + 2 ** -11);
  assert.equal(fmaf32(a0, a0, 2 ** -80), exactRound32(a0, a0, 2 ** -80));
  // more near-halfway cases
  for (let i = 0; i < 2000; i++) {
    const a = f(1 + rng.int(0, 1 << 12) / 4096), b = f(1 + rng.int(0, 1 << 12) / 4096);
    const c = f(-f(a * b) + (rng.next() < 0.5 ? 0 : 2 ** -24));
    assert.equal(fmaf32(a, b, c), exactRound32(a, b, c), `tie fma(${a}, ${b}, ${c})`);
    const c2 = f(2 ** rng.int(-2, 30));
    assert.equal(fmaf32(a, b, c2), exactRound32(a, b, c2), `fma(${a}, ${b}, ${c2})`);
  }
});
