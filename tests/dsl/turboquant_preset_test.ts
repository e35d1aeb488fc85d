/**
 * TurboQuant presets and layouts, mirroring vLLM's `test_turboquant.py` config tests: preset parsing,
 * the exact packed sizes of `PRESET_EXPECTED` at D = 128 and for every head dim, invariants, unknown
 * presets, head dims a preset cannot take, user-defined presets, capacity.
 */
import assert from "node:assert/strict";
import {
  defineTurboQuantPreset,
  TURBOQUANT_PRESET_NAMES,
  TURBOQUANT_PRESETS,
  turboQuantCapacity,
  turboQuantLayout,
  turboQuantPreset,
} from "../../dsl/turboquant/mod.ts";

// vLLM's PRESET_EXPECTED (head_dim 128): key bits, value bits, NC, n_centroids, key/value/slot/aligned sizes
const EXPECTED: Record<string, [number, number, boolean, number, number, number, number, number]> = {
  turboquant_k8v4: [8, 4, false, 0, 128, 68, 196, 196],
  turboquant_4bit_nc: [4, 4, true, 16, 66, 68, 134, 134],
  turboquant_k3v4_nc: [3, 4, true, 8, 50, 68, 118, 118],
  turboquant_3bit_nc: [3, 3, true, 8, 50, 52, 102, 102],
};

// spec §1.3: slot bytes per (preset, head dim); undefined = the preset cannot take it
const SLOTS: Record<string, Record<number, number | undefined>> = {
  turboquant_k8v4: { 64: 100, 96: 148, 128: 196, 256: 388 },
  turboquant_4bit_nc: { 64: 70, 96: undefined, 128: 134, 256: 262 },
  turboquant_k3v4_nc: { 64: 62, 96: undefined, 128: 118, 256: 230 },
  turboquant_3bit_nc: { 64: 54, 96: undefined, 128: 102, 256: 198 },
};

Deno.test("turboquant presets: the four vLLM presets parse with PRESET_EXPECTED's fields and sizes", () => {
  assert.deepEqual([...TURBOQUANT_PRESET_NAMES].sort(), Object.keys(EXPECTED).sort());
  for (const [name, [kb, vb, nc, nCent, kBytes, vBytes, slot, aligned]] of Object.entries(EXPECTED)) {
    const p = turboQuantPreset(name);
    assert.equal(p, TURBOQUANT_PRESETS[name]);
    const l = turboQuantLayout(name, 128);
    assert.equal(l.keyFp8, kb === 8, name);
    assert.equal(l.keyBits, kb, name);
    assert.equal(l.valueBits, vb, name);
    assert.equal(l.normCorrection, nc, name);
    assert.equal(l.rotate, kb !== 8, name);
    assert.equal(l.centroids?.length ?? 0, nCent, name);
    assert.equal(l.keyBytes, kBytes, name);
    assert.equal(l.valueBytes, vBytes, name);
    assert.equal(l.slotBytes, slot, name);
    assert.equal(l.slotBytesAligned, aligned, name);
  }
});

Deno.test("turboquant presets: packed sizes for every head dim, and the invariants", () => {
  for (const name of TURBOQUANT_PRESET_NAMES) {
    for (const D of [64, 96, 128, 256]) {
      const want = SLOTS[name][D];
      if (want === undefined) {
        assert.throws(() => turboQuantLayout(name, D), /power-of-two head dim/);
        continue;
      }
      const l = turboQuantLayout(name, D);
      assert.equal(l.slotBytesAligned, want, `${name} D=${D}`);
      assert.equal(l.slotBytes, l.keyBytes + l.valueBytes);
      assert.ok(l.slotBytesAligned >= l.slotBytes && l.slotBytesAligned % 2 === 0);
      assert.ok(l.keyBytes > 0 && l.valueBytes > 0);
      assert.equal(l.keyBytes, l.keyFp8 ? D : Math.ceil((D * l.keyBits) / 8) + 2);
      assert.equal(l.valueBytes, Math.ceil((D * l.valueBits) / 8) + 4);
      // fp8 xor centroid keys
      assert.ok(l.keyFp8 ? l.keyBits === 8 && !l.centroids : l.keyBits === 3 || l.keyBits === 4);
      if (l.centroids) assert.equal(l.centroids.length, 2 ** l.keyBits);
      // offsets tile the slot
      const o = l.offsets;
      assert.equal(o.valueCodes, l.keyBytes);
      assert.equal(o.valueScale, o.valueCodes + l.valueCodeBytes);
      assert.equal(o.valueZero + 2, l.slotBytes);
      if (!l.keyFp8) assert.equal(o.keyNorm + 2, l.keyBytes);
    }
  }
});

