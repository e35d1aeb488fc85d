/**
 * `deno task bench`: every kernel family's table, each measured beside its ceiling (device copy
 * bandwidth or the peer) in the same run. `deno task bench launch gemm` runs only those families.
 *
 * @module
 */
import { Device, devices } from "../mod.ts";
import { copyBandwidth, printTable } from "./_util.ts";

const FAMILIES = ["launch", "group_quant", "gemm", "gemm_sm90", "turboquant"];

const found = devices();
if (found.devices.length === 0) {
  console.log(`no CUDA device (${found.reason}): benchmarks need a GPU host.`);
  Deno.exit(0);
}
const want = Deno.args.length ? Deno.args : FAMILIES;
const info = Device.get().info;
const copy = await copyBandwidth();
printTable("device", [{
  device: info.name,
  cc: info.cc,
  SMs: info.smCount,
  "L2 MiB": info.l2Bytes >> 20,
  "copy TB/s (measured)": copy / 1e12,
  date: new Date().toISOString().slice(0, 10),
}]);
for (const fam of want) {
  let mod: { bench?: () => Promise<void> };
  try {
    mod = await import(`./${fam}.ts`);
  } catch (e) {
    console.log(`\n## ${fam}\nnot available: ${(e as Error).message.split("\n")[0]}`);
    continue;
  }
  try {
    await mod.bench?.();
  } catch (e) {
    console.log(`\n## ${fam}\nFAILED: ${(e as Error).stack ?? e}`);
  }
}
