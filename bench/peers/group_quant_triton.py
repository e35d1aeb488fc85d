"""Peer for bench/group_quant.ts: a straightforward Triton per-token-group FP8 quantization (one program per
(row, group), M-major scales), and SGLang-style separate silu-and-mul then quant.

Timing matches kiln's (runtime/timing.ts): back-to-back calls, rotating over enough input/output sets to
exceed L2 three times (at most 32), GPU time only. Here the calls are captured in a CUDA graph of 16 calls
and the replay is queued behind a GPU sleep (torch.cuda._sleep), so the interval between the two events
is the GPU's time for 16 calls; µs = median over the replays / 16. (do_bench, used before, put an event
pair and an L2 flush around every call, which adds a few µs to each small call.)

argv[1] = JSON {"shapes": [[M, K], ...], "group": 128, "silu_shapes": [[M, H], ...]}. Prints one JSON line:
{"torch": ..., "triton": ..., "device": ..., "method": ..., "quant": [{"shape": [M, K], "us": float} |
 {"shape", "error"}], "silu_then_quant": [{"shape": [M, H], "silu_us": float, "quant_us": float, "us": float}]}.
"""
import json
import math
import sys

import torch
import triton
import triton.language as tl

FP8_MAX = 448.0
BATCH = 16  # calls per graph (kiln's timeKernel: 16 back-to-back calls between events)
REPS = 20


@triton.jit
def _group_quant(x_ptr, q_ptr, s_ptr, K, s_ld, eps, G: tl.constexpr, FMAX: tl.constexpr):
    pid = tl.program_id(0)
    groups = K // G
    row = pid // groups
    g = pid % groups
    offs = tl.arange(0, G)
    base = row.to(tl.int64) * K + g * G
    x = tl.load(x_ptr + base + offs).to(tl.float32)
    amax = tl.maximum(tl.max(tl.abs(x)), eps)
    s = amax / FMAX
    q = tl.clamp(x / s, -FMAX, FMAX).to(q_ptr.dtype.element_ty)
    tl.store(q_ptr + base + offs, q)
    tl.store(s_ptr + g.to(tl.int64) * s_ld + row, s)


@triton.jit
def _silu_mul(x_ptr, y_ptr, H, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < H
    gate = tl.load(x_ptr + row * 2 * H + cols, mask=mask).to(tl.float32)
    up = tl.load(x_ptr + row * 2 * H + H + cols, mask=mask).to(tl.float32)
    act = (gate * tl.sigmoid(gate)).to(tl.bfloat16).to(tl.float32)
    tl.store(y_ptr + row * H + cols, (act * up).to(tl.bfloat16), mask=mask)


def quant(x, q, s, G):
    M, K = x.shape
    _group_quant[(M * (K // G),)](x, q, s, K, s.stride(0), 1e-10, G=G, FMAX=FP8_MAX, num_warps=1)


def silu_mul(x, y):
    M, H2 = x.shape
    BLOCK = 1024
    _silu_mul[(M, triton.cdiv(H2 // 2, BLOCK))](x, y, H2 // 2, BLOCK=BLOCK, num_warps=4)


def nsets(nbytes):
    """Input/output sets to rotate over: 3x L2 in all, at most 32 (as bench/group_quant.ts)."""
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    return max(1, min(32, math.ceil(3 * l2 / nbytes)))


def quant_buffers(M, K, G):
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    q = torch.empty(M, K, device="cuda", dtype=torch.float8_e4m3fn)
    s = torch.empty(K // G, M, device="cuda", dtype=torch.float32)  # M-major: (row, group) at group * M + row
    return x, q, s


def time_calls(calls):
    """Median GPU µs per call of `calls` (run round-robin): a CUDA graph of BATCH back-to-back calls,
    replayed behind a GPU sleep so the host's launch work is not timed."""
    for i in range(max(2, len(calls))):  # compile / warm up outside the capture
        calls[i % len(calls)]()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(BATCH):
            calls[i % len(calls)]()
    graph.replay()
    torch.cuda.synchronize()
    sleep = getattr(torch.cuda, "_sleep", lambda _: None)
    evs = [torch.cuda.Event(enable_timing=True) for _ in range(REPS + 1)]
    sleep(2_000_000)  # ~1 ms of GPU spin: every replay is queued before the first one starts
    evs[0].record()
    for r in range(REPS):
        graph.replay()
        evs[r + 1].record()
    torch.cuda.synchronize()
    us = sorted(evs[r].elapsed_time(evs[r + 1]) * 1000.0 / BATCH for r in range(REPS))
    del graph
    return us[len(us) // 2]


def main():
    args = json.loads(sys.argv[1])
    G = args.get("group", 128)
    out = {"torch": torch.__version__, "triton": triton.__version__, "device": torch.cuda.get_device_name(),
           "method": f"CUDA graph of {BATCH} back-to-back calls, median of {REPS} replays / {BATCH}",
           "quant": [], "silu_then_quant": []}
    for M, K in args["shapes"]:
        try:
            sets = [quant_buffers(M, K, G) for _ in range(nsets(3 * M * K + 4 * M * K // G))]
            calls = [lambda b=b: quant(b[0], b[1], b[2], G) for b in sets]
            out["quant"].append({"shape": [M, K], "us": time_calls(calls)})
            del sets, calls
        except Exception as e:  # report and go on
            out["quant"].append({"shape": [M, K], "error": str(e).split("\n")[0]})
        torch.cuda.empty_cache()
    for M, H in args.get("silu_shapes", []):
        try:
            n = nsets(7 * M * H + 4 * M * H // G)
            sets = []
            for _ in range(n):
                x = torch.randn(M, 2 * H, device="cuda", dtype=torch.bfloat16)
                y = torch.empty(M, H, device="cuda", dtype=torch.bfloat16)
                q = torch.empty(M, H, device="cuda", dtype=torch.float8_e4m3fn)
                s = torch.empty(H // G, M, device="cuda", dtype=torch.float32)
                sets.append((x, y, q, s))
            a = time_calls([lambda b=b: silu_mul(b[0], b[1]) for b in sets])
            c = time_calls([lambda b=b: quant(b[1], b[2], b[3], G) for b in sets])
            both = time_calls([lambda b=b: (silu_mul(b[0], b[1]), quant(b[1], b[2], b[3], G)) for b in sets])
            out["silu_then_quant"].append({"shape": [M, H], "silu_us": a, "quant_us": c, "us": both})
            del sets
        except Exception as e:
            out["silu_then_quant"].append({"shape": [M, H], "error": str(e).split("\n")[0]})
        torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
