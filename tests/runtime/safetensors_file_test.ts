/**
 * safetensors files on disk: header-only open, per-tensor reads, sharded checkpoints through the index,
 * broken files (each error names the file and tensor), and the device path through an injected
 * `Tensor.fromHost` (the real one needs a GPU).
 */
import assert from "node:assert/strict";
import { bf16Decode, bf16Encode, type DType, type HostArray } from "../../dsl/dtype.ts";
import { buildSafetensorsFile, SafetensorsError, serializeSafetensors } from "../../dsl/safetensors.ts";
import { Rng } from "../../testing/random.ts";
import { gpuTest } from "../_util.ts";
import {
  checkpointTensorNames,
  INDEX_FILE,
  openCheckpoint,
  readSafetensorsHeader,
  SafetensorsCheckpoint,
  SafetensorsFile,
  type TensorModule,
} from "../../runtime/safetensors_file.ts";

/** Random float32 values that are never zero. */
function randoms(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    out[i] = ((x >>> 8) / 2 ** 24 - 0.5) * 8 + (i % 2 ? 0.125 : -0.125);
  }
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_st_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("SafetensorsFile: reads the header only, then single tensors by seek + read", async () => {
  await withDir(async (dir) => {
    const a = randoms(6, 1);
    const b = new Uint16Array([...randoms(5, 2)].map(bf16Encode));
    const big = new Uint8Array(1 << 20).map((_, i) => (i * 31 + 7) & 0xff);
    const path = `${dir}/m.safetensors`;
    await Deno.writeFile(
      path,
      serializeSafetensors([
        { name: "a", dtype: "F32", shape: [2, 3], data: a },
        { name: "big", dtype: "U8", shape: [1024, 1024], data: big },
        { name: "b", dtype: "BF16", shape: [5], data: b },
      ]),
    );
    using f = await SafetensorsFile.open(path);
    assert.deepEqual(f.names(), ["a", "big", "b"]);
    assert.ok(f.has("b") && !f.has("c"));
    assert.equal(f.info("big").end - f.info("big").begin, 1 << 20);
    const ta = await f.read("a");
    assert.equal(ta.dtype, "f32");
    assert.deepEqual(ta.shape, [2, 3]);
    assert.deepEqual([...ta.data as Float32Array], [...a]);
    const tb = await f.read("b");
    assert.equal(tb.dtype, "bf16");
    assert.deepEqual([...tb.data as Uint16Array].map(bf16Decode), [...b].map(bf16Decode));
    assert.deepEqual(await f.readBytes("big"), big);
    await assert.rejects(
      () => f.read("c"),
      (e: unknown) => e instanceof SafetensorsError && e.tensor === "c" && e.file === path,
    );
    f.close();
    await assert.rejects(() => f.read("a"), /file is closed/);
  });
});

