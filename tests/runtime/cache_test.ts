import assert from "node:assert/strict";
import { cacheKey, type CacheKeyParts, DiskCache } from "../../runtime/cache.ts";

const BASE: CacheKeyParts = {
  source: 'extern "C" __global__ void k() {}',
  entries: ["k"],
  options: ["--gpu-architecture=sm_90a", "-std=c++17"],
  arch: "sm_90a",
  nvrtc: { major: 13, minor: 0, library: "/usr/local/cuda/lib64/libnvrtc.so.13:123:456" },
};

Deno.test("cache: the key is stable and changes with every part that changes the binary", async () => {
  const k = await cacheKey(BASE);
  assert.match(k, /^[0-9a-f]{64}$/);
  assert.equal(await cacheKey({ ...BASE }), k);
  const variants: CacheKeyParts[] = [
    { ...BASE, source: BASE.source + " " },
    { ...BASE, entries: ["k2"] },
    { ...BASE, options: [...BASE.options, "-lineinfo"] },
    { ...BASE, options: [...BASE.options].reverse() },
    { ...BASE, arch: "sm_90" },
    { ...BASE, nvrtc: { ...BASE.nvrtc, minor: 1 } },
    { ...BASE, nvrtc: { ...BASE.nvrtc, library: "/other/libnvrtc.so.13:123:456" } },
    { ...BASE, extra: { tile: 128 } },
  ];
  const keys = await Promise.all(variants.map(cacheKey));
  assert.equal(new Set([k, ...keys]).size, variants.length + 1);
  // extra keys are order-independent
  assert.equal(
    await cacheKey({ ...BASE, extra: { a: 1, b: 2 } }),
    await cacheKey({ ...BASE, extra: { b: 2, a: 1 } }),
  );
});

async function withCache(fn: (c: DiskCache, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln-cache-test-" });
  try {
    await fn(new DiskCache(dir), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const meta = { name: "k", arch: "sm_90a", entries: ["k"], options: ["-std=c++17"] };

Deno.test("cache: put then get returns the same bytes, written atomically with no temp files left", async () => {
  await withCache(async (c, dir) => {
    const key = await cacheKey(BASE);
    const cubin = crypto.getRandomValues(new Uint8Array(5000));
    assert.equal(await c.get(key), undefined);
    await c.put(key, cubin, meta);
    const hit = await c.get(key);
    assert.ok(hit);
    assert.deepEqual(hit.cubin, cubin);
    assert.equal(hit.meta.cubinBytes, 5000);
    const files = [...Deno.readDirSync(`${dir}/${key.slice(0, 2)}`)].map((e) => e.name);
    assert.deepEqual(files, [`${key}.cubin`]);
  });
});

Deno.test("cache: a truncated entry is detected (and then overwritten)", async () => {
  await withCache(async (c) => {
    const key = await cacheKey(BASE);
    const cubin = crypto.getRandomValues(new Uint8Array(4096));
    await c.put(key, cubin, meta);
    const full = await Deno.readFile(c.path(key));
    for (const cut of [full.length - 1, full.length - 4000, 40, 5]) {
      await Deno.writeFile(c.path(key), full.subarray(0, cut));
      assert.equal(await c.get(key), undefined, `cut at ${cut}`);
    }
    await c.put(key, cubin, meta);
    assert.deepEqual((await c.get(key))?.cubin, cubin);
  });
});

Deno.test("cache: a corrupted entry (flipped byte, bad header) is detected", async () => {
  await withCache(async (c) => {
    const key = await cacheKey(BASE);
    await c.put(key, crypto.getRandomValues(new Uint8Array(1024)), meta);
    const full = await Deno.readFile(c.path(key));
    const flipped = full.slice();
    flipped[flipped.length - 10] ^= 0x40;
    await Deno.writeFile(c.path(key), flipped);
    assert.equal(await c.get(key), undefined);
    const badHead = full.slice();
    badHead[0] = 0x58;
    await Deno.writeFile(c.path(key), badHead);
    assert.equal(await c.get(key), undefined);
    const badJson = full.slice();
    badJson[10] = 0x78; // 'x' where the JSON header's '{' was
    await Deno.writeFile(c.path(key), badJson);
    assert.equal(await c.get(key), undefined);
  });
});

Deno.test("cache: an unwritable directory is reported, not thrown", async () => {
  const c = new DiskCache("/proc/kiln-cannot-write-here");
  await c.put(await cacheKey(BASE), new Uint8Array(10), meta);
  assert.equal(await c.get(await cacheKey(BASE)), undefined);
});
