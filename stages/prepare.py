"""Stage prepare: load one study dataset from its source (built-in synthetic, torchvision's
CIFAR-10, an ImageFolder tree or Imagenette), decode it once into uint8 arrays, split into
train/val/test."""

from cnnlab.config import ParamsError
from cnnlab.data.sources import load_dataset, save_prepared
from cnnlab.stage import run_stage


def main(p, args):
    cfg = getattr(p.datasets, args.dataset, None)
    if cfg is None:
        raise ParamsError(f"unknown dataset {args.dataset!r}; valid names: cifar10, imagenet10")
    data = load_dataset(args.dataset, cfg, p.seed)
    save_prepared(data, args.out)
    sizes = ", ".join(f"{name} {len(split)}" for name, split in data.splits.items())
    print(f"{args.dataset}: {data.source}; {len(data.classes)} classes; {sizes}")


if __name__ == "__main__":
    run_stage(main, "out", names=("dataset",), doc=__doc__)