Deno.test("turboquant presets: unknown presets and bad head dims give errors that say what is wrong", () => {
  assert.throws(() => turboQuantPreset("turboquant_2bit"), /Unknown TurboQuant preset "turboquant_2bit"/);
  assert.throws(() => turboQuantLayout("fp8", 128), /Unknown TurboQuant preset/);
  assert.throws(() => turboQuantLayout("turboquant_k8v4", 100), /not a multiple of 8/);
  assert.throws(() => turboQuantLayout("turboquant_k8v4", 0), /positive integer/);
  assert.throws(() => turboQuantLayout("turboquant_k8v4", 1024), /exceeds 512/);
  assert.throws(() => turboQuantLayout("turboquant_4bit_nc", 96), /power-of-two/);
});

Deno.test("turboquant presets: a user-defined preset is data — other bit widths and codebooks", () => {
  const k2v2 = defineTurboQuantPreset({
    name: "k2v2_nc",
    key: { kind: "centroids", bits: 2, normCorrection: true },
    value: { kind: "uniform", bits: 2 },
  });
  const l = turboQuantLayout(k2v2, 128);
  assert.equal(l.keyBytes, 34);
  assert.equal(l.valueBytes, 36);
  assert.equal(l.slotBytesAligned, 70);
  assert.equal(l.centroids!.length, 4);
  assert.ok(l.symmetric);

  // an explicit codebook in units of σ (scaled by 1/√D), asymmetric, 5-bit values
  const custom = defineTurboQuantPreset({
    name: "k2_custom_v5",
    key: { kind: "centroids", bits: 2, normCorrection: false, codebook: [-1.5, -0.4, 0.5, 1.6] },
    value: { kind: "uniform", bits: 5 },
  });
  const lc = turboQuantLayout(custom, 64);
  assert.deepEqual(Array.from(lc.centroids!), [-1.5, -0.4, 0.5, 1.6].map((x) => Math.fround(x / 8)));
  assert.equal(lc.symmetric, false);
  assert.equal(lc.valueBytes, 40 + 4);

  assert.throws(
    () =>
      defineTurboQuantPreset({
        name: "bad",
        key: { kind: "centroids", bits: 9, normCorrection: true },
        value: { kind: "uniform", bits: 4 },
      }),
    /key.bits must be an integer 1..8/,
  );
  assert.throws(
    () =>
      defineTurboQuantPreset({
        name: "bad",
        key: { kind: "centroids", bits: 1, normCorrection: true, codebook: [1, 0] },
        value: { kind: "uniform", bits: 4 },
      }),
    /strictly increasing/,
  );
  assert.throws(
    () =>
      defineTurboQuantPreset({ name: "bad", key: { kind: "fp8e4m3" }, value: { kind: "uniform", bits: 0 } }),
    /value.bits/,
  );
  assert.throws(
    () =>
      defineTurboQuantPreset({
        name: "bad name",
        key: { kind: "fp8e4m3" },
        value: { kind: "uniform", bits: 4 },
      }),
    /name/,
  );
});

Deno.test("turboquant presets: capacity against bf16 is the per-layer byte ratio", () => {
  const want: Record<string, number> = {
    turboquant_k8v4: 2.61,
    turboquant_4bit_nc: 3.82,
    turboquant_k3v4_nc: 4.34,
    turboquant_3bit_nc: 5.02,
  };
  for (const [name, ratio] of Object.entries(want)) {
    const c = turboQuantCapacity(turboQuantLayout(name, 128), 8);
    assert.ok(Math.abs(c.ratio - ratio) < 0.01, `${name}: ${c.ratio}`);
    assert.equal(c.bf16TokensPerGiB, Math.floor(2 ** 30 / (4 * 128 * 8)));
  }
});
