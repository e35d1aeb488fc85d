/**
 * safetensors parsing from bytes: round trips through the writer for every dtype, and each malformed file
 * rejected with an error naming the file and the tensor.
 */
import assert from "node:assert/strict";
import {
  bf16Decode,
  bf16Encode,
  buildSafetensorsFile,
  fp8e4m3Decode,
  fp8e4m3Encode,
  kilnDTypeOf,
  parseSafetensors,
  readHeaderLength,
  SAFETENSORS_DTYPES,
  safetensorsDTypeOf,
  SafetensorsError,
  serializeSafetensors,
  tensorBytes,
  tensorInfo,
  toHostArray,
} from "../../dsl/mod.ts";

const FILE = "model-00001-of-00002.safetensors";

function rejects(bytes: Uint8Array, tensor: string | null, text: RegExp): void {
  assert.throws(() => parseSafetensors(bytes, FILE), (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${e}`);
    assert.equal(e.file, FILE);
    assert.equal(e.tensor, tensor);
    assert.ok(e.message.startsWith(FILE), e.message);
    if (tensor !== null) assert.ok(e.message.includes(`tensor "${tensor}"`), e.message);
    assert.match(e.message, text);
    return true;
  });
}

/** Deterministic pseudo-random bytes (never all zeros). */
function bytes(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = (x >>> 16) & 0xff;
  }
  return out;
}

Deno.test("dtype mapping: safetensors names ↔ kiln dtypes", () => {
  assert.deepEqual(
    Object.fromEntries(Object.entries(SAFETENSORS_DTYPES).map(([k, v]) => [k, v.dtype])),
    {
      F8_E4M3: "fp8e4m3",
      F8_E5M2: "fp8e5m2",
      F8_E8M0: "ue8m0",
      BF16: "bf16",
      F16: "f16",
      F32: "f32",
      I8: "i8",
      U8: "u8",
      I32: "i32",
      U32: "u32",
      I64: "i64",
    },
  );
  assert.equal(kilnDTypeOf("BF16"), "bf16");
  assert.equal(safetensorsDTypeOf("fp8e4m3"), "F8_E4M3");
  assert.throws(() => safetensorsDTypeOf("int4"), /store packed 4-bit data as U8/);
  assert.throws(() => kilnDTypeOf("F64", "f", "t"), SafetensorsError);
});

Deno.test("round trip: every dtype, shapes incl. scalars and empty tensors, metadata", () => {
  const f32 = new Float32Array([1.5, -2, 3.25, 1e-3, 7, -8]);
  const bf = new Uint16Array([0.5, -1, 3].map(bf16Encode));
  const fp8 = new Uint8Array([448, -0.5, 3, 1 / 64].map(fp8e4m3Encode));
  const i64 = new BigInt64Array([1n, -(2n ** 40n), 3n]);
  const entries = [
    { name: "a.weight", dtype: "F32" as const, shape: [2, 3], data: f32 },
    { name: "b.weight", dtype: "bf16" as const, shape: [3], data: bf },
    { name: "c.weight", dtype: "F8_E4M3" as const, shape: [2, 2], data: fp8 },
    { name: "c.weight_scale_inv", dtype: "F32" as const, shape: [], data: new Float32Array([0.25]) },
    { name: "d", dtype: "I64" as const, shape: [3], data: i64 },
    { name: "e", dtype: "I8" as const, shape: [0, 4], data: new Int8Array(0) },
    { name: "f", dtype: "F16" as const, shape: [1], data: new Uint16Array([0x3c00]) },
    { name: "g", dtype: "U8" as const, shape: [5], data: bytes(5) },
    { name: "h", dtype: "I32" as const, shape: [2], data: new Int32Array([-5, 7]) },
    { name: "i", dtype: "F8_E5M2" as const, shape: [1], data: new Uint8Array([0x3c]) },
  ];
  const file = serializeSafetensors(entries, { format: "pt" });
  const n = Number(new DataView(file.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0); // header padded to 8 bytes
  const h = parseSafetensors(file, FILE);
  assert.deepEqual(h.metadata, { format: "pt" });
  assert.deepEqual(h.tensors.map((t) => t.name), entries.map((e) => e.name));
  assert.equal(h.dataOffset, 8 + n);
  const c = tensorInfo(h, "c.weight");
  assert.equal(c.kilnDType, "fp8e4m3");
  assert.deepEqual(c.shape, [2, 2]);
  assert.equal(tensorInfo(h, "c.weight_scale_inv").numel, 1);
  assert.equal(tensorInfo(h, "e").numel, 0);
  assert.deepEqual([...toHostArray("f32", tensorBytes(file, h, "a.weight"))], [...f32]);
  assert.deepEqual(
    [...(toHostArray("bf16", tensorBytes(file, h, "b.weight")) as Uint16Array)].map(bf16Decode),
    [0.5, -1, 3],
  );
  assert.deepEqual(
    [...(toHostArray("fp8e4m3", tensorBytes(file, h, "c.weight")) as Uint8Array)].map(fp8e4m3Decode),
    [448, -0.5, 3, 1 / 64],
  );
  assert.deepEqual([...(toHostArray("i64", tensorBytes(file, h, "d")) as BigInt64Array)], [
    1n,
    -(2n ** 40n),
    3n,
  ]);
  assert.deepEqual([...(toHostArray("i32", tensorBytes(file, h, "h")) as Int32Array)], [-5, 7]);
  assert.throws(() => tensorInfo(h, "nope"), /tensor "nope": no such tensor/);
});

Deno.test("toHostArray copies into an aligned array even from an odd offset", () => {
  const raw = new Uint8Array(9);
  const src = new Uint8Array(new Float32Array([3.5, -1]).buffer);
  raw.set(src, 1);
  const out = toHostArray("f32", raw.subarray(1, 9));
  assert.ok(out instanceof Float32Array);
  assert.deepEqual([...out], [3.5, -1]);
  assert.throws(() => toHostArray("f32", raw.subarray(1, 8)), RangeError);
});

Deno.test("writer refuses data whose size disagrees with the shape", () => {
  assert.throws(
    () => serializeSafetensors([{ name: "w", dtype: "F32", shape: [3], data: new Float32Array(2) }]),
    /w: shape \[3\] of F32 needs 12 bytes, data has 8/,
  );
});

Deno.test("broken: truncated files", () => {
  assert.throws(() => readHeaderLength(new Uint8Array(4), 4, FILE), /truncated file: 4 bytes/);
  rejects(new Uint8Array(5), null, /truncated file: 5 bytes, shorter than the 8-byte header length/);
  const good = serializeSafetensors([{
    name: "w",
    dtype: "F32",
    shape: [4],
    data: new Float32Array([1, 2, 3, 4]),
  }]);
  rejects(
    good.subarray(0, good.byteLength - 3),
    "w",
    /truncated file: data_offsets \[0, 16\] end past the 13 data bytes/,
  );
});

Deno.test("broken: header length past the end of the file, or absurd", () => {
  const data = new Uint8Array(4);
  rejects(
    buildSafetensorsFile({ w: { dtype: "U8", shape: [4], data_offsets: [0, 4] } }, data, 4096),
    null,
    /header length 4096 runs past the end of the file/,
  );
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
  rejects(huge, null, /runs past the end/);
});

Deno.test("broken: header that is not JSON or not an object; bad metadata", () => {
  const bad = new Uint8Array(8 + 8);
  new DataView(bad.buffer).setBigUint64(0, 8n, true);
  bad.set(new TextEncoder().encode("{not js}"), 8);
  rejects(bad, null, /header is not valid UTF-8 JSON/);
  rejects(buildSafetensorsFile([1, 2], new Uint8Array(0)), null, /must be a JSON object/);
  rejects(
    buildSafetensorsFile({ __metadata__: { a: 1 } }, new Uint8Array(0)),
    null,
    /__metadata__\.a must be a string/,
  );
});

Deno.test("broken: unknown dtype names the tensor", () => {
  rejects(
    buildSafetensorsFile({ w: { dtype: "F64", shape: [1], data_offsets: [0, 8] } }, bytes(8)),
    "w",
    /unknown dtype "F64"; kiln reads F8_E4M3/,
  );
  rejects(
    buildSafetensorsFile({ w: { dtype: "BOOL", shape: [1], data_offsets: [0, 1] } }, bytes(1)),
    "w",
    /unknown dtype "BOOL"/,
  );
});

Deno.test("broken: out-of-range offsets", () => {
  rejects(
    buildSafetensorsFile({ w: { dtype: "U8", shape: [4], data_offsets: [4, 0] } }, bytes(4)),
    "w",
    /data_offsets out of range/,
  );
  rejects(
    buildSafetensorsFile({ w: { dtype: "U8", shape: [4], data_offsets: [-1, 3] } }, bytes(4)),
    "w",
    /data_offsets out of range/,
  );
  rejects(
    buildSafetensorsFile({ w: { dtype: "U8", shape: [4], data_offsets: [0] } }, bytes(4)),
    "w",
    /data_offsets out of range/,
  );
  rejects(
    buildSafetensorsFile({ w: { dtype: "U8", shape: [4], data_offsets: [0, 4.5] } }, bytes(5)),
    "w",
    /data_offsets out of range/,
  );
  // in range for the header's arithmetic but past the data the file has
  rejects(
    buildSafetensorsFile({ w: { dtype: "U8", shape: [8], data_offsets: [0, 8] } }, bytes(4)),
    "w",
    /end past the 4 data bytes/,
  );
});

Deno.test("broken: overlapping offsets, gaps and trailing bytes", () => {
  const overlap = {
    a: { dtype: "U8", shape: [4], data_offsets: [0, 4] },
    b: { dtype: "U8", shape: [4], data_offsets: [2, 6] },
  };
  rejects(buildSafetensorsFile(overlap, bytes(6)), "b", /overlap tensor "a" \[0, 4\]/);
  const gap = {
    a: { dtype: "U8", shape: [2], data_offsets: [0, 2] },
    b: { dtype: "U8", shape: [2], data_offsets: [4, 6] },
  };
  rejects(buildSafetensorsFile(gap, bytes(6)), "b", /gap after byte 2/);
  rejects(
    buildSafetensorsFile({ a: { dtype: "U8", shape: [2], data_offsets: [0, 2] } }, bytes(5)),
    null,
    /3 bytes after the last tensor's data/,
  );
});

Deno.test("broken: shape that disagrees with the byte size", () => {
  rejects(
    buildSafetensorsFile({ w: { dtype: "BF16", shape: [3, 4], data_offsets: [0, 12] } }, bytes(12)),
    "w",
    /shape \[3, 4\] of BF16 needs 24 bytes but data_offsets \[0, 12\] hold 12/,
  );
  rejects(
    buildSafetensorsFile({ w: { dtype: "F32", shape: [2, -1], data_offsets: [0, 8] } }, bytes(8)),
    "w",
    /non-negative integers/,
  );
  rejects(
    buildSafetensorsFile({ w: { dtype: "F32", shape: "2", data_offsets: [0, 8] } }, bytes(8)),
    "w",
    /shape must be a list/,
  );
});
