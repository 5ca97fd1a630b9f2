"""Issue 15's "training several models at once", measured: M copies of the 8-class CNN trained
one after another (what train_classifier does: 3 seeds x 5 cures = 15 fits) against the same M
models as one batched ensemble, two ways:

  grouped   one module: the convolutions with groups=M (model m's channels are block m, so
            BatchNorm, ReLU and max-pool stay per model), the FC layers as batched matmuls;
            every model still gets its own batch of images. Exactly the M models (checked below).
  vmap      torch.func.stack_module_state + functional_call under vmap (BatchNorm's running
            statistics cannot be updated in place under vmap, so here they are not tracked)

Each step: forward, cross-entropy, backward, SGD update, batch 32 of 64 px crops (the chain's
default until issue 15's session 8, when these results were measured; `--size 32` for today's).
The three variants alternate for `--rounds` rounds in one process, so they see the same machine.

    python benchmarks/ensemble.py                  # M = 3 and 15, ~2 min on 2 cores
    python benchmarks/ensemble.py --models 3 --rounds 2 --steps 5
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from cnnlab.models import ObjectsCNN


class GroupedEnsemble(nn.Module):
    """M ObjectsCNNs as one module. Input (B, 3M, S, S): model m's images are channels 3m..3m+2.
    Output (M, B, classes)."""

    def __init__(self, models: list[ObjectsCNN]):
        super().__init__()
        m = len(models)
        self.m = m
        layers = []
        for i, layer in enumerate(models[0].features):
            if isinstance(layer, nn.Conv2d):
                conv = nn.Conv2d(layer.in_channels * m, layer.out_channels * m, layer.kernel_size,
                                 padding=layer.padding, groups=m)  # fmt: skip
                conv.weight.data = torch.cat([mod.features[i].weight.data for mod in models])
                conv.bias.data = torch.cat([mod.features[i].bias.data for mod in models])
                layers.append(conv)
            elif isinstance(layer, nn.BatchNorm2d):
                bn = nn.BatchNorm2d(layer.num_features * m, eps=layer.eps, momentum=layer.momentum)
                bn.weight.data = torch.cat([mod.features[i].weight.data for mod in models])
                bn.bias.data = torch.cat([mod.features[i].bias.data for mod in models])
                layers.append(bn)
            else:
                layers.append(copy.deepcopy(layer))
        self.features = nn.Sequential(*layers)
        fc1 = [mod.classifier[1] for mod in models]
        fc2 = [mod.classifier[3] for mod in models]
        self.w1 = nn.Parameter(torch.stack([f.weight.data.t() for f in fc1]))  # (M, flat, hidden)
        self.b1 = nn.Parameter(torch.stack([f.bias.data for f in fc1]).unsqueeze(1))  # (M, 1, hidden)
        self.w2 = nn.Parameter(torch.stack([f.weight.data.t() for f in fc2]))
        self.b2 = nn.Parameter(torch.stack([f.bias.data for f in fc2]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (B, 32M, s, s)
        f = f.reshape(f.shape[0], self.m, -1).transpose(0, 1)  # (M, B, flat)
        h = torch.relu(torch.baddbmm(self.b1, f, self.w1))
        return torch.baddbmm(self.b2, h, self.w2)


def make_models(m: int, classes: int, hidden: int, size: int) -> list[ObjectsCNN]:
    out = []
    for seed in range(m):
        torch.manual_seed(seed)
        out.append(ObjectsCNN(classes, hidden, size).to(memory_format=torch.channels_last))
    return out


def check_same(models: list[ObjectsCNN], x: torch.Tensor) -> float:
    """Largest |difference| of the grouped ensemble's logits from the separate models' (train mode)."""
    ens = GroupedEnsemble(copy.deepcopy(models)).to(memory_format=torch.channels_last)
    with torch.no_grad():
        sep = torch.stack([mod(x[:, 3 * i : 3 * i + 3]) for i, mod in enumerate(copy.deepcopy(models))])
        return (ens(x) - sep).abs().max().item()


def timed(step, steps: int) -> float:
    step()  # warm-up (oneDNN primitive creation)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, nargs="+", default=[3, 15])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=1012)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads,"
          f" {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    classes, b, s = 8, args.batch, args.size
    for m in args.models:
        models = make_models(m, classes, args.hidden, s)
        x = torch.rand(b, 3 * m, s, s).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, classes, (m, b))
        print(f"M={m}: grouped ensemble vs separate models, max |logit difference| {check_same(models, x):.2e}")
        loss_fn = nn.CrossEntropyLoss()

        seq_opts = [torch.optim.SGD(mod.parameters(), lr=0.01) for mod in models]
        xs = [x[:, 3 * i : 3 * i + 3].contiguous(memory_format=torch.channels_last) for i in range(m)]

        def sequential():
            for mod, opt, xi, yi in zip(models, seq_opts, xs, y):
                opt.zero_grad(set_to_none=True)
                loss_fn(mod(xi), yi).backward()
                opt.step()

        ens = GroupedEnsemble(copy.deepcopy(models)).to(memory_format=torch.channels_last)
        ens_opt = torch.optim.SGD(ens.parameters(), lr=0.01)

        def grouped():
            ens_opt.zero_grad(set_to_none=True)
            logits = ens(x)
            loss_fn(logits.reshape(-1, classes), y.reshape(-1)).mul(m).backward()  # = sum of the M mean losses
            ens_opt.step()

        base = copy.deepcopy(models[0]).to("meta")
        params, buffers = stack_module_state(copy.deepcopy(models))
        params = {k: v.detach().requires_grad_() for k, v in params.items()}
        vm_opt = torch.optim.SGD(list(params.values()), lr=0.01)
        xv = torch.stack(xs)

        def one(p, bufs, xi, yi):
            return loss_fn(functional_call(base, (p, bufs), (xi,)), yi)

        def vmapped():
            vm_opt.zero_grad(set_to_none=True)
            vmap(one, in_dims=(0, None, 0, 0))(params, {}, xv, y).sum().backward()
            vm_opt.step()

        for mod in base.modules():  # no in-place running statistics under vmap
            if isinstance(mod, nn.BatchNorm2d):
                mod.track_running_stats = False
                mod.running_mean = mod.running_var = None
        variants = {"sequential": sequential, "grouped": grouped, "vmap": vmapped}
        times = {k: [] for k in variants}
        for _ in range(args.rounds):
            for name, step in variants.items():
                times[name].append(timed(step, args.steps))
        seq = min(times["sequential"])
        for name, ts in times.items():
            best = min(ts)
            print(f"  {name:10s} {best * 1e3:8.1f} ms per step of {m} models ({best / m * 1e3:6.1f} ms a model),"
                  f" {seq / best:4.2f}x sequential; rounds: " + " ".join(f"{t * 1e3:.0f}" for t in ts))  # fmt: skip


if __name__ == "__main__":
    main()
