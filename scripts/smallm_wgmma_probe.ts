/**
 * Probe (sm_90a, issue 5): a small-M GEMM on wgmma instead of mma.sync, kept as the record of a negative
 * result (bench/RESULTS.md, session 5). Swap-AB: the weights are wgmma's A (64-row tiles, or 16/32 rows with
 * the rest of the m64 dropped), streamed by TMA (one 128 B × rows box per K block, 128B swizzle) into a
 * shared ring by a producer thread before the PDL wait; the tokens are staged once per CTA after it; the K
 * blocks of a tile may be split over a cluster whose partials meet in the leader's shared memory (remote
 * stores + a remote mbarrier arrive). No weight byte is converted. Correct (rel. error 1.7e-3, the v1
 * level) but slower than v1 (best variant per shape 0.90–0.98×): globaltimer traces (`trace`) show the
 * cost after the PDL wait — tokens 0.6–2 µs (one round trip behind the weight stream), a ring refill round
 * trip when the slice does not fit, and ~1 µs for the cluster's partials to meet.
 *   deno run -A scripts/smallm_wgmma_probe.ts [bench|trace|--compile]
 * env: SHAPES='[[2112,7168],…]' MS='[1,16]' VAR='[{"cluster":2,"ring":12},…]' (bench: variants of the default)
 *
 * @module
 */
import { renderSignature, TENSORMAP_DECL } from "../codegen/kernel_source.ts";
import type { KernelSource, ParamSpec } from "../codegen/kernel_source.ts";
import { type BlockMatmulOp, blockMatmulOp } from "../dsl/ops/block_matmul.ts";
import { gemmParams, gemmPrelude, opTag } from "../codegen/kernels/_gemm_common.ts";
import { GEMM_PDL_WAIT, gemmActivationLoads, PDL_PRELUDE } from "../codegen/kernels/_pdl.ts";
import { SM90_HELPERS, wgmmaFunction } from "../codegen/kernels/gemm_sm90/ptx.ts";
import { Device, encodeTensorMap, jit, Tensor } from "../mod.ts";
import { smallMConfig, smallMGrid, smallMKernel } from "../codegen/kernels/gemm_small_m.ts";
import { cappedShared, stampStats, uploadSmallM } from "./_smallm.ts";
import { graphUs } from "../bench/gemm.ts";
import { checkOutput, sampleCols, SampledReference } from "../tests/ops/_gemm_data.ts";
import { Rng } from "../testing/random.ts";
import { copyBandwidth, printTable, type Row } from "../bench/_util.ts";

/** Compile-time shape of the v3 small-M kernel (N and K come from the op). */
interface SmallMWgmmaConfig {
  /** Token columns of the wgmma: serves M ≤ n. */
  readonly n: 8 | 16;
  /** CTAs per cluster, splitting each tile's K blocks. */
  readonly cluster: 1 | 2 | 4 | 8;
  /** Consumer warpgroups per CTA (alternate ring chunks). */
  readonly wg: 1 | 2;
  /** K blocks per ring chunk. */
  readonly kc: number;
  /** Ring chunks. */
  readonly ring: number;
  /**
   * Weight rows per tile (16, 32 or 64; default 64). wgmma is always m64: with fewer rows its A operand reads
   * past the tile into the next ring slots (the ring is padded at the end) and those output rows are dropped.
   */
  readonly rows?: 16 | 32 | 64;
}

/** Weight rows per tile (wgmma's M). */
const SMALL_M_WGMMA_ROWS = 64;

/** K blocks of one CTA (the cluster rank's contiguous share of K/128). */
function wgmmaCtaKBlocks(K: number, cfg: Pick<SmallMWgmmaConfig, "cluster">): number {
  return Math.ceil(K / 128 / cfg.cluster);
}

