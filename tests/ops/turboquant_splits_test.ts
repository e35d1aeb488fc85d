/**
 * The decode split model (`turboQuantSplits`, pure): the counts the H200 measurements favoured.
 */
import assert from "node:assert/strict";
import { turboQuantSplits } from "../../ops/turboquant.ts";

const h200 = { maxSplits: 32, smCount: 132 };

Deno.test("turboquant splits: one full wave of 8-warp CTAs at B 16 / 64 × 8k; short contexts get few splits", () => {
  const v3 = { ...h200, ctasPerSm: 2, warpsPerCta: 8 };
  assert.equal(turboQuantSplits({ ...v3, ctas: 16, maxLen: 8192 }), 16); // 256 CTAs ≤ 264 slots
  assert.equal(turboQuantSplits({ ...v3, ctas: 64, maxLen: 8192 }), 4);
  assert.equal(turboQuantSplits({ ...v3, ctas: 16, maxLen: 32768 }), 16);
  assert.equal(turboQuantSplits({ ...v3, ctas: 64, maxLen: 32768 }), 4);
  // never more splits than 16-token tiles, at least one
  assert.equal(turboQuantSplits({ ...v3, ctas: 1, maxLen: 20 }), 2);
  assert.equal(turboQuantSplits({ ...v3, ctas: 1, maxLen: 1 }), 1);
  assert.equal(turboQuantSplits({ ...v3, ctas: 4096, maxLen: 8192 }), 1);
});

Deno.test("turboquant splits: streaming (fp8 keys on v3) counts 8 warps per SM (k8v4: S 8 at B 16 × 8k, S 4 at Hk 4 B 64)", () => {
  assert.equal(
    turboQuantSplits({ ...h200, ctasPerSm: 2, warpsPerCta: 8, streaming: true, ctas: 16, maxLen: 8192 }),
    8,
  );
  assert.equal(
    turboQuantSplits({ ...h200, ctasPerSm: 2, warpsPerCta: 4, streaming: true, ctas: 64, maxLen: 8192 }),
    4,
  );
});
