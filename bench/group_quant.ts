/**
 * Benchmark of the group-quant family (issue 4): per-token-group FP8 quantization into the blockwise
 * GEMM's layout (M-major scales, rows padded to 4), against a straightforward Triton kernel and the
 * device copy bandwidth measured in the same run; fused silu-and-mul + quant against the two kernels run
 * separately (kiln's and Triton's); the options at one large shape; and a schedule sweep.
 *
 * Napkin math: bytes = 2MK read + MK + 4MK/G written (3.03 bytes per element at G = 128). At 80% of the
 * H200's ~3.9 TB/s measured copy: M = 4096, K = 7168 moves 89 MB → ≈ 28 µs (3.1 TB/s); M = 16384 →
 * 356 MB ≈ 114 µs. M ≤ 16 moves ≤ 0.35 MB: latency-bound, one DRAM round trip after the launch,
 * predicted 2.5-3.5 µs of GPU time. Fused silu-mul reads 4MK and writes the same outputs: 5.03 B/elem vs
 * 2+2+2+1.03 = 7.03 for the separate pair → ≥ 1.3× faster when both run at the same bandwidth.
 *
 * Inputs rotate over enough sets to exceed L2 three times where the work is memory-bound; every
 * kernel's output is checked against the TypeScript reference (sampled rows) before it is timed.
 *
 *   deno run -A bench/group_quant.ts
 *
 * @module
 */
import { Device, Tensor, timeKernel } from "../mod.ts";
import { encodeArray } from "../dsl/dtype.ts";
import { input, interpret, RowProgram } from "../dsl/expr/mod.ts";
import { groupQuantProgram } from "../dsl/ops/group_quant.ts";
import {
  type PreparedGroupQuant,
  prepareGroupQuant,
  type PrepareGroupQuantOptions,
} from "../ops/group_quant.ts";
import { compileRowProgram } from "../ops/row_program.ts";
import type { Schedule } from "../codegen/expr/schedule.ts";
import { copyBandwidth, pct, printTable, type Row, runPeer } from "./_util.ts";
import { Rng } from "../testing/mod.ts";

const MS = [1, 4, 16, 128, 1024, 4096, 16384];
const KS = [2048, 7168];
const GEMM_LAYOUT = { scaleLayout: "mmajor", rowAlign: 4 } as const;

function bytesOf(M: number, K: number, G: number, inFactor = 2): number {
  return inFactor * M * K + M * K + (4 * M * K) / G;
}

/** Random bf16/f16 codes: a block of up to 4M encoded normals, repeated (content does not change the speed). */
function randomRows(rng: Rng, n: number, dtype: "bf16" | "f16" = "bf16"): Uint16Array {
  const block = encodeArray(dtype, rng.normals(Math.min(n, 1 << 22), 2)) as Uint16Array;
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i += block.length) out.set(block.subarray(0, Math.min(block.length, n - i)), i);
  return out;
}

/** Check rows `rows` of a run against the interpreter (the reference), bytes of q and scales. */
function validate(
  gq: PreparedGroupQuant,
  raw: Uint16Array,
  M: number,
  q: Tensor,
  s: Tensor,
  rows: number[],
): void {
  const spec = gq.spec, W = spec.fuseSiluMul ? 2 * spec.K : spec.K, S = spec.K / spec.groupSize;
  const mPad = Math.ceil(M / spec.rowAlign) * spec.rowAlign;
  const sub = new Uint16Array(rows.length * W);
  rows.forEach((r, i) => sub.set(raw.subarray(r * W, (r + 1) * W), i * W));
  const ref = interpret(groupQuantProgram({ ...spec, rowAlign: 1 }), {
    inputs: { x: sub },
    geometry: { m: rows.length, rows: rows.length },
  });
  const qh = q.toHost() as Uint8Array, sh = s.toHost() as Float32Array;
  const rq = ref.q as Uint8Array, rs = ref.s as Float32Array;
  rows.forEach((r, i) => {
    for (let j = 0; j < spec.K; j++) {
      if (qh[r * spec.K + j] !== rq[i * spec.K + j]) {
        throw new Error(`${gq.kernel.name} M=${M}: q[${r}, ${j}] differs from the reference`);
      }
    }
    for (let g = 0; g < S; g++) {
      const got = spec.scaleLayout === "mmajor" ? sh[g * mPad + r] : sh[r * S + g];
      const want = spec.scaleLayout === "mmajor" ? rs[g * rows.length + i] : rs[i * S + g];
      if (got !== want) throw new Error(`${gq.kernel.name} M=${M}: scale (${r}, ${g}) ${got} vs ${want}`);
    }
  });
}