Deno.test("SafetensorsFile: broken files are rejected at open with the file name", async () => {
  await withDir(async (dir) => {
    const good = serializeSafetensors([{ name: "w", dtype: "F32", shape: [8], data: randoms(8, 3) }]);
    const cases: [string, Uint8Array, string | null, RegExp][] = [
      ["short.safetensors", good.subarray(0, 6), null, /truncated file: 6 bytes/],
      ["cut.safetensors", good.subarray(0, good.byteLength - 4), "w", /truncated file/],
      [
        "hdr.safetensors",
        buildSafetensorsFile({}, new Uint8Array(0), 1000),
        null,
        /header length 1000 runs past the end/,
      ],
      [
        "dtype.safetensors",
        buildSafetensorsFile({ w: { dtype: "C64", shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
        "w",
        /unknown dtype "C64"/,
      ],
      [
        "shape.safetensors",
        buildSafetensorsFile({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)),
        "w",
        /needs 12 bytes/,
      ],
      [
        "overlap.safetensors",
        buildSafetensorsFile({
          a: { dtype: "U8", shape: [4], data_offsets: [0, 4] },
          b: { dtype: "U8", shape: [2], data_offsets: [3, 5] },
        }, new Uint8Array(5)),
        "b",
        /overlap/,
      ],
    ];
    for (const [name, bytes, tensor, re] of cases) {
      const path = `${dir}/${name}`;
      await Deno.writeFile(path, bytes);
      await assert.rejects(() => SafetensorsFile.open(path), (e: unknown) => {
        assert.ok(e instanceof SafetensorsError, `${name}: ${e}`);
        assert.equal(e.file, path);
        assert.equal(e.tensor, tensor, name);
        assert.match(e.message, re);
        return true;
      });
    }
  });
});

Deno.test("sharded checkpoint through model.safetensors.index.json", async () => {
  await withDir(async (dir) => {
    const q = randoms(4, 5), k = randoms(4, 6), s = randoms(1, 7);
    await Deno.writeFile(
      `${dir}/model-00001-of-00002.safetensors`,
      serializeSafetensors([
        { name: "model.layers.0.self_attn.q_proj.weight", dtype: "F32", shape: [2, 2], data: q },
      ]),
    );
    await Deno.writeFile(
      `${dir}/model-00002-of-00002.safetensors`,
      serializeSafetensors([
        { name: "model.layers.0.self_attn.k_proj.weight", dtype: "F32", shape: [4], data: k },
        { name: "model.layers.0.self_attn.k_proj.weight_scale_inv", dtype: "F32", shape: [], data: s },
      ]),
    );
    const weight_map = {
      "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
      "model.layers.0.self_attn.k_proj.weight": "model-00002-of-00002.safetensors",
      "model.layers.0.self_attn.k_proj.weight_scale_inv": "model-00002-of-00002.safetensors",
    };
    await Deno.writeTextFile(
      `${dir}/${INDEX_FILE}`,
      JSON.stringify({ metadata: { total_size: 36 }, weight_map }),
    );
    using ck = await openCheckpoint(dir);
    assert.equal(ck.files.length, 2);
    assert.deepEqual(ck.names(), Object.keys(weight_map));
    assert.deepEqual([...(await ck.read("model.layers.0.self_attn.k_proj.weight")).data as Float32Array], [
      ...k,
    ]);
    assert.deepEqual([...(await ck.read("model.layers.0.self_attn.q_proj.weight")).data as Float32Array], [
      ...q,
    ]);
    assert.deepEqual((await ck.read("model.layers.0.self_attn.k_proj.weight_scale_inv")).shape, []);
    assert.ok(
      ck.fileOf("model.layers.0.self_attn.q_proj.weight").path.endsWith("model-00001-of-00002.safetensors"),
    );
    assert.throws(() => ck.info("nope"), /no such tensor in this checkpoint/);
    assert.deepEqual(await checkpointTensorNames(dir), Object.keys(weight_map));
    // the index file itself can be opened too
    using viaIndex = await SafetensorsCheckpoint.open(`${dir}/${INDEX_FILE}`);
    assert.equal(viaIndex.names().length, 3);
  });
});

Deno.test("sharded checkpoint: a tensor the index lists but its shard lacks is an error naming both", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(
      `${dir}/s1.safetensors`,
      serializeSafetensors([{ name: "a", dtype: "F32", shape: [1], data: randoms(1, 9) }]),
    );
    await Deno.writeTextFile(
      `${dir}/${INDEX_FILE}`,
      JSON.stringify({ weight_map: { a: "s1.safetensors", b: "s1.safetensors" } }),
    );
    await assert.rejects(() => openCheckpoint(dir), (e: unknown) => {
      assert.ok(e instanceof SafetensorsError);
      assert.equal(e.tensor, "b");
      assert.ok(e.file!.endsWith("s1.safetensors"));
      assert.match(e.message, /listed in model\.safetensors\.index\.json but missing from this shard/);
      return true;
    });
    await Deno.writeTextFile(
      `${dir}/${INDEX_FILE}`,
      JSON.stringify({ weight_map: { a: "../s1.safetensors" } }),
    );
    await assert.rejects(() => openCheckpoint(dir), /must be a shard file name/);
    await Deno.writeTextFile(`${dir}/${INDEX_FILE}`, "{oops");
    await assert.rejects(() => openCheckpoint(dir), /cannot read the index/);
    await assert.rejects(() => checkpointTensorNames(dir), /not valid JSON/);
  });
});

