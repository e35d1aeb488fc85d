/**
 * `ctasPerSm`: each of the four limits binds where it should (registers per warp in units of 256,
 * threads, 32 CTAs, shared memory with 1 KB reserved per CTA).
 */
import assert from "node:assert/strict";
import { ctasPerSm } from "../../runtime/occupancy.ts";

Deno.test("occupancy: registers (rounded per warp), threads, CTA count and shared memory each bind", () => {
  const smem = 233472;
  // registers: 168 × 32 = 5376 per warp → 4 warps 21504 → 3 CTAs; 77 registers round up to 80 per thread
  assert.equal(ctasPerSm({ threads: 128, registers: 168, sharedBytes: 0, maxSharedPerSM: smem }), 3);
  assert.equal(ctasPerSm({ threads: 512, registers: 77, sharedBytes: 0, maxSharedPerSM: smem }), 1);
  assert.equal(ctasPerSm({ threads: 512, registers: 64, sharedBytes: 0, maxSharedPerSM: smem }), 2);
  // threads: 2048 per SM; CTAs: at most 32
  assert.equal(ctasPerSm({ threads: 1024, registers: 16, sharedBytes: 0, maxSharedPerSM: smem }), 2);
  assert.equal(ctasPerSm({ threads: 32, registers: 16, sharedBytes: 0, maxSharedPerSM: smem }), 32);
  // shared memory: (smem + 1 KB) per CTA; 0 means 228 KB; a CTA that does not fit gives 0
  assert.equal(ctasPerSm({ threads: 128, registers: 32, sharedBytes: 76816, maxSharedPerSM: smem }), 2);
  assert.equal(ctasPerSm({ threads: 128, registers: 32, sharedBytes: 76816, maxSharedPerSM: 0 }), 2);
  assert.equal(ctasPerSm({ threads: 128, registers: 32, sharedBytes: 300000, maxSharedPerSM: smem }), 0);
});
