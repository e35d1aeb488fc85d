"""Peer for bench/turboquant.ts.

decode: bf16 decode attention with PyTorch's scaled_dot_product_attention (GQA via enable_gqa=True), one query
token per sequence over dense K/V [B, Hk, L, D] — the uncompressed cache a TurboQuant cache replaces.
store: the TurboQuant 4bit_nc store written as PyTorch eager ops the way vLLM's first version did it (float copy,
norm, divide, dense fp32 GEMM with the normalized Hadamard matrix, bucketize, nibble packing, value min/max
quantization, scatter into the paged uint8 cache).

Timing: CUDA events around each repetition after warm-up, median. Every buffer set is larger than L2, so no
rotation is needed. argv[1] = JSON {"decode": [[B, L, Hq, Hk, D], ...], "store": [[T, Hk, D], ...]}.
Prints one JSON line: {"device", "torch", "decode": [{"shape", "us"} | {"shape", "error"}], "store": [...]}.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F


def timed(fn, warmup=5, reps=20):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1000.0)
    times.sort()
    return times[len(times) // 2]


def decode_case(B, L, Hq, Hk, D):
    q = torch.randn(B, Hq, 1, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, Hk, L, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, Hk, L, D, device="cuda", dtype=torch.bfloat16)
    us = timed(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
    del q, k, v
    torch.cuda.empty_cache()
    return us


def hadamard(n):
    h = torch.ones(1, 1, dtype=torch.float32)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return (h / math.sqrt(n)).cuda()


def store_case(T, Hk, D):
    # 4bit_nc: 4-bit keys (Lloyd-Max midpoints for N(0, 1/D), values of the D=128 table scaled), 4-bit values
    k = torch.randn(T, Hk, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(T, Hk, D, device="cuda", dtype=torch.bfloat16)
    pos = torch.tensor([0.0228291824, 0.0461836942, 0.0706809834, 0.0971699804, 0.12702021, 0.162914261, 0.212104172])
    mids = torch.cat([-pos.flip(0), torch.zeros(1), pos]).mul(math.sqrt(128 / D)).cuda()
    H = hadamard(D)
    slot = D // 2 + 2 + D // 2 + 4
    cache = torch.zeros(T, Hk, slot, device="cuda", dtype=torch.uint8)
    slots = torch.randperm(T, device="cuda")

    def store():
        kf = k.float()
        n = kf.norm(dim=-1, keepdim=True)
        y = (kf / (n + 1e-8)) @ H
        idx = torch.bucketize(y, mids, right=True).to(torch.uint8)
        kq = idx[..., 0::2] | (idx[..., 1::2] << 4)
        vf = v.float()
        lo, hi = vf.amin(-1, keepdim=True), vf.amax(-1, keepdim=True)
        s = ((hi - lo) / 15).clamp_min(1e-8)
        q = ((vf - lo) / s + 0.5).floor().clamp(0, 15).to(torch.uint8)
        vq = q[..., 0::2] | (q[..., 1::2] << 4)
        meta = torch.cat([n.half(), s.half(), lo.half()], -1).view(torch.uint8)
        row = torch.cat([kq, meta[..., 0:2], vq, meta[..., 2:6]], -1)
        cache[slots] = row

    us = timed(store, warmup=3, reps=10)
    moved = 2 * T * Hk * D * 2 + T * Hk * slot
    del k, v, cache
    torch.cuda.empty_cache()
    return us, moved


def main():
    args = json.loads(sys.argv[1])
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "decode": [], "store": []}
    for shape in args.get("decode", []):
        try:
            out["decode"].append({"shape": shape, "us": decode_case(*shape)})
        except Exception as e:  # noqa: BLE001 — report and keep going
            out["decode"].append({"shape": shape, "error": str(e).split("\n")[0]})
    for shape in args.get("store", []):
        try:
            us, moved = store_case(*shape)
            out["store"].append({"shape": shape, "us": us, "bytes": moved})
        except Exception as e:  # noqa: BLE001
            out["store"].append({"shape": shape, "error": str(e).split("\n")[0]})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
