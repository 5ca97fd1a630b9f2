"""Fits a small BatchNorm-free CNN with cnnlab's loop, under torchrun or alone, and writes what it
saw: the history (rank 0 only), the images each process trained on, and its final weights' sum.

    python tests/helpers/ddp_fit.py OUT [--shuffle] [--epochs N]
    torchrun --standalone --nproc_per_node 2 tests/helpers/ddp_fit.py OUT [--shuffle] [--epochs N]

A checkpoint in OUT from an earlier call is resumed (it is kept, as after an interruption).
"""

import json
import sys
from pathlib import Path

import torch
from torch import nn

from cnnlab.params.schema import Training
from cnnlab.tensors import TensorData
from cnnlab.train import distributed
from cnnlab.train.distributed import device
from cnnlab.train.loop import fit


def data(n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 256, (n, 3, 12, 12), generator=g, dtype=torch.uint8)
    for c in range(3):  # a learnable signal: the class's channel is darker
        images[labels == c, c] //= 2
    return TensorData(images, labels)


def main() -> None:
    out = Path(sys.argv[1])
    distributed.init()
    rank = distributed.rank()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)
    )
    model.arch = {"name": "test"}  # what save_checkpoint records
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])) if m.training else None)
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 4
    cfg = Training(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.0, batch_size=8, epochs=epochs, patience=0,
                   schedule="constant", label_smoothing=0.0)
    result = fit(model, data(40, 1), data(12, 2), cfg, seed=0, device=device(), checkpoint=out / "checkpoint.pt",
                 fingerprint="x", shuffle="--shuffle" in sys.argv)  # fmt: skip
    weights = float(sum(p.detach().double().sum() for p in model.parameters()))
    (out / f"rank{rank}.json").write_text(json.dumps({"seen": sum(seen), "weights": weights}))
    if distributed.is_main():
        (out / "history.json").write_text(json.dumps(result.history))
    distributed.shutdown()


if __name__ == "__main__":
    main()
