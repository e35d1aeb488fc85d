"""Peer for bench/group_quant.ts: a straightforward Triton per-token-group FP8 quantization (one program per
(row, group), M-major scales), and SGLang-style separate silu-and-mul then quant, timed with
triton.testing.do_bench (median; do_bench flushes L2 between repetitions).

argv[1] = JSON {"shapes": [[M, K], ...], "group": 128, "silu_shapes": [[M, H], ...]}. Prints one JSON line:
{"torch": ..., "triton": ..., "device": ..., "quant": [{"shape": [M, K], "us": float} | {"shape", "error"}],
 "silu_then_quant": [{"shape": [M, H], "silu_us": float, "quant_us": float, "us": float}]}.
"""
import json
import sys

import torch
import triton
import triton.language as tl

FP8_MAX = 448.0


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


def buffers(M, K, G):
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    q = torch.empty(M, K, device="cuda", dtype=torch.float8_e4m3fn)
    s = torch.empty(K // G, M, device="cuda", dtype=torch.float32)  # M-major: (row, group) at group * M + row
    return x, q, s


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3


def main():
    args = json.loads(sys.argv[1])
    G = args.get("group", 128)
    out = {"torch": torch.__version__, "triton": triton.__version__, "device": torch.cuda.get_device_name(),
           "quant": [], "silu_then_quant": []}
    for M, K in args["shapes"]:
        try:
            x, q, s = buffers(M, K, G)
            quant(x, q, s, G)
            torch.cuda.synchronize()
            out["quant"].append({"shape": [M, K], "us": bench(lambda: quant(x, q, s, G))})
        except Exception as e:  # report and go on
            out["quant"].append({"shape": [M, K], "error": str(e).split("\n")[0]})
    for M, H in args.get("silu_shapes", []):
        try:
            x = torch.randn(M, 2 * H, device="cuda", dtype=torch.bfloat16)
            y = torch.empty(M, H, device="cuda", dtype=torch.bfloat16)
            q = torch.empty(M, H, device="cuda", dtype=torch.float8_e4m3fn)
            s = torch.empty(H // G, M, device="cuda", dtype=torch.float32)
            silu_mul(x, y)
            quant(y, q, s, G)
            torch.cuda.synchronize()
            a = bench(lambda: silu_mul(x, y))
            b = bench(lambda: quant(y, q, s, G))
            both = bench(lambda: (silu_mul(x, y), quant(y, q, s, G)))
            out["silu_then_quant"].append({"shape": [M, H], "silu_us": a, "quant_us": b, "us": both})
        except Exception as e:
            out["silu_then_quant"].append({"shape": [M, H], "error": str(e).split("\n")[0]})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
