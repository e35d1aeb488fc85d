import assert from "node:assert/strict";
import { ArgPacker } from "../../runtime/launch.ts";
import { paramOffsets, type ParamSpec, renderParams, renderSignature } from "../../codegen/kernel_source.ts";
import { ArgumentError } from "../../runtime/errors.ts";
import { Rng } from "../../testing/random.ts";

const PARAMS: ParamSpec[] = [
  { name: "x", kind: "ptr", dtype: "bf16", readonly: true },
  { name: "n", kind: "i32" },
  { name: "out", kind: "ptr", dtype: "fp8e4m3" },
  { name: "eps", kind: "f32" },
  { name: "big", kind: "i64" },
  { name: "tm", kind: "tensormap" },
  { name: "k", kind: "u32" },
];

Deno.test("pack: offsets follow the CUDA ABI's natural alignment", () => {
  const { offsets, size } = paramOffsets(PARAMS);
  // ptr 0, i32 8, ptr 16 (aligned up from 12), f32 24, i64 32, tensormap 64 (aligned to 64), u32 192
  assert.deepEqual(offsets, [0, 8, 16, 24, 32, 64, 192]);
  assert.equal(size, 196);
});

Deno.test("pack: the C signature and the packer come from the same list", () => {
  assert.equal(
    renderParams(PARAMS),
    "const unsigned short* __restrict__ x, int n, unsigned char* __restrict__ out, float eps, long long big, " +
      "const __grid_constant__ CUtensorMap tm, unsigned int k",
  );
  assert.match(
    renderSignature({ entry: "k1", params: PARAMS }, { launchBounds: [256, 1] }),
    /__launch_bounds__\(256, 1\) k1\(/,
  );
});

Deno.test("pack: values land at their offsets, the buffer is reused, extra points at it", () => {
  const rng = new Rng();
  const p = new ArgPacker(PARAMS, "k1");
  const before = p.bytes;
  for (let rep = 0; rep < 3; rep++) {
    const xp = BigInt(rng.int(1, 2 ** 30)) * 256n, op = BigInt(rng.int(1, 2 ** 30)) * 256n;
    const n = rng.int(-1000, 1000), k = rng.int(0, 2 ** 31);
    const tm = new Uint8Array(128).map(() => rng.int(0, 256));
    p.pack([{ ptr: xp, dtype: "bf16" }, n, { ptr: op, dtype: "fp8e4m3" }, 0.5, -(2n ** 40n), tm, k]);
    const v = new DataView(p.bytes.buffer, p.bytes.byteOffset);
    assert.equal(v.getBigUint64(0, true), xp);
    assert.equal(v.getInt32(8, true), n);
    assert.equal(v.getBigUint64(16, true), op);
    assert.equal(v.getFloat32(24, true), 0.5);
    assert.equal(v.getBigInt64(32, true), -(2n ** 40n));
    assert.deepEqual(p.bytes.slice(64, 192), tm);
    assert.equal(v.getUint32(192, true), k);
  }
  assert.equal(p.bytes, before);
  const addr = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(p.bytes)));
  assert.equal(addr % 64n, 0n, "parameter buffer is 64-byte aligned");
  assert.deepEqual([p.extra[0], p.extra[1], p.extra[2], p.extra[4]], [1n, addr, 2n, 0n]);
  const size = new BigUint64Array(
    Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(p.extra[3])!, 8),
  );
  assert.equal(size[0], 196n);
});

Deno.test("pack: wrong arguments name the parameter, the expectation and what came", () => {
  const p = new ArgPacker(PARAMS, "k1");
  const good = () => [{ ptr: 256n, dtype: "bf16" }, 1, 512n, 1, 1n, new Uint8Array(128), 1] as const;
  assert.throws(
    () => p.pack(good().slice(0, 3) as never),
    /k1 arguments: expected 7 \(x, n, out, eps, big, tm, k\), got 3/,
  );
  const a = [...good()] as unknown[];
  a[0] = { ptr: 256n, dtype: "f16" };
  assert.throws(
    () => p.pack(a as never),
    (e: Error) =>
      e instanceof ArgumentError && /k1\(x\): expected a bf16 tensor, got a f16 tensor/.test(e.message),
  );
  a[0] = 256n;
  a[1] = 1.5;
  assert.throws(() => p.pack(a as never), /k1\(n\): expected an int32, got number 1.5/);
  a[1] = 1;
  a[5] = new Uint8Array(64);
  assert.throws(() => p.pack(a as never), /k1\(tm\): expected a 128-byte CUtensorMap, got Uint8Array\(64\)/);
  a[5] = new Uint8Array(128);
  a[6] = -1;
  assert.throws(() => p.pack(a as never), /k1\(k\): expected a uint32/);
});
