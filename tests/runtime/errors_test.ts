import assert from "node:assert/strict";
import { ArgumentError, CompileError, CudaError, excerpts } from "../../runtime/errors.ts";
import { resultName } from "../../runtime/driver.ts";

Deno.test("errors: CompileError carries the log and numbered source lines around each error", () => {
  const src = ["// line 1", "__global__ void k() {", "  int x = ;", "  foo();", "}", "// 6", "// 7"].join(
    "\n",
  );
  const log = 'k.cu(3): error: expected an expression\nk.cu(4): error: identifier "foo" is undefined\n';
  const e = new CompileError("k.cu", log, src, ["--gpu-architecture=sm_90a"]);
  assert.match(e.message, /NVRTC could not compile k\.cu \(options: --gpu-architecture=sm_90a\)/);
  assert.match(e.message, /expected an expression/);
  assert.ok(e.message.includes(">    3 |   int x = ;"));
  assert.ok(e.message.includes(">    4 |   foo();"));
  assert.ok(e.message.includes("     1 | // line 1"));
  assert.doesNotMatch(e.message, /\/\/ 7/);
  assert.equal(excerpts("no line numbers here", src), "");
});

Deno.test("errors: CudaError names the code, its name, the call and the message", () => {
  const e = new CudaError(
    700,
    "CUDA_ERROR_ILLEGAL_ADDRESS",
    "cuCtxSynchronize",
    "an illegal memory access was encountered",
  );
  assert.equal(
    e.message,
    "cuCtxSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS (700): an illegal memory access was encountered",
  );
  assert.equal(resultName(34).name, "CUDA_ERROR_STUB_LIBRARY");
  assert.equal(resultName(123456).name, "CUresult 123456");
});

Deno.test("errors: ArgumentError says which argument, what was expected and what came", () => {
  const e = new ArgumentError("x", "a bf16 tensor of shape [M, 7168]", "f32[4, 7168]");
  assert.equal(e.message, "x: expected a bf16 tensor of shape [M, 7168], got f32[4, 7168]");
  assert.ok(e instanceof TypeError);
});