/** Time `gq` on M rows, rotating input/output sets past L2. Returns µs (median). */
async function timeQuant(gq: PreparedGroupQuant, M: number, rng: Rng, check = true): Promise<number> {
  const spec = gq.spec, W = spec.fuseSiluMul ? 2 * spec.K : spec.K;
  const bytes = bytesOf(M, spec.K, spec.groupSize, spec.fuseSiluMul ? 4 : 2);
  const l2 = Device.get().info.l2Bytes;
  const sets = Math.max(1, Math.min(32, Math.ceil((3 * l2) / bytes)));
  const raw = randomRows(rng, M * W, spec.inDtype);
  const xs = Array.from({ length: sets }, () => Tensor.fromHost(spec.inDtype, [M, W], raw));
  const outs = xs.map(() => gq.allocate(M));
  try {
    gq.run(xs[0], outs[0]);
    if (check) {
      const rows = M <= 64 ? Array.from({ length: M }, (_, i) => i) : [0, 1, 2, M >> 1, M - 2, M - 1];
      validate(gq, raw, M, outs[0].q, outs[0].scales, rows);
    }
    const t = await timeKernel((i) => gq.run(xs[i % sets], outs[i % sets]), { warmup: 10, reps: 100 });
    return t.medianUs;
  } finally {
    xs.forEach((x) => x.dispose());
    outs.forEach((o) => (o.q.dispose(), o.scales.dispose()));
  }
}

async function mainTable(copy: number, rng: Rng): Promise<void> {
  const peer = await runPeer("group_quant_triton.py", {
    shapes: KS.flatMap((K) => MS.map((M) => [M, K])),
    group: 128,
    silu_shapes: [128, 1024, 4096, 16384].flatMap((M) => [2048, 7168].map((H) => [M, H])),
  });
  const peerUs = (M: number, K: number) =>
    (peer?.quant as { shape: number[]; us?: number }[] | undefined)?.find((r) =>
      r.shape[0] === M && r.shape[1] === K
    )?.us;
  const rows: Row[] = [];
  for (const K of KS) {
    const gq = await prepareGroupQuant({ K, ...GEMM_LAYOUT });
    for (const M of MS) {
      const us = await timeQuant(gq, M, rng);
      const b = bytesOf(M, K, 128);
      const p = peerUs(M, K);
      rows.push({
        "M×K": `${M}×${K}`,
        "kiln µs": us,
        "TB/s": b / us / 1e6,
        "% copy": pct(b / us / 1e6, copy / 1e12),
        "triton µs": p ?? "n/a",
        "triton TB/s": p ? b / p / 1e6 : "n/a",
        "kiln speedup": p ? `${(p / us).toFixed(2)}×` : "n/a",
      });
    }
  }
  printTable(
    `group quant fp8 g128 → GEMM layout (M-major scales, rows padded to 4); copy ${
      (copy / 1e12).toFixed(2)
    } TB/s`,
    rows,
  );
  await siluTable(
    copy,
    rng,
    peer?.silu_then_quant as
      | { shape: number[]; us?: number; silu_us?: number; quant_us?: number }[]
      | undefined,
  );
}

async function siluTable(copy: number, rng: Rng, peer?: { shape: number[]; us?: number }[]): Promise<void> {
  const rows: Row[] = [];
  for (const H of [2048, 7168]) {
    const fused = await prepareGroupQuant({ K: H, fuseSiluMul: true, ...GEMM_LAYOUT });
    const quant = await prepareGroupQuant({ K: H, ...GEMM_LAYOUT });
    const [gate, up] = input("x", "bf16", 2 * H).split(2);
    const siluProg = new RowProgram("silu_mul_bf16").store("y", gate.silu().cast("bf16").mul(up), {
      dtype: "bf16",
    }).finish();
    const silu = await compileRowProgram(siluProg);
    for (const M of [128, 1024, 4096, 16384]) {
      const f = await timeQuant(fused, M, rng);
      // the separate pair on one rotating set of buffers: silu-mul writes y, quant reads it
      const bytes = 7 * M * H + (4 * M * H) / 128;
      const sets = Math.max(1, Math.min(16, Math.ceil((3 * Device.get().info.l2Bytes) / bytes)));
      const xs = Array.from(
        { length: sets },
        () => Tensor.fromHost("bf16", [M, 2 * H], randomRows(rng, M * 2 * H)),
      );
      const ys = xs.map(() => Tensor.empty("bf16", [M, H]));
      const outs = xs.map(() => quant.allocate(M));
      const sep = await timeKernel((i) => {
        const k = i % sets;
        silu.run({ inputs: { x: xs[k] }, outputs: { y: ys[k] } });
        quant.run(ys[k], outs[k]);
      }, { warmup: 5, reps: 50, hostUsPerRep: 40 });
      [...xs, ...ys].forEach((t) => t.dispose());
      outs.forEach((o) => (o.q.dispose(), o.scales.dispose()));
      const p = peer?.find((r) => r.shape[0] === M && r.shape[1] === H)?.us;
      const fb = 5 * M * H + (4 * M * H) / 128;
      rows.push({
        "M×H": `${M}×${H}`,
        "fused µs": f,
        "fused TB/s": fb / f / 1e6,
        "% copy": pct(fb / f / 1e6, copy / 1e12),
        "kiln separate µs": sep.medianUs,
        "triton separate µs": p ?? "n/a",
        "fused vs kiln sep": `${(sep.medianUs / f).toFixed(2)}×`,
        "fused vs triton sep": p ? `${(p / f).toFixed(2)}×` : "n/a",
      });
    }
  }
  printTable("fused silu(gate)·up + group quant vs silu-mul then quant (two kernels)", rows);
}

