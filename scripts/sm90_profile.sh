#!/usr/bin/env bash
# Nsight Compute on the sm_90a GEMM ladder, step c against step g (and g without its ping-pong order), at
# one shape (default 4096 x 4096 x 7168, 128 x 128 tiles, 5 stages), printing only the lines that decide
# what limits a k-block: cycles per k-block, tensor (GMMA) pipe utilization, shared-memory bank
# utilization, issue rate, the top 5 stall reasons (cycles per issued instruction; on Hopper "barrier"
# includes WARPGROUP.DEPBAR = wgmma.wait_group, "gmma" WARPGROUP.ARRIVE) and the top 5 SASS lines by
# sampled stalls. Run on the GPU host from the repo root:
#
#   scripts/sm90_profile.sh                    c, g, g --nopp at 4096 4096 7168
#   scripts/sm90_profile.sh "c 128 5" "g 160 5"  any variants (step blockN stages [--nopp])
#   scripts/sm90_profile.sh "g 256x128 3"        a 256-row tile (blockMxblockN)
#   SHAPE="4096 7168 2048" scripts/sm90_profile.sh
#
# Reports and CSVs stay in $OUT (default /tmp/sm90_profile) for a closer look. ncu runs with
# --clock-control none: the GPU host is shared and its clocks are never to be changed, so cycles, not
# microseconds, are what compare across variants. One profiled launch per variant
# (the sections need ~40 replays of a ~0.2 ms kernel): the whole script takes well under 90 s of GPU time,
# most of it process start-up. Kernels are compiled (or found in the kiln cache) before ncu starts.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
NCU="${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}"
DENO="${DENO:-$(command -v deno || echo ./denow)}"
PY="${PYTHON:-python3}"
OUT="${OUT:-/tmp/sm90_profile}"
read -r -a SHAPE_ARR <<<"${SHAPE:-4096 4096 7168}"
CLOCK=none # never lock or change the GPU's clocks on a shared host
if [ ! -x "$NCU" ]; then
  echo "ncu not found (set NCU)" >&2
  exit 2