/** Dynamic shared bytes: tokens, ring (both 1024-aligned), scales, the cluster's partials, barriers. */
function smallMWgmmaSharedBytes(K: number, cfg: SmallMWgmmaConfig): number {
  const nkb = wgmmaCtaKBlocks(K, cfg);
  const tokens = Math.ceil((nkb * cfg.n * 128) / 1024) * 1024;
  const rows = cfg.rows ?? 64;
  const ring = cfg.ring * cfg.kc * rows * 128 + (64 - rows) * 128;
  const scales = nkb * cfg.n * 4 + nkb * 4;
  const parts = cfg.cluster * cfg.wg * 64 * cfg.n * 4 + 16;
  return 1024 + tokens + ring + scales + parts + 16 * cfg.ring + 32;
}

/** Grid (CTAs) for N rows. */
function smallMWgmmaGrid(N: number, cfg: Pick<SmallMWgmmaConfig, "cluster" | "rows">): number {
  return Math.ceil(N / (cfg.rows ?? SMALL_M_WGMMA_ROWS)) * cfg.cluster;
}

/** Whether the v3 kernel serves `op` (fp8 operands; int8 stays on mma.sync). */
function smallMWgmmaServes(op: BlockMatmulOp): boolean {
  return op.mode !== "int8" && op.K % 128 === 0;
}

/**
 * Pick the v3 shape for (M, N, K) on `smCount` SMs: the cluster size that first gives every SM a CTA
 * (tiles × C ≥ SMs, C ≤ 8 and ≤ K/128), 2 consumer warpgroups, one K block per ring chunk (each tile
 * is computed as soon as it lands), and as many chunks as fit two CTAs per SM (a cluster's CTAs then find
 * room beside the previous call's).
 */
function smallMWgmmaConfig(M: number, N: number, K: number, smCount = 132): SmallMWgmmaConfig {
  const n = M <= 8 ? 8 : 16;
  const tiles = Math.ceil(N / SMALL_M_WGMMA_ROWS), kbn = K / 128;
  let cluster: 1 | 2 | 4 | 8 = 1;
  for (const c of [1, 2, 4, 8] as const) {
    if (c > kbn) break;
    cluster = c;
    if (tiles * c >= smCount) break;
  }
  const wg = 2, kc = 1;
  let ring = Math.min(32, wgmmaCtaKBlocks(K, { cluster }));
  while (ring > 2 && smallMWgmmaSharedBytes(K, { n, cluster, wg, kc, ring }) > SMALL_M_WGMMA_SMEM) ring--;
  return { n, cluster, wg, kc, ring };
}

/** Shared memory the chooser allows a CTA: two CTAs fit an SM (228 KB, 1 KB reserved per CTA). */
const SMALL_M_WGMMA_SMEM = 113 * 1024;

/** The v3 kernel's parameters: the family's list, then the weights' tensor map (`bmap`). */
function smallMWgmmaParams(op: BlockMatmulOp): ParamSpec[] {
  return [...gemmParams(op), { name: "bmap", kind: "tensormap" }];
}

/**
 * The v3 kernel for `op` and `cfg`. Launch on {@linkcode smallMWgmmaGrid} CTAs (cluster `cfg.cluster`) of
 * `128·wg + 32` threads with {@linkcode smallMWgmmaSharedBytes} of dynamic shared memory and
 * {@linkcode smallMWgmmaParams} (`a, sa, b, sb, [bias], out, M, N, K, lda, sas, ldc, bmap`; N and K must
 * equal the op's; `bmap` = the weights `[N, K]` as bytes, box 128 × 64, 128B swizzle; rows of `a` 16-byte
 * aligned); correct for 1 ≤ M ≤ n.
 */
