/**
 * The Hopper PTX the sm_90a GEMM ladder needs, as header-free CUDA device helpers (NVRTC gets no include
 * path). Every instruction here is in PTX ISA 8.0+ for `sm_90a`; the facts behind each one:
 *
 * - wgmma smem descriptor (64 bit): bits 0–13 start address >> 4, 16–29 leading byte offset >> 4 (unused
 *   for a K-major tile that is one 128-byte swizzle atom wide), 32–45 stride byte offset >> 4 (1024 B =
 *   8 rows × 128 B between 8-row core-matrix groups), 49–51 base offset (0: tiles are 1024-B aligned),
 *   62–63 layout (1 = 128-byte swizzle). Advancing K by 32 fp8 inside the atom adds 32 B (= 2 in the
 *   >>4 field) to the start address; the hardware applies the XOR swizzle on the final address bits.
 * - `wgmma.mma_async.sync.aligned.m64nNk32.f32.e4m3.e4m3 d, adesc, bdesc, p, 1, 1`: FP8 has no transpose
 *   immediates, both operands are K-major; `p` false overwrites d (no zeroing needed).
 * - mbarrier parity protocol: a waiter passes the parity of the phase it waits for; a fresh barrier
 *   reports the phase "before" 0 (parity 1) as complete, so a producer's first wait on `empty` with
 *   parity 1 returns at once.
 * - `cp.async.bulk.tensor.2d` loads complete bytes on an mbarrier (`complete_tx`); the full box is always
 *   counted, out-of-bounds elements included (they are zero-filled), so expect_tx is a compile-time sum.
 *
 * @module
 */

/**
 * The mbarrier helpers alone (init + fence, try / watchdog wait, arrive, expect_tx) and the generic →
 * async proxy fence: the TurboQuant decode v3 pipeline uses them too. Needs `u32` and `smem_addr`-free code only.
 */
export const MBAR_HELPERS: string = String
  .raw`// ---- mbarrier --------------------------------------------------------------------------------
__device__ __forceinline__ void mbar_init(u32 bar, u32 count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bar), "r"(count) : "memory");
}
// Make the barrier inits visible to the async proxy (TMA) and to the rest of the cluster.
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
__device__ __forceinline__ u32 mbar_try(u32 bar, u32 parity) {
  u32 ok;
  asm volatile(
    "{\n"
    ".reg .pred P1;\n"
    "mbarrier.try_wait.parity.shared::cta.b64 P1, [%1], %2;\n"
    "selp.u32 %0, 1, 0, P1;\n"
    "}\n" : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
  return ok;
}
// Upper 32 bits of the nanosecond global timer: ticks every 2^32 ns ≈ 4.3 s (one 32-bit register).
__device__ __forceinline__ u32 global_ticks() {
  u32 t;
  asm volatile("mov.u32 %0, %%globaltimer_hi;" : "=r"(t));
  return t;
}
// Wait for the phase of parity 'parity' to complete. Watchdog: a wait of 3 timer ticks (8.6–12.9 s) can
// only be a protocol bug (a lost arrival, a wrong parity), so the waiter gives up and raises the CTA's
// 'stuck' flag (the word after the barriers), after which every wait of the CTA returns at once: the
// kernel ends with a wrong result the tests report, instead of hanging the GPU. (A trap would do, but it
// makes ptxas spill the 192-wide accumulators.) The fast path costs one try_wait.
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity, u32 stuck) {
  if (mbar_try(bar, parity)) return;
  const u32 t0 = global_ticks();
  while (!mbar_try(bar, parity)) {
    u32 f;
    asm volatile("ld.volatile.shared.u32 %0, [%1];" : "=r"(f) : "r"(stuck) : "memory");
    if (f) break;
    if (global_ticks() - t0 >= 3u) {
      asm volatile("st.volatile.shared.u32 [%0], %1;" :: "r"(stuck), "r"(1u) : "memory");
      break;
    }
  }
}
__device__ __forceinline__ void mbar_arrive(u32 bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bar) : "memory");
}
// Arrive on the barrier at the same shared offset in CTA 'cta' of the cluster (itself included).
__device__ __forceinline__ void mbar_arrive_cluster(u32 bar, u32 cta) {
  asm volatile(
    "{\n"
    ".reg .b32 remote;\n"
    "mapa.shared::cluster.u32 remote, %0, %1;\n"
    "mbarrier.arrive.shared::cluster.b64 _, [remote];\n"
    "}\n" :: "r"(bar), "r"(cta) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(u32 bar, u32 bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar), "r"(bytes) : "memory");
}

// Order this thread's generic-proxy shared writes before later async-proxy (TMA) reads.
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
`;