async function optionsTable(copy: number, rng: Rng): Promise<void> {
  const M = 4096, K = 7168;
  const variants: [string, PrepareGroupQuantOptions][] = [
    ["row-major scales", { K }],
    ["M-major, rowAlign 4", { K, ...GEMM_LAYOUT }],
    ["ue8m0 packed (SM100 layout)", { K, ...GEMM_LAYOUT, ue8m0: true, packUe8m0: true }],
    ["per-token (G = K)", { K, groupSize: K }],
    ["G = 32", { K, groupSize: 32 }],
    ["int8", { K, dtype: "i8" }],
    ["rounding div", { K, ...GEMM_LAYOUT, rounding: "div" }],
    ["fp16 input", { K, ...GEMM_LAYOUT, inputDtype: "f16" as const }],
  ];
  const rows: Row[] = [];
  for (const [label, o] of variants) {
    const gq = await prepareGroupQuant(o);
    const us = await timeQuant(gq, M, rng);
    const b = bytesOf(M, K, gq.spec.groupSize);
    rows.push({
      variant: label,
      kernel: gq.kernel.name,
      regs: gq.kernel.registers,
      "µs": us,
      "TB/s": b / us / 1e6,
      "% copy": pct(b / us / 1e6, copy / 1e12),
    });
  }
  printTable(`group quant options at M = ${M}, K = ${K}`, rows);
}

async function scheduleSweep(copy: number, rng: Rng): Promise<void> {
  const M = 4096, K = 7168;
  const scheds: Schedule[] = [
    { vec: 8, lanes: 4, chunks: 4, threads: 256, rowBlock: 8 },
    { vec: 8, lanes: 4, chunks: 4, threads: 256, rowBlock: 1 },
    { vec: 8, lanes: 4, chunks: 4, threads: 128, rowBlock: 8 },
    { vec: 8, lanes: 8, chunks: 2, threads: 256, rowBlock: 8 },
    { vec: 8, lanes: 16, chunks: 1, threads: 256, rowBlock: 8 },
    { vec: 8, lanes: 16, chunks: 2, threads: 256, rowBlock: 8 },
    { vec: 8, lanes: 32, chunks: 4, threads: 256, rowBlock: 1 },
    { vec: 8, lanes: 2, chunks: 8, threads: 256, rowBlock: 8 },
  ];
  const rows: Row[] = [];
  for (const schedule of scheds) {
    const gq = await prepareGroupQuant({ K, ...GEMM_LAYOUT, schedule });
    const us = await timeQuant(gq, M, rng);
    const b = bytesOf(M, K, 128);
    rows.push({
      schedule: `l${schedule.lanes} c${schedule.chunks} t${schedule.threads} rb${schedule.rowBlock}`,
      regs: gq.kernel.registers,
      "µs": us,
      "TB/s": b / us / 1e6,
      "% copy": pct(b / us / 1e6, copy / 1e12),
    });
  }
  printTable(`group quant schedule sweep, M = ${M}, K = ${K}, G = 128, M-major`, rows);
}

/** Every table of the family. */
export async function bench(): Promise<void> {
  const copy = await copyBandwidth();
  const rng = new Rng(1234);
  await mainTable(copy, rng);
  await optionsTable(copy, rng);
  await scheduleSweep(copy, rng);
}

if (import.meta.main) await bench();
