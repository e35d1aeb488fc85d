#!/usr/bin/env bash
# One GPU-host session: unpack the carried Deno, then run the named steps, each under a time limit,
# logging everything to $OUT (or /tmp/kiln-out). Steps: probe, rt, sm90smoke, sm90bench, gq, gemm, tq,
# tests, bench, sanitize.
set -u
cd "$(dirname "$0")/.."
if [ -f .carry/deno.xz ] && ! command -v deno >/dev/null; then
  xz -dc .carry/deno.xz > /usr/local/bin/deno && chmod +x /usr/local/bin/deno
fi
export KILN_CACHE_DIR=${KILN_CACHE_DIR:-/tmp/kiln-cache}
OUT=${OUT:-/tmp/kiln-out}
mkdir -p "$OUT"
strip() { sed 's/\x1b\[[0-9;]*m//g'; }
step() { # name, limit, command...
  local name=$1 limit=$2; shift 2
  echo "===== $name"
  timeout "$limit" "$@" 2>&1 | strip > "$OUT/$name.log"
  echo "exit $?" >> "$OUT/$name.log"
}
for s in "$@"; do
  case $s in
    probe) for v in param global bulk; do step "probe_$v" 60 deno run -A scripts/tma_probe.ts $v; tail -2 "$OUT/probe_$v.log"; done ;;
    rt) step rt 180 deno test -A tests/runtime/gpu_test.ts tests/runtime/gpu_tma_test.ts
        grep -E '^gpu: .*(ok|FAILED)|passed|^error' "$OUT/rt.log" | head -30 ;;
    sm90smoke) step sm90smoke 300 deno run -A bench/gemm_sm90.ts --sanitize; tail -15 "$OUT/sm90smoke.log" ;;
    sm90bench) step sm90bench 500 deno run -A bench/gemm_sm90.ts; tail -40 "$OUT/sm90bench.log" ;;
    sm90tests) step sm90tests 400 deno test -A --filter gpu: tests/ops/gemm_sm90_test.ts; grep -E '^gpu: .*(ok|FAILED)|passed|^error' "$OUT/sm90tests.log" | head -30 ;;
    tests) step tests 500 deno test -A --filter gpu: tests/; grep -E '^gpu: .*(ok|FAILED)|passed|^error' "$OUT/tests.log" | head -60 ;;
    bench) shift; step bench 550 deno run -A bench/main.ts; tail -80 "$OUT/bench.log" ;;
    *) step "$s" 400 deno run -A "bench/$s.ts"; tail -40 "$OUT/$s.log" ;;
  esac
done
