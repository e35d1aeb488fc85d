/**
 * Benchmark of the group-quant family (issue 4): per-token-group FP8 quantization into the blockwise
 * GEMM's layout (M-major scales, rows padded to 4), against a straightforward Triton kernel and the
 * device copy bandwidth measured in the same run; fused silu-and-mul + quant against the two kernels run
 * separately (kiln's and Triton's); the options at one large shape; and a schedule sweep.
 *
 * Napkin math: bytes = 2MK read + MK + 4MK/G written (3.03 bytes per element at G = 128). The first run
 * (H200, copy 4.10 TB/s, an event pair around every call) fits t = 4.9 µs + bytes / 3.91 TB/s over
 * M = 1024..16384 at K = 7168: the streaming rate is 95% of copy and the 4.9 µs is per-call cost (the
 * M ≤ 16 calls took 4.3-4.5 µs). Timed as 16 back-to-back calls that cost drops to the kernel's own
 * latency (launch gap + one DRAM round trip ≈ 2-2.5 µs): M = 4096, K = 7168 (89 MB) ≈ 22.8 + 2.3 ≈ 25 µs
 * ≈ 3.5 TB/s ≈ 86% of copy; M ≤ 16 ≈ 2-2.5 µs. Fused silu-mul reads 4MK and writes the same outputs:
 * 5.03 B/elem vs 2+2+2+1.03 = 7.03 for the separate pair; it was issue-bound (62 SASS instructions per
 * element, a division and FRND/F2I/F2F on the conversion pipe per element) and now takes 42 (silu
 * without a division, packed bf16 conversions): at M = 16384, H = 7168, ≈ 150-185 µs (was 268).
 *
 * Timing: kiln's timeKernel (a CUDA graph of 16 back-to-back calls between events for calls under 50 µs,
 * one call otherwise; median); the Triton peer replays a CUDA graph of 16 back-to-back calls behind a GPU sleep
 * (median / 16): both GPU time of back-to-back calls. Inputs rotate over enough sets to exceed L2 three
 * times; every kernel's output is checked against the TypeScript reference (sampled rows, every byte of
 * q and scales) before it is timed.
 *
 *   deno run -A bench/group_quant.ts
 *
 * @module
 */
import { Device, Tensor, timeKernel } from "../mod.ts";
import { encodeArray, type HostArray } from "../dsl/dtype.ts";
import { input, interpret, RowProgram } from "../dsl/expr/mod.ts";
import { groupQuantProgram, type GroupQuantSpec } from "../dsl/ops/group_quant.ts";
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
const TIMING_NOTE = "µs: GPU time per call of back-to-back calls, kiln and Triton alike (a CUDA graph of " +
  "16 calls / 16 below 50 µs), median, inputs rotated past L2";
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

/** Check rows `rows` of a run (host copies of q and the scales) against the interpreter, byte for byte. */
export function validate(
  spec: GroupQuantSpec,
  name: string,
  raw: Uint16Array,
  M: number,
  qHost: HostArray,
  sHost: HostArray,
  rows: number[],
): void {
  const W = spec.fuseSiluMul ? 2 * spec.K : spec.K, S = spec.K / spec.groupSize;
  const mPad = Math.ceil(M / spec.rowAlign) * spec.rowAlign;
  const sub = new Uint16Array(rows.length * W);
  rows.forEach((r, i) => sub.set(raw.subarray(r * W, (r + 1) * W), i * W));
  const ref = interpret(groupQuantProgram({ ...spec, rowAlign: 1 }), {
    inputs: { x: sub },
    geometry: { m: rows.length, rows: rows.length },
  });
  const qh = new Uint8Array(qHost.buffer, qHost.byteOffset, qHost.byteLength);
  const rq = new Uint8Array(ref.q.buffer, ref.q.byteOffset, ref.q.byteLength);
  // scales compared as raw bytes: f32 values, or (packUe8m0) the exponent bytes of the int32 words
  const sh = new Uint8Array(sHost.buffer, sHost.byteOffset, sHost.byteLength);
  const rs = new Uint8Array(ref.s.buffer, ref.s.byteOffset, ref.s.byteLength);
  const n = rows.length;
  const at = (r: number, g: number, ld: number): number =>
    spec.packUe8m0
      ? ((g >> 2) * ld + r) * 4 + (g & 3)
      : 4 * (spec.scaleLayout === "mmajor" ? g * ld + r : r * S + g);
  const per = spec.packUe8m0 ? 1 : 4, groups = spec.packUe8m0 ? Math.ceil(S / 4) * 4 : S;
  rows.forEach((r, i) => {
    for (let j = 0; j < spec.K; j++) {
      if (qh[r * spec.K + j] !== rq[i * spec.K + j]) {
        throw new Error(`${name} M=${M}: q[${r}, ${j}] differs from the reference`);
      }
    }
    for (let g = 0; g < groups; g++) {
      for (let b = 0; b < per; b++) {
        const got = sh[at(r, g, mPad) + b], want = rs[at(i, g, n) + b];
        if (got !== want) {
          throw new Error(`${name} M=${M}: scale (${r}, ${g}) byte ${b}: ${got} vs ${want}`);
        }
      }
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
      validate(spec, gq.kernel.name, raw, M, outs[0].q.toHost(), outs[0].scales.toHost(), rows);
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
  console.log(TIMING_NOTE + (peer?.method ? ` (peer: ${peer.method})` : ""));
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
  console.log(TIMING_NOTE);
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
  // the family's schedule first (55 registers: 4 CTAs of 256 per SM, 64 KB of loads in flight per SM),
  // then fewer registers (more CTAs resident), other CTA sizes, and rowBlock 1 (scale stores scattered)
  const scheds: Schedule[] = [
    { vec: 8, lanes: 4, chunks: 4, threads: 256, rowBlock: 8 },
    { vec: 8, lanes: 4, chunks: 4, threads: 256, rowBlock: 1 },
    { vec: 8, lanes: 4, chunks: 4, threads: 128, rowBlock: 8 },
    { vec: 8, lanes: 4, chunks: 4, threads: 512, rowBlock: 8 },
    { vec: 8, lanes: 8, chunks: 2, threads: 256, rowBlock: 8 },
    { vec: 8, lanes: 16, chunks: 1, threads: 256, rowBlock: 8 },
    { vec: 8, lanes: 16, chunks: 2, threads: 256, rowBlock: 8 },
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
