"""Peer for bench/gemm.ts: torch._scaled_mm with DeepSeek blockwise scales (1x128 activations, 128x128
weights; cuBLASLt >= 12.9 on sm_90), timed the way decode runs it: CUDA-graph replay, weights rotating over
enough buffers to exceed L2.

argv[1] = JSON {"shapes": [[M, N, K], ...], "l2_bytes": int, "reps": int}. Prints one JSON line:
{"torch": ..., "device": ..., "results": [{"shape": [M, N, K], "us": per-call µs, "padded_m": int | null}
 | {"shape": ..., "error": "..."}]}.

The call (fp8-gemm-hopper.md §7) is the "TN" form: a = A [M, K] e4m3, b = W.t() (a [K, N] column-major view
of W [N, K]), scale_a = sa.t() with sa contiguous [K/128, M] (M-major, strides (1, M)), scale_b = sb.t()
with sb contiguous [ceil(N/128), K/128]. cuBLASLt refuses some M (M = 1 gives CUBLAS_STATUS_NOT_SUPPORTED):
such a shape is reported as an error, then retried with M padded to a multiple of 4 (what vLLM's wrapper
does) and the padded time reported with "padded_m". Each distinct (M, N, K) is timed once (padded shapes
reuse the time of the real one), and the GPU is kept busy (torch.cuda._sleep) while the host submits the
replay, so the interval is GPU time only — the same method bench/gemm.ts uses for kiln.
"""
import json
import math
import sys

import torch


def weights(N, K, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    b = (torch.randn(N, K, device="cuda", generator=g) * 48).clamp(-448, 448).to(torch.float8_e4m3fn)
    sb = (torch.rand(math.ceil(N / 128), K // 128, device="cuda", generator=g) + 0.5) * 2**-10
    return b, sb


def activations(M, K, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    a = (torch.randn(M, K, device="cuda", generator=g) * 48).clamp(-448, 448).to(torch.float8_e4m3fn)
    sa = (torch.rand(K // 128, M, device="cuda", generator=g) + 0.5) * 2**-6
    return a, sa


def call(a, sa, b, sb):
    return torch._scaled_mm(a, b.t(), scale_a=sa.t(), scale_b=sb.t(), out_dtype=torch.bfloat16)


_weights = {}


def weight_sets(N, K, l2):
    """Enough weight copies to exceed 2x L2, kept for the M values of one (N, K)."""
    if (N, K) not in _weights:
        _weights.clear()
        torch.cuda.empty_cache()
        nsets = max(1, min(16, math.ceil(2 * l2 / (N * K))))
        _weights[(N, K)] = [weights(N, K, 11 + i) for i in range(nsets)]
    return _weights[(N, K)]


def time_graph(M, N, K, l2, reps):
    ws = weight_sets(N, K, l2)
    nsets = len(ws)
    a, sa = activations(M, K, 7)
    call(a, sa, *ws[0])  # raises for unsupported shapes before any capture
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up on the capture stream (cuBLAS workspace)
        for i in range(3):
            call(a, sa, *ws[i % nsets])
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(reps):
            call(a, sa, *ws[i % nsets])
    graph.replay()
    torch.cuda.synchronize()
    samples = []
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        getattr(torch.cuda, "_sleep", lambda _: None)(500_000)  # GPU spin while the replay is queued
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1000.0 / reps)
    samples.sort()
    del graph
    return samples[len(samples) // 2]


def main():
    args = json.loads(sys.argv[1])
    l2 = int(args.get("l2_bytes", 60 << 20))
    reps = int(args.get("reps", 20))
    results = []
    timed = {}  # (M, N, K) -> µs or an exception message

    def once(M, N, K):
        if (M, N, K) not in timed:
            try:
                timed[(M, N, K)] = time_graph(M, N, K, l2, reps)
            except Exception as ex:
                timed[(M, N, K)] = f"{type(ex).__name__}: {str(ex).splitlines()[0] if str(ex) else ''}"
                torch.cuda.synchronize()
        return timed[(M, N, K)]

    for M, N, K in args["shapes"]:
        t = once(M, N, K)
        if not isinstance(t, str):
            results.append({"shape": [M, N, K], "us": t, "padded_m": None})
            continue
        entry = {"shape": [M, N, K], "error": t}  # report, then try the padded M vLLM would use
        mp = (M + 3) // 4 * 4
        if mp != M:
            tp = once(mp, N, K)
            if not isinstance(tp, str):
                entry["us"] = tp
                entry["padded_m"] = mp
        results.append(entry)
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(), "results": results}))


if __name__ == "__main__":
    main()