fi
if [ $# -gt 0 ]; then VARIANTS=("$@"); else VARIANTS=("c 128 5" "g 128 5" "g 128 5 --nopp"); fi
mkdir -p "$OUT"
# extra metrics beyond the sections, most informative first; if ncu rejects a name the run is retried with
# the safe subset, then with the sections alone
SAFE="sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active"
SAFE+=",sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active"
SAFE+=",smsp__inst_executed.sum,sm__cycles_elapsed.avg,gpu__time_duration.sum"
FULL="$SAFE,l1tex__data_bank_reads.avg.pct_of_peak_sustained_elapsed"
FULL+=",l1tex__data_bank_writes.avg.pct_of_peak_sustained_elapsed"

echo "== compile (outside the profiler)"
for v in "${VARIANTS[@]}"; do
  # shellcheck disable=SC2086
  "$DENO" run -A scripts/sm90_one.ts "${SHAPE_ARR[@]}" $v --reps 1 || exit 1
done

status=0
for v in "${VARIANTS[@]}"; do
  tag="$(echo "$v" | tr -c 'a-zA-Z0-9\n' '_')"
  rep="$OUT/sm90_$tag"
  echo
  echo "== ${SHAPE_ARR[*]} step $v"
  profile() {
    # shellcheck disable=SC2086
    "$NCU" --target-processes all --kernel-name regex:gemm_sm90 --launch-skip 1 --launch-count 1 \
      --clock-control "$CLOCK" \
      --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
      --section ComputeWorkloadAnalysis --section SourceCounters "$@" \
      -f -o "$rep" "$DENO" run -A scripts/sm90_one.ts "${SHAPE_ARR[@]}" $v --reps 2 >"$rep.log" 2>&1
  }
  if ! profile --metrics "$FULL"; then
    echo "!! ncu failed with the smem bank metrics (see $rep.log); again without them" >&2
    if ! profile --metrics "$SAFE" && ! profile; then
      echo "!! ncu failed, see $rep.log" >&2
      tail -5 "$rep.log" >&2
      status=1
      continue
    fi
  fi
  "$NCU" -i "$rep.ncu-rep" --page raw --csv >"$rep.raw.csv" 2>"$rep.raw.err" || true
  "$NCU" -i "$rep.ncu-rep" --page source --print-source sass --csv >"$rep.sass.csv" 2>"$rep.sass.err" || true
  # shellcheck disable=SC2086
  "$PY" - "$rep" "${SHAPE_ARR[@]}" $v <<'PY' || status=1
import csv, math, sys

rep, M, N, K, step = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
bm, bn = map(int, sys.argv[6].split("x")) if "x" in sys.argv[6] else (128, int(sys.argv[6]))

def num(x):
    try:
        return float(str(x).replace(",", ""))
    except ValueError:
        return None

rows = list(csv.reader(open(rep + ".raw.csv", newline="")))
hdr = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
names, units = rows[hdr], rows[hdr + 1]
vals = rows[hdr + 2] if len(rows) > hdr + 2 else rows[-1]
raw, unit = dict(zip(names, vals)), dict(zip(names, units))
g = lambda k: num(raw.get(k, ""))
cyc = g("sm__cycles_elapsed.avg")
waves = math.ceil(math.ceil(M / bm) * math.ceil(N / bn) / 132)
kbs = waves * K // 128
print(f"kernel            {raw.get('Kernel Name', '?')[:100]}")
print(f"duration          {g('gpu__time_duration.sum')} {unit.get('gpu__time_duration.sum', '')}, "
      f"SM cycles {cyc:.0f}" if cyc else "SM cycles: not in the raw page")
if cyc:
    print(f"clk per k-block   {cyc / kbs:.0f}  ({waves} waves x {K // 128} k-blocks; tensor alone: {4 * bn * bm // 128})")
print(f"tensor GMMA pipe  {g('sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active')} % of active cycles")
print(f"FMA pipe          {g('sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active')} % of active cycles")
print(f"smem banks        reads {g('l1tex__data_bank_reads.avg.pct_of_peak_sustained_elapsed')} % / "
      f"writes {g('l1tex__data_bank_writes.avg.pct_of_peak_sustained_elapsed')} % of peak "
      f"(wgmma operands + TMA + stmatrix; ~80 % would mean shared memory binds)")
print(f"SM / L2 / DRAM    {g('sm__throughput.avg.pct_of_peak_sustained_elapsed')} % / "
      f"{g('lts__throughput.avg.pct_of_peak_sustained_elapsed')} % / "
      f"{g('gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed')} %")
print(f"issue             {g('smsp__issue_active.avg.per_cycle_active')} inst/cycle/scheduler, "
      f"warps active {g('smsp__warps_active.avg.per_cycle_active')} eligible "
      f"{g('smsp__warps_eligible.avg.per_cycle_active')}, "
      f"{g('smsp__average_warp_latency_per_inst_issued.ratio')} cycles between issues per warp")
pre, suf = "smsp__average_warps_issue_stalled_", "_per_issue_active.ratio"
stalls = sorted(((num(v) or 0.0, k[len(pre):-len(suf)]) for k, v in raw.items()
                 if k.startswith(pre) and k.endswith(suf)), reverse=True)
print("stalls (cycles per issued instruction): " +
      ", ".join(f"{n} {v:.2f}" for v, n in stalls[:5]) if stalls else "stalls: not in the raw page")

try:
    src = list(csv.reader(open(rep + ".sass.csv", newline="")))
    h = next(i for i, r in enumerate(src) if any("Stall Sampling (All" in c for c in r))
except (OSError, StopIteration):
    print("top SASS stall lines: no source page (see " + rep + ".sass.err)")
    sys.exit(0)
cols = src[h]
iall = next(i for i, c in enumerate(cols) if "Stall Sampling (All" in c)
isrc = next((i for i, c in enumerate(cols) if c.strip() in ("Source", "SASS")), 1)
iadr = next((i for i, c in enumerate(cols) if c.strip() == "Address"), 0)
reasons = [(i, c) for i, c in enumerate(cols) if c.startswith("stall_")]
body = [r for r in src[h + 1:] if len(r) == len(cols) and num(r[iall]) is not None]
total = sum(num(r[iall]) for r in body) or 1.0
print(f"top SASS stall lines ({total:.0f} samples):")
for r in sorted(body, key=lambda r: -num(r[iall]))[:5]:
    top = [f"{c} {v:.0f}" for v, c in sorted(((num(r[i]) or 0.0, c[6:]) for i, c in reasons), reverse=True)[:2] if v]
    why = f" ({', '.join(top)})" if top else ""
    print(f"  {100 * num(r[iall]) / total:5.1f}%  {r[iadr]:>6}  {r[isrc].strip()[:70]}{why}")
PY
done
exit $status