Deno.test("checkpoint without an index: every .safetensors file of the directory", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(
      `${dir}/model.safetensors`,
      serializeSafetensors([
        { name: "lm_head.weight", dtype: "BF16", shape: [2], data: new Uint16Array([1, 2]) },
        { name: "model.norm.weight", dtype: "BF16", shape: [2], data: new Uint16Array([3, 4]) },
      ]),
    );
    using ck = await openCheckpoint(dir);
    assert.deepEqual(ck.names(), ["lm_head.weight", "model.norm.weight"]);
    assert.deepEqual(await checkpointTensorNames(dir), ["lm_head.weight", "model.norm.weight"]);
    assert.equal((await readSafetensorsHeader(`${dir}/model.safetensors`)).tensors.length, 2);
    using single = await openCheckpoint(`${dir}/model.safetensors`);
    assert.equal(single.names().length, 2);
  });
  await withDir(async (dir) => {
    await assert.rejects(
      () => openCheckpoint(dir),
      /no model\.safetensors\.index\.json and no \.safetensors files/,
    );
    assert.equal(await checkpointTensorNames(dir), null);
  });
});

Deno.test("readToDevice hands dtype, shape and raw host data to Tensor.fromHost (fake module)", async () => {
  await withDir(async (dir) => {
    const w = randoms(6, 11);
    await Deno.writeFile(
      `${dir}/m.safetensors`,
      serializeSafetensors([{ name: "w", dtype: "F32", shape: [3, 2], data: w }]),
    );
    const calls: { dtype: DType; shape: number[]; raw: HostArray; opts?: { device?: unknown } }[] = [];
    const tensorModule: TensorModule = {
      Tensor: {
        fromHost(dtype, shape, raw, opts) {
          calls.push({ dtype, shape, raw, opts });
          return { fake: true };
        },
      },
    };
    using ck = await openCheckpoint(dir);
    const device = { ordinal: 0 };
    assert.deepEqual(await ck.readToDevice("w", { tensorModule, device }), { fake: true });
    assert.equal(calls.length, 1);
    assert.equal(calls[0].dtype, "f32");
    assert.deepEqual(calls[0].shape, [3, 2]);
    assert.deepEqual([...calls[0].raw as Float32Array], [...w]);
    assert.equal(calls[0].opts?.device, device);
    await ck.readToDevice("w", { tensorModule });
    assert.equal(calls[1].opts, undefined);
  });
});

gpuTest("readToDevice: a checkpoint's bf16 and fp8 tensors land on the device byte for byte", async () => {
  await withDir(async (dir) => {
    const rng = new Rng();
    const bf = Uint16Array.from({ length: 24 }, () => rng.int(0, 0x7f00));
    const f8 = Uint8Array.from({ length: 40 }, () => rng.int(0, 0x7f));
    await Deno.writeFile(
      `${dir}/m.safetensors`,
      serializeSafetensors([
        { name: "w.weight", dtype: "BF16", shape: [4, 6], data: bf },
        { name: "w.qweight", dtype: "F8_E4M3", shape: [5, 8], data: f8 },
      ]),
    );
    using ck = await openCheckpoint(dir);
    using a = await ck.readToDevice("w.weight");
    using b = await ck.readToDevice("w.qweight");
    assert.equal(a.dtype, "bf16");
    assert.deepEqual(a.shape, [4, 6]);
    assert.deepEqual(a.toHost(), bf);
    assert.equal(b.dtype, "fp8e4m3");
    assert.deepEqual(b.toHost(), f8);
  });
});