function smallMWgmmaKernel(op: BlockMatmulOp, cfg: SmallMWgmmaConfig): KernelSource {
  if (!smallMWgmmaServes(op)) {
    throw new RangeError(`the v3 small-M kernel serves fp8 modes with K % 128 == 0`);
  }
  const kbn = op.K / 128;
  if (cfg.cluster > kbn) throw new RangeError(`cluster ${cfg.cluster} > K/128 = ${kbn}`);
  const nkb = wgmmaCtaKBlocks(op.K, cfg);
  const chunks = Math.ceil(nkb / cfg.kc);
  if (!(cfg.kc >= 1 && cfg.kc <= 16)) throw new RangeError(`kc ${cfg.kc}: 1..16`);
  if (!(cfg.ring >= 1 && cfg.ring <= Math.min(chunks, 32))) {
    throw new RangeError(`ring ${cfg.ring}: 1..${chunks}`);
  }
  const pdl = op.mode === "block";
  const threads = 128 * cfg.wg + 32;
  const name = `gemm_smallm3_${
    opTag(op)
  }_n${op.N}_k${op.K}_t${cfg.n}_c${cfg.cluster}_g${cfg.wg}_kc${cfg.kc}_r${cfg.ring}${
    cfg.rows && cfg.rows !== 64 ? `_m${cfg.rows}` : ""
  }`;
  const params = smallMWgmmaParams(op);
  const sig = renderSignature({ entry: name, params }, { launchBounds: [threads, 1] });
  const source = `${TENSORMAP_DECL}
${gemmPrelude(op)}${pdl ? PDL_PRELUDE : ""}${gemmActivationLoads(pdl, op.aScaleDtype)}
${SM90_HELPERS}
#define PDL ${pdl ? 1 : 0}
#define NT ${cfg.n}                 // token columns of the wgmma
#define CL ${cfg.cluster}           // CTAs per cluster (K split)
#define WG ${cfg.wg}                // consumer warpgroups
#define KC ${cfg.kc}                // K blocks per ring chunk
#define RING ${cfg.ring}
#define KN ${op.N}
#define KK ${op.K}
#define KBN ${kbn}
#define NKB ${nkb}                  // K blocks per CTA (the last rank may have fewer)
#define ROWS ${cfg.rows ?? 64}       // weight rows per tile (wgmma reads 64: the rest is dropped)
#define TILEB (ROWS * 128)          // one K block of the tile, 128B-swizzled
#define RCHUNK (KC * TILEB)
#define NPART (CL * WG)

${wgmmaFunction(cfg.n)}
#define WGMMA wgmma_m64n${cfg.n}k32

#ifdef KILN_TRACE  // probes only: globaltimer stamps of warp 0 (and the producer) after out's 16 rows
#define STAMP(i) do { if (lane == 0) { unsigned long long t_; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t_)); \
  ((unsigned long long*)(((unsigned long long)(out + 16LL * ldc) + 7) & ~7ull))[blockIdx.x * 16 + (i)] = t_; } } while (0)
#else
#define STAMP(i) do { } while (0)
#endif
${sig} {
  extern __shared__ __align__(1024) unsigned char smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (warp == 0) STAMP(0);
  const int tile = blockIdx.x / CL, rank = blockIdx.x % CL, n0 = tile * ROWS;
  const int kb0 = rank * NKB, nkb = max(0, min(NKB, KBN - kb0));  // this CTA's K blocks [kb0, kb0 + nkb)
  const int chunks = (nkb + KC - 1) / KC;
  // Shared: [tokens NKB × (NT × 128 B)][ring][token scales NKB × NT][B scales NKB][partials][barriers]
  const u32 tok0 = (smem_addr(smem) + 1023) & ~1023u, ring0 = tok0 + ((NKB * NT * 128 + 1023) & ~1023),
            sa0 = ring0 + RING * RCHUNK + (64 - ROWS) * 128, sb0 = sa0 + NKB * NT * 4, part0 = (sb0 + NKB * 4 + 15) & ~15u,
            full0 = (part0 + NPART * 64 * NT * 4 + 7) & ~7u, empty0 = full0 + 8 * RING, pbar = empty0 + 8 * RING,
            stuck = pbar + 8;
  const bool producer = warp == 4 * WG && lane == 0;
  // The producer thread sets up the barriers and issues the first RING chunks before anything else: the
  // weights are constants, and every cycle before the first request is DRAM time lost.
  auto issue = [&](int j) {
    const int nk = min(KC, nkb - j * KC);
    const u32 slot = ring0 + (u32)(j % RING) * RCHUNK, bar = full0 + 8 * (j % RING);
    mbar_expect_tx(bar, (u32)(nk * TILEB));
    for (int i = 0; i < nk; i++) tma_load_2d(slot + i * TILEB, &bmap, (kb0 + j * KC + i) * 128, n0, bar);
  };
  if (producer) {
    asm volatile("prefetch.tensormap [%0];" :: "l"((u64)&bmap) : "memory");
    for (int i = 0; i < RING; i++) {
      mbar_init(full0 + 8 * i, 1);
      mbar_init(empty0 + 8 * i, 4);  // the 4 warps of the chunk's warpgroup
    }
    mbar_init(pbar, 128 * WG * CL);  // every consumer thread of the cluster, once its partial is stored
    asm volatile("st.shared.u32 [%0], 0;" :: "r"(stuck) : "memory");
    mbar_init_fence();
    for (int j = 0; j < min(RING, chunks); j++) issue(j);
    STAMP(8);
  }
  __syncthreads();
#if CL > 1
  // every CTA of the cluster has started and initialised its barriers before the partials cross: arrive
  // now, wait just before the remote stores
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
  if (warp == 4 * WG) {
#if PDL
    kiln_pdl_launch_dependents();
#endif
    if (producer) {
      for (int j = RING; j < chunks; j++) {
        mbar_wait(empty0 + 8 * (j % RING), ((j / RING) - 1) & 1, stuck);
        issue(j);
      }
    }
#if CL > 1
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#endif
  } else {
#if MODE == 0
    // the B scales of this CTA's K blocks (constants: before the PDL wait)
    for (int e = threadIdx.x; e < nkb; e += 128 * WG) {
      const float v = load_sb(sb + (long long)(n0 >> 7) * KBN + kb0 + e);
      asm volatile("st.shared.f32 [%0], %1;" :: "r"(sb0 + 4 * e), "f"(v) : "memory");
    }
#endif
${GEMM_PDL_WAIT}    if (warp == 0) STAMP(1);
    const int ct = threadIdx.x;  // 0 .. 128·WG - 1
    // Stage the tokens (128B swizzle: 16-byte piece q of token row r at piece q ^ (r % 8)), 16 bytes per
    // load, all loads in flight before the first store; rows ≥ M are zeros.
#define TOKV (NKB * NT * 8)
#define TOKPER ((TOKV + 128 * WG - 1) / (128 * WG))
    {
      uint4 v[TOKPER];
#pragma unroll
      for (int i = 0; i < TOKPER; i++) {
        const int e = ct + i * 128 * WG, kb = e / (NT * 8), r = (e / 8) % NT;
        v[i] = make_uint4(0, 0, 0, 0);
        if (e < nkb * NT * 8 && r < M) v[i] = ld_act16((const unsigned char*)a + (long long)r * lda + (long long)(kb0 + kb) * 128 + 16 * (e & 7));
      }
#if MODE == 0
      float sv = 0.f;
      if (ct < nkb * NT && ct % NT < M) sv = ld_act_sa(sa + (long long)(kb0 + ct / NT) * sas + ct % NT);
#endif
#pragma unroll
      for (int i = 0; i < TOKPER; i++) {
        const int e = ct + i * 128 * WG, kb = e / (NT * 8), r = (e / 8) % NT, q = e & 7;
        if (e < nkb * NT * 8) {
          const u32 dst = tok0 + kb * NT * 128 + r * 128 + ((q ^ (r & 7)) << 4);
          asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};" :: "r"(dst), "r"(v[i].x), "r"(v[i].y), "r"(v[i].z), "r"(v[i].w) : "memory");
        }
      }
#if MODE == 0
      if (ct < nkb * NT) asm volatile("st.shared.f32 [%0], %1;" :: "r"(sa0 + 4 * ct), "f"(sv) : "memory");
      for (int e = ct + 128 * WG; e < nkb * NT; e += 128 * WG) {  // more scales than threads (large K per CTA)
        const float v2 = e % NT < M ? ld_act_sa(sa + (long long)(kb0 + e / NT) * sas + e % NT) : 0.f;
        asm volatile("st.shared.f32 [%0], %1;" :: "r"(sa0 + 4 * e), "f"(v2) : "memory");
      }
#endif
    }
    // the tokens are written by the generic proxy and read by wgmma (async proxy)
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    asm volatile("bar.sync 1, %0;" :: "r"(128 * WG) : "memory");
    if (warp == 0) STAMP(2);

    const int wg = warp >> 2, w = warp & 3, g = lane >> 2, t = lane & 3;
    float acc[NT / 2], tmp[NT / 2];
#pragma unroll
    for (int i = 0; i < NT / 2; i++) acc[i] = 0.f;
    for (int j = wg; j < chunks; j += WG) {  // warpgroup wg takes chunks wg, wg + WG, …
      const int nk = min(KC, nkb - j * KC);
      const u32 slot = ring0 + (u32)(j % RING) * RCHUNK;
      mbar_wait(full0 + 8 * (j % RING), (j / RING) & 1, stuck);
      if (warp == 0 && j == 0) STAMP(3);
      if (warp == 0 && j + WG >= chunks) STAMP(4);
      for (int kk = 0; kk < nk; kk++) {
        const int kb = j * KC + kk;  // CTA-local K block
        wgmma_fence();
#pragma unroll
        for (int s = 0; s < 4; s++) {
#if MODE == 0
          WGMMA(tmp, desc_sw128(slot + kk * TILEB + 32 * s), desc_sw128(tok0 + kb * NT * 128 + 32 * s), s > 0);
#else
          WGMMA(acc, desc_sw128(slot + kk * TILEB + 32 * s), desc_sw128(tok0 + kb * NT * 128 + 32 * s), 1);
#endif
        }
        wgmma_commit();
        wgmma_wait0();
#if MODE == 0
        float bs;
        asm volatile("ld.shared.f32 %0, [%1];" : "=f"(bs) : "r"(sb0 + 4 * kb));
#pragma unroll
        for (int i = 0; i < NT / 2; i++) {
          // column (token) of accumulator i: 8·(i / 4) + 2t + (i & 1)
          float av;
          asm volatile("ld.shared.f32 %0, [%1];" : "=f"(av) : "r"(sa0 + 4 * (kb * NT + 8 * (i >> 2) + 2 * t + (i & 1))));
          acc[i] += tmp[i] * (av * bs);
        }
#endif
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(empty0 + 8 * (j % RING));
    }
    if (warp == 0) STAMP(5);
    // partial of this warpgroup → slot (rank·WG + wg) of the leader's partials: [part][token][64 rows]
    const u32 mine = part0 + (u32)((rank * WG + wg) * NT * 64) * 4;
#if CL > 1
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#endif
#pragma unroll
    for (int i = 0; i < NT / 2; i++) {
      const int tok = 8 * (i >> 2) + 2 * t + (i & 1), row = 16 * w + g + 8 * ((i >> 1) & 1);
      if (row >= ROWS) continue;
      const u32 addr = mine + 4 * (tok * 64 + row);
#if CL > 1
      asm volatile("{\\n.reg .b32 ra;\\nmapa.shared::cluster.u32 ra, %0, 0;\\nst.shared::cluster.f32 [ra], %1;\\n}\\n" :: "r"(addr), "f"(acc[i]) : "memory");
#else
      asm volatile("st.shared.f32 [%0], %1;" :: "r"(addr), "f"(acc[i]) : "memory");
#endif
    }
    // this thread's partial is in the leader's shared memory: arrive there (release: the stores first)
#if CL > 1
    asm volatile("{\\n.reg .b32 ra;\\nmapa.shared::cluster.u32 ra, %0, 0;\\nmbarrier.arrive.release.cluster.shared::cluster.b64 _, [ra];\\n}\\n" :: "r"(pbar) : "memory");
#else
    mbar_arrive(pbar);
#endif
  }
  if (rank != 0) return;  // the others are done: nothing reads their shared memory
  // the leader waits for all partials of the cluster (acquire: their stores are visible)
  {
    const u32 t0 = global_ticks();
    for (;;) {
      u32 ok;
      asm volatile("{\\n.reg .pred P1;\\nmbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 P1, [%1], 0;\\nselp.u32 %0, 1, 0, P1;\\n}\\n"
                   : "=r"(ok) : "r"(pbar) : "memory");
      if (ok || global_ticks() - t0 >= 3u) break;  // watchdog as in mbar_wait: a lost arrival ends the kernel
    }
  }
  if (warp == 0) STAMP(6);
  // the leader: sum the partials in order, finish, store out[m][n0 + row] (two rows per thread)
  for (int e = threadIdx.x; e < NT * (ROWS / 2); e += blockDim.x) {
    const int m = e / (ROWS / 2), row = 2 * (e % (ROWS / 2)), n = n0 + row;
    if (m < M && n < N) {
      float v0 = 0.f, v1 = 0.f;
      for (int p = 0; p < NPART; p++) {
        float x0, x1;
        asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];" : "=f"(x0), "=f"(x1) : "r"(part0 + 4 * ((p * NT + m) * 64 + row)));
        v0 += x0;
        v1 += x1;
      }
      v0 = finish(v0, sa, sb, ${op.bias ? "bias" : "nullptr"}, m, n);
      v1 = n + 1 < N ? finish(v1, sa, sb, ${op.bias ? "bias" : "nullptr"}, m, n + 1) : 0.f;
      store_pair(out, ldc, m, n, N, v0, v1);
    }
  }
  if (warp == 0) STAMP(7);
}
`;
  return {
    name,
    source,
    entry: name,
    params,
    block: [threads, 1, 1],
    sharedBytes: smallMWgmmaSharedBytes(op.K, cfg),
    ...(cfg.cluster > 1 ? { cluster: [cfg.cluster, 1, 1] as const } : {}),
    minArch: 90,
    archSpecific: true,
    ...(pdl ? { pdl: true } : {}),
    keyParts: { family: "gemm_smallm3", ...cfg, pdl },
  };
}