/** Device helpers shared by every kernel of the ladder (pure text, deterministic). */
export const SM90_HELPERS = String.raw`
typedef unsigned long long u64;
typedef unsigned int u32;

__device__ __forceinline__ u32 smem_addr(const void* p) { return (u32)__cvta_generic_to_shared(p); }

${MBAR_HELPERS}// ---- TMA ---------------------------------------------------------------------------------------
__device__ __forceinline__ void tma_prefetch(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" :: "l"((u64)map) : "memory");
}
// 2D tile load global -> shared, completion counted in bytes on 'bar'. c0 = innermost coordinate.
__device__ __forceinline__ void tma_load_2d(u32 dst, const CUtensorMap* map, int c0, int c1, u32 bar) {
  asm volatile(
    "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
    :: "r"(dst), "l"((u64)map), "r"(c0), "r"(c1), "r"(bar) : "memory");
}
// The same tile lands at the same shared offset in every CTA of 'mask' (and signals each one's 'bar').
__device__ __forceinline__ void tma_load_2d_multicast(u32 dst, const CUtensorMap* map, int c0, int c1, u32 bar,
                                                      unsigned short mask) {
  asm volatile(
    "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
    " [%0], [%1, {%2, %3}], [%4], %5;"
    :: "r"(dst), "l"((u64)map), "r"(c0), "r"(c1), "r"(bar), "h"(mask) : "memory");
}
// 2D tile store shared -> global (elements outside the tensor are not written).
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, int c0, int c1, u32 src) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];"
               :: "l"((u64)map), "r"(c0), "r"(c1), "r"(src) : "memory");
}
__device__ __forceinline__ void tma_store_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
// Wait until the committed stores have finished reading shared memory (the tile may be rewritten).
__device__ __forceinline__ void tma_store_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
}
// Wait until the committed stores are complete (visible in global memory).
__device__ __forceinline__ void tma_store_wait_all() { asm volatile("cp.async.bulk.wait_group 0;" ::: "memory"); }

// ---- wgmma -------------------------------------------------------------------------------------
__device__ __forceinline__ u64 desc_sw128(u32 addr) {
  return (u64)((addr & 0x3FFFF) >> 4) | ((u64)1 << 16) | ((u64)64 << 32) | ((u64)1 << 62);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
__device__ __forceinline__ void fence_reg(float& r) { asm volatile("" : "+f"(r) :: "memory"); }

// ---- warpgroup register split, named barriers, cluster -------------------------------------------
__device__ __forceinline__ void setmaxnreg_dec40() { asm volatile("setmaxnreg.dec.sync.aligned.u32 40;" ::: "memory"); }
__device__ __forceinline__ void setmaxnreg_inc232() { asm volatile("setmaxnreg.inc.sync.aligned.u32 232;" ::: "memory"); }
__device__ __forceinline__ void named_bar_sync(u32 id, u32 threads) {
  asm volatile("bar.sync %0, %1;" :: "r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ u32 cluster_rank() {
  u32 r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// ---- epilogue ----------------------------------------------------------------------------------
// Two floats -> bf16x2 (lo in the low half), round to nearest even.
__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
  u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
__device__ __forceinline__ void stmatrix_x4(u32 addr, u32 r0, u32 r1, u32 r2, u32 r3) {
  asm volatile("stmatrix.sync.aligned.x4.m8n8.shared.b16 [%0], {%1, %2, %3, %4};"
               :: "r"(addr), "r"(r0), "r"(r1), "r"(r2), "r"(r3) : "memory");
}
`;

/**
 * C text of one wgmma group into accumulator array `acc` (`regs` floats per thread): register fences, the
 * warpgroup fence, `steps` m64n{n}k32 wgmmas over descriptors `da`/`db` advanced 32 bytes per step, one
 * commit, fences again. The caller waits for the group. `regs`, `steps` and `scaleD` are C expressions (the
 * GEMM steps pass `BN / 2` and `BK / 32`; `scaleD` = `k`: the first step overwrites the accumulator, `1u`:
 * every step accumulates).
 */
export function wgmmaIssue(n: number, acc: string, regs: string, steps: string, scaleD = "k"): string {
  return `#pragma unroll
        for (int j = 0; j < ${regs}; ++j) fence_reg(${acc}[j]);
        wgmma_fence();
        #pragma unroll
        for (u32 k = 0; k < ${steps}; ++k) wgmma_m64n${n}k32(${acc}, da + 2u * k, db + 2u * k, ${scaleD});
        wgmma_commit();
        #pragma unroll
        for (int j = 0; j < ${regs}; ++j) fence_reg(${acc}[j]);`;
}

/**
 * One `wgmma m64n{n}k32 e4m3·e4m3 → f32` with both operands in shared memory, as a device function over an
 * accumulator array of `n/2` floats. `scale_d` = 0 overwrites the accumulator, 1 accumulates.
 */
export function wgmmaFunction(n: number): string {
  if (!(Number.isInteger(n) && n % 8 === 0 && n >= 8 && n <= 256)) {
    throw new RangeError(`wgmma N must be a multiple of 8 in 8..256, got ${n}`);
  }
  const regs = n / 2;
  const dList = Array.from({ length: regs }, (_, i) => `%${i}`).join(", ");
  const outs = Array.from({ length: regs }, (_, i) => `"+f"(d[${i}])`).join(", ");
  return `
__device__ __forceinline__ void wgmma_m64n${n}k32(float* d, u64 adesc, u64 bdesc, u32 scale_d) {
  asm volatile(
    "{\\n"
    ".reg .pred p;\\n"
    "setp.ne.b32 p, %${regs + 2}, 0;\\n"
    "wgmma.mma_async.sync.aligned.m64n${n}k32.f32.e4m3.e4m3 {${dList}}, %${regs}, %${regs + 1}, p, 1, 1;\\n"
    "}\\n"
    : ${outs}
    : "l"(adesc), "l"(bdesc), "r"(scale_d));
}`;
}
