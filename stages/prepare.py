"""Stage prepare: one study dataset decoded once into uint8 arrays, split into train/val/test:
cnnlab.study.prepare."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.data.arrays import save_images
from cnnlab.io import atomic_dir
from cnnlab.stage import run_stage
from cnnlab.study.prepare import describe, prepare


def main(p, args):
    data = prepare(p, args.dataset)
    with atomic_dir(args.out) as tmp:
        save_images(data, tmp)
    print(describe(args.dataset, data))


if __name__ == "__main__":
    run_stage(main, doc=__doc__, names={"dataset": "a dataset name of params.yaml datasets"},
              out="the prepared dataset folder (train, val and test arrays)")  # fmt: skip
