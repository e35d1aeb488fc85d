/**
 * The pieces of the deferred-promotion steps (e, f): a math warpgroup keeps two wgmma temp accumulators
 * `t0`, `t1` ("slots") and always has one k-block's wgmmas queued on the tensor core while it promotes the
 * previous one. Each slot remembers what its k-block needs after the wgmmas finish (`mt_p`, `tl_p`, and
 * in block mode its scale products — see {@linkcode deferredState}). Variable names are fixed (see each
 * function) so the step file reads like the kernel it generates.
 *
 * @module
 */
import { sm90Cluster, type Sm90Config } from "./config.ts";
import { wgmmaGroup } from "./parts.ts";

/** Device helpers only the deferred steps use (kept out of SM90_HELPERS so steps a–d stay byte-identical). */
export const SM90_DEFERRED_HELPERS = String.raw`
// Wait until at most one committed wgmma group of this warpgroup is still running.
__device__ __forceinline__ void wgmma_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); }
`;

/** Whether a BN-wide tile can straddle two 128-column B-scale blocks (then each slot carries two). */
function twoBlocks(c: Sm90Config): boolean {
  return c.mode === "block" && 128 % c.blockN !== 0;
}

/**
 * Declarations of the issue cursor and the two slots. Needs: tileStart, numTiles, TILE_OF, N, nK.
 * Defines `ti`, `kbi`, `it` (the next k-block to issue: tile, k-block, ring index), `done`, the cursor
 * tile's B-scale row offsets `sbI`/`sbHiI` and scale-block split `splitI` (block mode, refreshed by
 * `SET_ISSUE_TILE()`), and per slot p: `mt_p` (packed: bit 0 a real k-block — not a dummy —, bit 1 the
 * tile's last k-block, bits 2–7 the ring stage, bits 8+ the split), `tl_p` (its tile) and in block mode
 * its scale products `s0_p`, `s1_p` (rows r0, r0 + 8 × the low B-scale block; `h0_p`, `h1_p` × the high
 * one). Packing and pre-multiplying keep the math warpgroups below the 232-register cap with margin:
 * three BN/2 accumulators already take 192 of them.
 */
export function deferredState(c: Sm90Config): string {
  const block = c.mode === "block", two = twoBlocks(c);
  const setTile = !block
    ? "#define SET_ISSUE_TILE() {}"
    : two
    ? `#define SET_ISSUE_TILE() { int mb_, nb_; TILE_OF(ti, mb_, nb_); const int n0_ = nb_ * BN, nb0_ = n0_ / 128; \
      sbI = nb0_ * nK; sbHiI = min(nb0_ + 1, (N - 1) / 128) * nK; splitI = 128 - n0_ % 128; }`
    : `#define SET_ISSUE_TILE() { int mb_, nb_; TILE_OF(ti, mb_, nb_); sbI = ((nb_ * BN) / 128) * nK; }`;
  const slot = (p: number) =>
    `u32 mt_${p} = 0; int tl_${p} = 0;` +
    (block ? ` float s0_${p} = 0.f, s1_${p} = 0.f;` : "") +
    (two ? ` float h0_${p} = 0.f, h1_${p} = 0.f;` : "");
  return `int ti = tileStart, kbi = 0;
    u32 it = 0;
    bool done = false; // set when an issue found no k-block left (its group is a dummy)
    ${block ? "int sbI = 0;" : ""}${two ? " int sbHiI = 0, splitI = 128;" : ""}
    ${setTile}
    SET_ISSUE_TILE();
    ${slot(0)}
    ${slot(1)}`;
}

/**
 * Issue into slot p: the cursor's k-block when one is left — wait for its stage, read its scales, queue
 * 4 × wgmma k32 into `t_p` (the first overwrites), commit, record the slot, advance the cursor (to the next
 * tile after the last k-block) — else a *dummy* group over stage 0 whose result is never read, and set
 * `done`. The wgmmas, commit and the caller's `wgmma.wait_group 1` are unconditional so that ptxas sees one
 * pipeline shape on every path (with the issue inside an `if`, it serializes every wgmma: C7514). The dummy
 * costs one k-block of tensor time per warpgroup per CTA lifetime and reads only smem whose loads have all
 * completed (every real k-block was waited for before it). Variables: see {@linkcode deferredState}, plus
 * wg, r0, base, sm, sb.
 */
export function deferredIssue(c: Sm90Config, p: number): string {
  const block = c.mode === "block", two = twoBlocks(c);
  return `{
        const bool real = ti < numTiles;
        const u32 s = real ? it % STAGES : 0u;
        if (real) {
          const u32 ph = (it / STAGES) & 1u;
          ${
    block ? `const float bl_ = __ldg(sb + sbI + kbi)${two ? ", bh_ = __ldg(sb + sbHiI + kbi)" : ""};` : ""
  }
          mbar_wait(FULL(s), ph, STUCK);
          ${
    block
      ? `const float* sas = (const float*)(sm + SA_OFF + s * SA_STAGE);
          const float a0_ = sas[r0], a1_ = sas[r0 + 8];
          s0_${p} = a0_ * bl_;
          s1_${p} = a1_ * bl_;${
        two
          ? `
          h0_${p} = a0_ * bh_;
          h1_${p} = a1_ * bh_;`
          : ""
      }`
      : ""
  }
          mt_${p} = 1u | (kbi == nK - 1 ? 2u : 0u) | (s << 2)${two ? " | ((u32)splitI << 8)" : ""};
          tl_${p} = ti;
          ++it;
          if (++kbi == nK) {
            kbi = 0;
            ti += tileStep;
            if (ti < numTiles) SET_ISSUE_TILE();
          }
        } else {
          mt_${p} = 0u;
          done = true;
        }
        ${wgmmaGroup(c, `t${p}`)}
      }`;
}

