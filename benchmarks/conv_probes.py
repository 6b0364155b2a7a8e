"""lenet's two convolution stages, computed the way digitcmp does and the ways that looked faster on paper.

For R members trained together (maps B×(R·C)×H×W, as in ``digitcmp.models``), each stage is timed forward and
forward + backward, in one run, interleaved, medians of several calls. digitcmp's way is oneDNN's grouped
convolution on channels-last maps. The alternatives, all computing the same function:

- first stage (1→32 channels, 3×3, then max-pool and ReLU): unfold + batched matrix product; one ordinary
  convolution per member (what a plain per-round loop runs), concatenated afterwards;
- second convolution (32→64, 3×3, 6×6 → 4×4): Winograd F(4×4, 3×3), where each 6×6 map is one tile and
  needs 36 instead of 144 multiplications per channel pair (input and output transforms as small matrix
  products, 36·R batched 32×64 products between them).

    python benchmarks/conv_probes.py               # 10 members of 100 pairs (200 digits each)
    python benchmarks/conv_probes.py --members 5 --calls 30
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from digitcmp.train import keep_freed_memory

Way = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
# Winograd F(4×4, 3×3) on the points 0, ±1, ±2, ∞ (Lavin and Gray, 2016): Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A.
B_T = torch.tensor(
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64,
)  # fmt: skip
G = torch.tensor(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64,
)  # fmt: skip
A_T = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])
TILE_IN = torch.kron(B_T, B_T).float()  # 36×36: a flattened 6×6 map → its 36 transformed values
TILE_OUT = torch.kron(A_T, A_T).float()  # 16×36: 36 products → the flattened 4×4 output


def winograd_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, members: int) -> torch.Tensor:
    """Grouped valid 3×3 convolution of maps B×(R·C)×6×6 with weight (R·O)×C×3×3 → B×(R·O)×4×4."""
    batch, (outputs, channels) = x.shape[0], weight.shape[:2]
    per_member = outputs // members
    maps = x.permute(0, 2, 3, 1).reshape(batch, 36, members * channels)
    tiles = (TILE_IN @ maps).view(batch, 36, members, channels).permute(1, 2, 0, 3).reshape(-1, batch, channels)
    g = G.float()
    kernels = torch.einsum("ik,eockl,jl->ijeco", g, weight.view(members, per_member, channels, 3, 3), g)
    products = torch.bmm(tiles, kernels.reshape(-1, channels, per_member))  # (36·R)×B×O
    out = (TILE_OUT @ products.view(36, -1)).view(4, 4, members, batch, per_member).permute(3, 0, 1, 2, 4)
    return (out.reshape(batch, 4, 4, outputs) + bias).permute(0, 3, 1, 2)


def unfold_stage(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, members: int) -> torch.Tensor:
    """First stage as patches × weights: maps B×R×14×14 → B×(R·32)×6×6."""
    batch = x.shape[0]
    patches = x.unfold(2, 3, 1).unfold(3, 3, 1).permute(1, 0, 2, 3, 4, 5).reshape(members, batch * 144, 9)
    out = torch.baddbmm(bias.view(members, 1, -1), patches, weight.view(members, -1, 9).transpose(1, 2))
    out = out.view(members, batch, 12, 12, -1).permute(1, 0, 4, 2, 3).reshape(batch, -1, 12, 12)
    return F.relu(F.max_pool2d(out, 2))


def per_member_stage(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, members: int) -> torch.Tensor:
    """First stage as one ordinary convolution per member, concatenated into channels-last maps."""
    outs = [
        F.relu(F.max_pool2d(F.conv2d(x[:, m : m + 1], w, b), 2))
        for m, (w, b) in enumerate(zip(weight.chunk(members), bias.chunk(members), strict=True))
    ]
    return torch.cat(outs, 1).contiguous(memory_format=torch.channels_last)


def grouped_stage(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, members: int) -> torch.Tensor:
    """First stage as digitcmp computes it (with channels-last input maps)."""
    return F.relu(F.max_pool2d(F.conv2d(x, weight, bias, groups=members), 2))


def grouped_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, members: int) -> torch.Tensor:
    return F.conv2d(x, weight, bias, groups=members)


def milliseconds(
    way: Way, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, members: int, calls: int, backward: bool
) -> list[float]:
    """Times of ``calls`` calls after one warm-up: the forward pass alone, or forward and backward to the weights
    (and to ``x`` when it requires a gradient)."""
    weight, bias = w.clone().requires_grad_(backward), b.clone().requires_grad_(backward)
    times = []
    for call in range(calls + 1):
        started = time.perf_counter()
        with torch.set_grad_enabled(backward):
            out = way(x, weight, bias, members)
            if backward:
                out.sum().backward()
        if call:
            times.append(1000 * (time.perf_counter() - started))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10, help="rounds trained together")
    parser.add_argument("--digits", type=int, default=200, help="digits per member and step (2 × batch size)")
    parser.add_argument("--calls", type=int, default=20, help="timed calls of each way, per pass")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as train_members does
    torch.manual_seed(0)
    r, n = args.members, args.digits
    digits = torch.rand(n, r, 14, 14)
    # The second convolution's input is an activation: its backward pass computes that gradient too.
    maps = torch.rand(n, r * 32, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    stage_w, stage_b = torch.randn(r * 32, 1, 3, 3) / 3, torch.randn(r * 32) / 3
    conv_w, conv_b = torch.randn(r * 64, 32, 3, 3) / 17, torch.randn(r * 64) / 17
    cases = {  # name: (function, input, weight, bias)
        "first stage, grouped, channels-last (digitcmp)": (
            grouped_stage, digits.contiguous(memory_format=torch.channels_last), stage_w, stage_b),
        "first stage, grouped, contiguous": (grouped_stage, digits, stage_w, stage_b),
        "first stage, unfold + batched matmul": (unfold_stage, digits, stage_w, stage_b),
        "first stage, one convolution per member": (per_member_stage, digits, stage_w, stage_b),
        "second conv, grouped, channels-last (digitcmp)": (grouped_conv, maps, conv_w, conv_b),
        "second conv, Winograd F(4×4, 3×3)": (winograd_conv, maps, conv_w, conv_b),
    }  # fmt: skip
    reference = {"first": grouped_stage, "second": grouped_conv}
    times: dict[str, dict[str, list[float]]] = {name: {"forward": [], "backward": []} for name in cases}
    for _ in range(2):  # two interleaved passes, so drifting machine load hits every way alike
        for name, case in cases.items():
            for key in ("forward", "backward"):
                times[name][key] += milliseconds(*case, r, args.calls, backward=key == "backward")
    print(f"{r} members × {n} digits, {args.threads} threads; medians of {2 * args.calls} calls")
    print(f"{'':48} {'forward':>9} {'fwd+bwd':>9} {'max error':>10}")
    for name, (fn, x, w, b) in cases.items():
        exact = reference[name.split()[0]](x.double(), w.double(), b.double(), r)
        error = (fn(x, w, b, r).double() - exact).abs().max().item()
        forward, both = (statistics.median(times[name][key]) for key in ("forward", "backward"))
        print(f"{name:48} {forward:7.1f} ms {both:7.1f} ms {error:10.1e}")


if __name__ == "__main__":
    main()
