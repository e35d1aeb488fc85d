import assert from "node:assert/strict";
import {
  candidates,
  CUDA_LIB,
  expandDir,
  NVRTC_LIB,
  openLibrary,
  type SearchFs,
} from "../../runtime/_lib.ts";
import { CUDA_SYMBOLS } from "../../runtime/_ffi_cuda.ts";
import { LibraryNotFoundError } from "../../runtime/errors.ts";

/** A fake file system: a map of directory → entries. */
function fakeFs(tree: Record<string, string[]>, envs: Record<string, string> = {}): SearchFs {
  const dirs = new Map<string, string[]>(Object.entries(tree));
  // every prefix of a listed directory exists and lists its child
  for (const d of Object.keys(tree)) {
    const parts = d.split("/").filter(Boolean);
    for (let i = 0; i < parts.length; i++) {
      const parent = "/" + parts.slice(0, i).join("/");
      const key = parent === "/" ? "/" : parent;
      const list = dirs.get(key) ?? [];
      if (!list.includes(parts[i])) list.push(parts[i]);
      dirs.set(key, list);
    }
  }
  return { readDir: (p) => dirs.get(p === "" ? "/" : p)?.slice().sort(), env: (n) => envs[n] };
}

Deno.test("lib: override variable is the only candidate", () => {
  const fs = fakeFs({ "/usr/local/cuda/lib64": ["libnvrtc.so"] }, {
    KILN_NVRTC_LIB: "/opt/x/libnvrtc.so.99",
  });
  assert.deepEqual(candidates(NVRTC_LIB, fs), ["/opt/x/libnvrtc.so.99"]);
});

Deno.test("lib: search order is loader, toolkit dirs, versioned toolkits, then python wheels", () => {
  const fs = fakeFs(
    {
      "/usr/local/cuda/lib64": ["libnvrtc.so.13", "libnvrtc.so", "libnvrtc-builtins.so", "libnvrtc.alt.so"],
      "/usr/local/cuda-12.4/targets/x86_64-linux/lib": ["libnvrtc.so.12"],
      "/home/u/.local/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib": ["libnvrtc.so.12"],
    },
    { HOME: "/home/u" },
  );
  assert.deepEqual(candidates(NVRTC_LIB, fs), [
    "libnvrtc.so",
    "libnvrtc.so.13",
    "libnvrtc.so.12",
    "/usr/local/cuda/lib64/libnvrtc.so",
    "/usr/local/cuda/lib64/libnvrtc.so.13",
    "/usr/local/cuda-12.4/targets/x86_64-linux/lib/libnvrtc.so.12",
    "/home/u/.local/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12",
  ]);
});

Deno.test("lib: the driver's stub library is never a candidate", () => {
  const fs = fakeFs({
    "/usr/local/cuda/lib64/stubs": ["libcuda.so"],
    "/usr/local/nvidia/lib64": ["libcuda.so.1"],
  });
  const c = candidates(CUDA_LIB, fs);
  assert.ok(c.includes("/usr/local/nvidia/lib64/libcuda.so.1"));
  assert.ok(!c.some((p) => p.includes("stubs")));
});

Deno.test("lib: expandDir follows * segments and $VARs", () => {
  const fs = fakeFs({ "/opt/a/.venv/lib/python3.12/site-packages": [], "/opt/b/x": [] }, {
    VIRTUAL_ENV: "/opt/a/.venv",
  });
  assert.deepEqual(expandDir("/opt/*/.venv/lib/python3*/site-packages", fs), [
    "/opt/a/.venv/lib/python3.12/site-packages",
  ]);
  assert.deepEqual(expandDir("$VIRTUAL_ENV/lib/python3*/site-packages", fs), [
    "/opt/a/.venv/lib/python3.12/site-packages",
  ]);
  assert.deepEqual(expandDir("$CONDA_PREFIX/lib", fs), []);
});

Deno.test("lib: nothing found → one error listing every place tried and the override variable", () => {
  const fs = fakeFs({ "/usr/local/cuda/lib64": ["libnvrtc.so.13"] });
  const err = assert.throws(
    () =>
      openLibrary(NVRTC_LIB, {}, {
        fs,
        open: () => {
          throw new Error("cannot open shared object file");
        },
      }),
    LibraryNotFoundError,
  );
  void err;
  try {
    openLibrary(NVRTC_LIB, {}, {
      fs,
      open: () => {
        throw new Error("cannot open shared object file");
      },
    });
  } catch (e) {
    const m = (e as Error).message;
    for (const p of ["libnvrtc.so", "libnvrtc.so.13", "/usr/local/cuda/lib64/libnvrtc.so.13"]) {
      assert.ok(m.includes(p), p);
    }
    assert.match(m, /KILN_NVRTC_LIB/);
    assert.match(m, /cannot open shared object file/);
  }
});

const STUB = "/usr/local/cuda/lib64/stubs/libcuda.so";
Deno.test({
  name: "lib: every driver symbol kiln binds exists (checked against the toolkit's libcuda stub)",
  ignore: (() => {
    try {
      Deno.statSync(STUB);
      return false;
    } catch {
      return true;
    }
  })(),
  fn() {
    const lib = Deno.dlopen(STUB, CUDA_SYMBOLS);
    try {
      // the stub loads and binds, but refuses to run: CUDA_ERROR_STUB_LIBRARY
      assert.equal(lib.symbols.cuInit(0), 34);
    } finally {
      lib.close();
    }
  },
});