/**
 * Promote slot p into `fin`: block mode fin += (sa·sb)·t_p (per 8-column chunk the B-scale of its
 * 128-column block), other modes fin += t_p (scales applied in the epilogue).
 */
export function deferredPromote(c: Sm90Config, p: number): string {
  if (c.mode !== "block") {
    return `#pragma unroll
        for (int j = 0; j < BN / 2; ++j) fin[j] += t${p}[j];`;
  }
  const two = twoBlocks(c);
  return `{
        ${two ? `const int split = (int)(mt_${p} >> 8);` : ""}
        #pragma unroll
        for (int i = 0; i < BN / 8; ++i) {
          ${two ? "const bool lo = 8 * i < split;" : ""}
          const float sr0 = ${two ? `lo ? s0_${p} : h0_${p}` : `s0_${p}`}, sr1 = ${
    two ? `lo ? s1_${p} : h1_${p}` : `s1_${p}`
  };
          fin[4 * i + 0] += sr0 * t${p}[4 * i + 0];
          fin[4 * i + 1] += sr0 * t${p}[4 * i + 1];
          fin[4 * i + 2] += sr1 * t${p}[4 * i + 2];
          fin[4 * i + 3] += sr1 * t${p}[4 * i + 3];
        }
      }`;
}

/** Release slot p's ring stage: one arrival per math warp (on both CTAs' barriers with a cluster). */
export function deferredRelease(c: Sm90Config, p: number): string {
  const st = `((mt_${p} >> 2) & 63u)`;
  return sm90Cluster(c) > 1
    ? `if (lane == 0) { mbar_arrive_cluster(EMPTY(${st}), 0); mbar_arrive_cluster(EMPTY(${st}), 1); }`
    : `if (lane == 0) mbar_arrive(EMPTY(${st}));`;
}

/**
 * Per-warpgroup TMA-store epilogue: each math warpgroup owns `waves` 64-row slices of the output tile in
 * smem (slice q = wg·waves + w at `D_OFF + q·64·BN·2`; wave w's values in `fin`, `fin1`), syncs only its
 * own 128 threads (named barrier 2 + wg) and its first thread issues its slices' stores — so one
 * warpgroup's epilogue never waits for the other, whose queued wgmmas keep the tensor core busy meanwhile.
 * The store's smem reads are awaited one tile later (same thread).
 * Variables: m0, n0, wg, warp, lane, fin (+ fin1 with two waves), base, tmD, M, N.
 */
export function deferredTmaEpilogue(waves: 1 | 2 = 1): string {
  const slice = (w: number) => (waves === 1 ? "wg" : `(2u * wg + ${w}u)`);
  const fins = waves === 1 ? ["fin"] : ["fin", "fin1"];
  const stmatrix = fins.map((f, w) =>
    `{
          const u32 dwg = base + D_OFF + ${slice(w)} * (64u * (u32)BN * 2u);
          #pragma unroll
          for (int ip = 0; ip < BN / 16; ++ip) {
            const u32 col = (u32)(2 * ip + (int)(mat >> 1)) * 8u;
            const u32 box = col / STORE_COLS, chunk = (col % STORE_COLS) / 8u;
            const u32 addr = dwg + box * 64u * SW + row * SW + ((chunk ^ ((row * SW >> 7) & SWMASK)) << 4);
            stmatrix_x4(addr, pack_bf16x2(${f}[8 * ip + 0], ${f}[8 * ip + 1]), pack_bf16x2(${f}[8 * ip + 2], ${f}[8 * ip + 3]),
                        pack_bf16x2(${f}[8 * ip + 4], ${f}[8 * ip + 5]), pack_bf16x2(${f}[8 * ip + 6], ${f}[8 * ip + 7]));
          }
        }`
  ).join("\n        ");
  const stores = fins.map((_, w) =>
    `{
            const int mw = m0 + (int)${slice(w)} * 64;
            const u32 dwg = base + D_OFF + ${slice(w)} * (64u * (u32)BN * 2u);
            if (mw < M) { // slices wholly past M (ragged last tiles, step f's dummy tiles) are not stored
              #pragma unroll
              for (int b = 0; b < BN / STORE_COLS; ++b) {
                if (n0 + b * STORE_COLS < N) tma_store_2d(&tmD, n0 + b * STORE_COLS, mw, dwg + (u32)b * 64u * SW);
              }
            }
          }`
  ).join("\n          ");
  return `{
        const bool leader = (threadIdx.x & 127u) == 0u;
        if (leader) tma_store_wait_read();
        named_bar_sync(2u + wg, 128u);
        constexpr u32 SW = STORE_SWIZZLE, SWMASK = SW / 16 - 1;
        const u32 mat = lane >> 3;
        const u32 row = (warp & 3u) * 16u + (lane & 7u) + ((mat & 1u) << 3); // row inside the 64-row slice
        ${stmatrix}
        fence_async_shared();
        named_bar_sync(2u + wg, 128u);
        if (leader) {
          ${stores}
          tma_store_commit();
        }
      }`;
}
