"""Stage prepare: load one study dataset from its source (built-in synthetic, torchvision's
CIFAR-10 or Imagenette, an ImageFolder tree of your own), decode it once into uint8 arrays,
split into train/val/test."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.data.arrays import save_images
from cnnlab.data.sources import load_dataset
from cnnlab.errors import ParamsError
from cnnlab.io import atomic_dir
from cnnlab.stage import run_stage


def main(p, args):
    if args.dataset not in p.datasets:
        raise ParamsError(f"unknown dataset {args.dataset!r}; valid names (params key 'datasets'): "
                          f"{', '.join(p.datasets)}")  # fmt: skip
    data = load_dataset(args.dataset, p.datasets[args.dataset], p.seed)
    with atomic_dir(args.out) as tmp:
        save_images(data, tmp)
    sizes = ", ".join(f"{name} {len(split)}" for name, split in data.splits.items())
    print(f"{args.dataset}: {data.source}; {len(data.classes)} classes; {sizes}")


if __name__ == "__main__":
    run_stage(main, doc=__doc__, names={"dataset": "a dataset name of params.yaml datasets"},
              out="the prepared dataset folder (train, val and test arrays)")  # fmt: skip
