/**
 * The row-program renderer on user-scripted programs: RMSNorm → group quant and silu(gate)·up → group
 * quant (each a few lines of DSL, one kernel), plus concat, scatter, 4-bit stores, per-tensor and
 * requant programs. Pure: schedules and validation. Compile tier: everything compiles for sm_90a (and
 * sm_80 where no fp8 is stored) without spills.
 */
import { deepEqual as assertEquals, ok as assert, throws as assertThrows } from "node:assert/strict";
import { compileTest } from "../_util.ts";
import { compileFor, ptxasReport } from "../../runtime/mod.ts";
import { concat, input, RowProgram, scalarInput } from "../../dsl/expr/mod.ts";
import { checkSchedule, defaultSchedule, renderRowKernel } from "../../codegen/expr/mod.ts";
import { misc, rmsnormQuant, siluMulQuant } from "./_programs.ts";

Deno.test("render: default schedules give row reductions one team per row", () => {
  const s = defaultSchedule(rmsnormQuant(7168));
  assertEquals([s.vec, s.lanes, s.chunks, s.threads], [8, 128, 7, 128]);
  const t = defaultSchedule(rmsnormQuant(512));
  assertEquals([t.lanes, t.chunks], [32, 2]);
  const u = defaultSchedule(siluMulQuant(2048));
  assert(u.lanes <= 32 && (u.lanes * u.chunks * u.vec) % 128 === 0);
});

Deno.test("render: schedules that cannot run a program are refused with the reason", () => {
  const p = rmsnormQuant(7168);
  assertThrows(() => checkSchedule(p, { vec: 8, lanes: 32, chunks: 4, threads: 256 }), /whole-row reduction/);
  assertThrows(() => checkSchedule(p, { vec: 8, lanes: 48, chunks: 4, threads: 256 }), /lanes/);
  assertThrows(
    () => checkSchedule(siluMulQuant(1024), { vec: 8, lanes: 8, chunks: 1, threads: 256 }),
    /group 128/,
  );
  assertThrows(() => checkSchedule(siluMulQuant(1024), { vec: 3, lanes: 8, chunks: 1, threads: 256 }), /vec/);
});

Deno.test("render: the kernel signature and the row-reduction through shared memory", () => {
  const k = renderRowKernel(rmsnormQuant(7168));
  assertEquals(k.source.params.map((p) => p.name), [
    "i_w",
    "i_x",
    "i_x_ld",
    "o_q",
    "o_q_ld",
    "o_s",
    "o_s_ld",
    "p_eps",
    "m",
    "rows",
  ]);
  assert(k.source.source.includes("__shared__ float kiln_red0"), "CTA-wide sum through shared memory");
  assert(k.source.source.includes("__syncthreads()"));
  const c = renderRowKernel(misc()[0]);
  assert(c.source.source.includes("const int pos = ec[c];"), "concat evaluates its parts per column");
  assertThrows(
    () =>
      renderRowKernel(
        new RowProgram("bad").store(
          "y",
          concat(
            input("a", "f32", 8).load().sum().mul(input("b", "f32", 8).load()),
            input("c", "f32", 8).load(),
          ),
        ).finish(),
      ),
    /element-wise/,
  );
});

compileTest("render: the user-scripted and demo programs compile without spills", async () => {
  const programs = [
    rmsnormQuant(7168),
    rmsnormQuant(4096),
    siluMulQuant(2048),
    siluMulQuant(7168),
    ...misc(),
  ];
  for (const [i, p] of programs.entries()) {
    const k = renderRowKernel(p);
    const older = k.source.minArch === 89 ? "sm_89" : "sm_80";
    const archs = i < 2 || k.source.minArch !== 89 ? ["sm_90a", older] : ["sm_90a"];
    for (const arch of archs) {
      const r = await compileFor(k.source, arch);
      assert(!/warning/.test(r.log ?? ""), `${k.source.name} ${arch}: NVRTC warnings\n${r.log}`);
      for (const f of r.log ? ptxasReport(r.log) : []) {
        assertEquals(f.spillBytes, 0, `${k.source.name} ${arch}: spills`);
        assertEquals(f.stackBytes, 0, `${k.source.name} ${arch}: stack`);
      }
    }
  }
});

Deno.test("render: scalar inputs and stores are hoisted out of the row mapping", () => {
  const s = scalarInput("amax").load().max(1e-10);
  const x = input("x", "bf16", 256).load();
  const p = new RowProgram("hoist").store("q", x.div(s).cast("fp8e4m3"), { dtype: "fp8e4m3" }).store(
    "t",
    s.mul(2),
    { layout: "scalar" },
  ).finish();
  const src = renderRowKernel(p).source.source;
  const hoisted = src.indexOf("o_t[0] =");
  assert(
    hoisted > 0 && hoisted < src.indexOf("const long long tile_id"),
    "scalar store before the row mapping",
  );
});
