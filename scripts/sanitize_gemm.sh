#!/usr/bin/env bash
# compute-sanitizer over the sm_90a GEMM ladder (issue 6): one small ragged shape (200 x 2112 x 1024,
# N not a multiple of 128, M not a multiple of the tile) per ladder kernel a–g (e/f/g with one- and
# two-scale-block tiles, g with and without its ping-pong turn barriers and with one math warpgroup;
# the list is SANITIZE in bench/gemm_sm90.ts), each validated against a float64 reference inside the
# run. synccheck covers g's named barriers (turns 4/5 over 256 threads, per-warpgroup 2/3 over 128).
# Run on the GPU host from the repository root:
#
#   scripts/sanitize_gemm.sh              racecheck, memcheck, synccheck
#   scripts/sanitize_gemm.sh memcheck     just one tool
#
# compute-sanitizer intercepts the driver API, so it wraps deno directly. Kernels are compiled (or taken
# from the kiln cache) outside the sanitizer first so the sanitized runs only launch.
set -euo pipefail
cd "$(dirname "$0")/.."
SAN="${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}"
if [ ! -x "$SAN" ]; then
  echo "compute-sanitizer not found (set COMPUTE_SANITIZER)" >&2
  exit 2
fi
DENO="${DENO:-$(command -v deno || echo ./denow)}"
TOOLS=("${@:-racecheck memcheck synccheck}")
read -r -a TOOLS <<<"${TOOLS[*]}"

echo "== warm-up (compile + validate outside the sanitizer)"
"$DENO" run -A bench/gemm_sm90.ts --sanitize

status=0
for tool in "${TOOLS[@]}"; do
  echo "== compute-sanitizer --tool $tool"
  extra=()
  [ "$tool" = racecheck ] && extra=(--racecheck-report all)
  if ! "$SAN" --tool "$tool" "${extra[@]}" --error-exitcode 99 --target-processes all \
      "$DENO" run -A bench/gemm_sm90.ts --sanitize; then
    echo "!! $tool reported errors" >&2
    status=1
  fi
done
exit $status