// ---- driver ---------------------------------------------------------------------------------------------
const mode = Deno.args[0] ?? "bench";
if (mode === "--compile") {
  const { compileFor } = await import("../runtime/mod.ts");
  for (const [M, N, K] of [[1, 2112, 7168], [16, 7168, 2048], [4, 7168, 16384]]) {
    const ks = smallMWgmmaKernel(blockMatmulOp({ N, K }), smallMWgmmaConfig(M, N, K));
    const r = await compileFor(ks, "sm_90a", false);
    console.log(ks.name, (r.log ?? "").match(/Used \d+ registers/)?.[0]);
  }
  Deno.exit(0);
}
const dev = Device.get(), copy = await copyBandwidth(), rng = new Rng(3);
const SHAPES = JSON.parse(Deno.env.get("SHAPES") ?? "[[2112,7168],[7168,2048],[4096,7168]]") as [
  number,
  number,
][];
const MS = JSON.parse(Deno.env.get("MS") ?? "[1,16]") as number[];
const VAR = JSON.parse(Deno.env.get("VAR") ?? "[]") as Partial<SmallMWgmmaConfig>[];
const rows: Row[] = [];
for (const [N, K] of SHAPES) {
  const d = uploadSmallM(dev, N, K, rng), { p, sets, bs, sb, a, sa } = d;
  const ref = new SampledReference(p, Array.from({ length: 16 }, (_, i) => i), sampleCols(N, K, rng, 4e6));
  const op = blockMatmulOp({ N, K });
  const maps = new Map<number, Uint8Array[]>();
  const mapsFor = (r: number) => {
    let m = maps.get(r);
    if (!m) {
      m = bs.map((t) =>
        encodeTensorMap({
          dtype: "fp8e4m3",
          address: t.ptr,
          dims: [K, N],
          strides: [K],
          box: [128, r],
          swizzle: "128B",
        })
      );
      maps.set(r, m);
    }
    return m;
  };
  for (const M of MS) {
    const v1 = smallMConfig(M, N, K, dev.info.smCount), d3 = smallMWgmmaConfig(M, N, K, dev.info.smCount);
    const list: (["v1", typeof v1] | ["v3", SmallMWgmmaConfig])[] = mode === "trace"
      ? [["v3", { ...d3, ...VAR[0] }]]
      : [["v1", v1], ["v3", d3], ...VAR.map((v) => ["v3", { ...d3, ...v }] as ["v3", SmallMWgmmaConfig])];
    let base = 0;
    for (const [kind, cfg] of list) {
      let ks = kind === "v1"
        ? smallMKernel(op, cfg as typeof v1)
        : smallMWgmmaKernel(op, cfg as SmallMWgmmaConfig);
      if (mode === "trace") ks = { ...ks, name: `${ks.name}_tr`, options: ["-DKILN_TRACE"] };
      const k = await jit(ks);
      const c3 = cfg as SmallMWgmmaConfig;
      const grid = kind === "v1" ? smallMGrid(N, cfg as typeof v1) : smallMWgmmaGrid(N, c3);
      const sh = kind === "v1" ? cappedShared(dev, k, ks, grid) : ks.sharedBytes;
      // trace: the stamps go after out's 16 rows
      using out = Tensor.empty("bf16", [mode === "trace" ? 96 : M, N]);
      const args = (i: number) => {
        const f = [a, sa, bs[i % sets], sb, out, M, N, K, K, p.P, N];
        return kind === "v1" ? f : [...f, mapsFor(c3.rows ?? 64)[i % sets]];
      };
      const run = (i: number) => k.launch(grid, args(i), { sharedBytes: sh });
      out.fill(0xff);
      run(0);
      dev.synchronize();
      const err = checkOutput(out.toHost() as Uint16Array, "bf16", M, N, ref, ks.name);
      const us = Math.min(await graphUs(run), await graphUs(run));
      if (mode === "trace") {
        const names = [
          "start",
          "pdl wait",
          "tokens",
          "1st chunk",
          "last chunk",
          "compute end",
          "partials",
          "end",
        ];
        names.push("issued");
        console.log(
          `${ks.name}: ${us.toFixed(2)} µs per call (graph of 20); µs after the first CTA's start:`,
        );
        stampStats(out.toHost() as Uint16Array, N, grid, 9).forEach((st, s) => {
          if (!st) return;
          console.log(
            `  ${names[s].padEnd(12)} med ${st.med.toFixed(2)}  p90 ${st.p90.toFixed(2)}  max ${
              st.max.toFixed(2)
            }`,
          );
        });
        continue;
      }
      if (!base) base = us;
      rows.push({
        shape: `${M}x${N}x${K}`,
        kernel: kind === "v1"
          ? `v1 rt${v1.rt} wk${v1.wk}`
          : `v3 n${c3.n} c${c3.cluster} g${c3.wg} kc${c3.kc} r${c3.ring} m${c3.rows ?? 64}`,
        grid,
        "µs": us.toFixed(2),
        "% copy": (100 * N * K / (us * 1e-6) / copy).toFixed(1),
        "× v1": (base / us).toFixed(3),
        err: err.toExponential(2),
      });
      console.error(JSON.stringify(rows.at(-1)));
    }
  }
  d.dispose();
}
if (rows.length) {
  printTable(`wgmma small-M probe (${dev.info.name}, copy ${(copy / 1e12).toFixed(2)} TB/s)`, rows);
}
