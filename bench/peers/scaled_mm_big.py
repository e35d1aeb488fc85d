"""Peer for bench/gemm_sm90.ts: torch._scaled_mm with DeepSeek blockwise scales (cuBLASLt >= 12.9, sm_90).

argv[1] = JSON {"shapes": [[M, N, K], ...], "l2_bytes": int, "reps": int}. Prints one JSON line:
{"torch": ..., "device": ..., "results": [{"shape": [M, N, K], "us": median, "tflops": ..., "rel_err": ...}
 | {"shape": ..., "error": "..."}]}.
Operands follow kiln's contract: A e4m3 [M, K], sa f32 contiguous [K/128, M] (M-major), B e4m3 [N, K],
sb f32 contiguous [ceil(N/128), K/128]. The call is the "TN" form: b = B.t(), scale_a = sa.t() (strides
(1, M)), scale_b = sb.t(). Inputs rotate over enough sets to exceed L2, like kiln's side.
"""
import json
import math
import sys

import torch


def operands(M, N, K, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    a = (torch.randn(M, K, device="cuda", generator=g) * 0.5).to(torch.float8_e4m3fn)
    b = (torch.randn(N, K, device="cuda", generator=g) * 0.5).to(torch.float8_e4m3fn)
    sa = torch.rand(K // 128, M, device="cuda", generator=g) + 0.5
    sb = torch.rand(math.ceil(N / 128), K // 128, device="cuda", generator=g) + 0.5
    return a, sa, b, sb


def call(a, sa, b, sb):
    return torch._scaled_mm(a, b.t(), scale_a=sa.t(), scale_b=sb.t(), out_dtype=torch.bfloat16)


def rel_err(a, sa, b, sb, y):
    M, K = a.shape
    N = b.shape[0]
    ad = a.float() * sa.t().repeat_interleave(128, dim=1)[:M, :K]
    bd = b.float() * sb.repeat_interleave(128, dim=0)[:N].repeat_interleave(128, dim=1)[:, :K]
    ref = ad.double() @ bd.double().t()
    return float((y.double() - ref).norm() / ref.norm())


def main():
    args = json.loads(sys.argv[1])
    l2 = int(args.get("l2_bytes", 60 << 20))
    reps = int(args.get("reps", 30))
    results = []
    for M, N, K in args["shapes"]:
        try:
            set_bytes = M * K + N * K + 2 * M * N
            nsets = max(1, min(4, math.ceil(2 * l2 / set_bytes)))
            sets = [operands(M, N, K, 11 + i) for i in range(nsets)]
            y = call(*sets[0])
            err = rel_err(*sets[0], y) if M * N * K <= 4096 * 7168 * 7168 else None
            for i in range(5):
                call(*sets[i % nsets])
            torch.cuda.synchronize()
            # back-to-back like kiln's timeKernel: queue every rep between events, synchronize once
            evs = [torch.cuda.Event(enable_timing=True) for _ in range(reps + 1)]
            evs[0].record()
            for i in range(reps):
                call(*sets[i % nsets])
                evs[i + 1].record()
            evs[-1].synchronize()
            times = sorted(evs[i].elapsed_time(evs[i + 1]) * 1000.0 for i in range(reps))
            us = times[len(times) // 2]
            results.append({"shape": [M, N, K], "us": us, "tflops": 2 * M * N * K / (us * 1e-6) / 1e12, "rel_err": err})
            del sets, y
            torch.cuda.empty_cache()
        except Exception as ex:  # report and go on: one refused shape must not hide the others
            results.append({"shape": [M, N, K], "error": f"{type(ex).__name__}: {str(ex).splitlines()[0] if str(ex) else ''}"})
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(), "results": results}))


if __name__ == "__main__":
    main()
