"""Stage pretrain: train transfer.pretrain (a transfer family from random weights) on the
transfer.source dataset, so that transfer models have a pretrained backbone offline (their
`fallback: pretrained` where ImageNet weights cannot be had, or `weights: pretrained`). Writes the
model's checkpoint, its metrics on the source (curves, accuracy) and an MLflow run."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import pandas as pd

from cnnlab.data.sources import load_dataset
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.serving import log_model
from cnnlab.stage import device, run_stage
from cnnlab.tracking import stage_run
from cnnlab.train import distributed
from cnnlab.train.cell import run_study
from cnnlab.train.checkpoint import save_checkpoint


def main(p, args):
    name, source = p.transfer.pretrain, p.transfer.source
    cfg = p.models[name]
    data = load_dataset(source, p.datasets[source], p.seed)
    params = {"seed": p.seed, "dataset": source, "model": name, **p.datasets[source].flat("dataset."),
              **cfg.flat("model."), **p.augment.flat("augment.")}  # fmt: skip
    tags = {"cnnlab.dataset": source, "cnnlab.model": name, "cnnlab.family": cfg.family}
    checkpoint = args.checkpoints / "pretrain.pt"
    with stage_run("pretrain", params, data_source=data.source, tags=tags,
                   system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        result = run_study(
            data, name, cfg, p.augment, seed=p.seed, device=device(), checkpoint=checkpoint,
            on_epoch=lambda phase, row: run.log_epoch(row, row["epoch"], prefix=f"{phase}/"),
        )  # fmt: skip
        if not distributed.is_main():  # under torchrun, rank 0 writes
            return
        # kind study: `cnnlab predict` runs it as a study model; dataset and source: what transfer cells record
        usage = {"kind": "study", "role": "pretrain", "classes": data.classes, "input_size": data.image_size,
                 "model": name, "family": cfg.family, "dataset": source, "source": data.source}  # fmt: skip
        with atomic_dir(args.out) as tmp:
            save_checkpoint(tmp / "model.pt", result.model, classes=data.classes, weights=result.init, usage=usage)
        args.metrics.mkdir(parents=True, exist_ok=True)
        write_csv(args.metrics / "curves.csv", pd.DataFrame(result.fit.history))
        write_json(args.metrics / "metrics.json", result.metrics)  # no timings: a rerun gives the same bytes
        run.log_metrics({k: v for k, v in result.metrics.items() if k in ("train", "val", "test")})
        run.log_metrics({"seconds": result.seconds})
        own = {f"{split}_{k}": v for split in ("val", "test") for k, v in result.metrics.get(split, {}).items()}
        tags = {"dataset": source, "model": name} | {k: own[k] for k in ("val_accuracy", "test_accuracy") if k in own}
        log_model(run, result.model, f"pretrain-{source}-{name}", data.splits["val"].images,
                  registered=f"cnnlab-pretrain-{name}", metadata=usage, metrics=own, tags=tags)  # fmt: skip
    checkpoint.unlink(missing_ok=True)  # finished: nothing to resume
    print(f"pretrained {name} on {source}: test accuracy {result.metrics['test']['accuracy']:.3f}")


if __name__ == "__main__":
    run_stage(main, "checkpoints", doc=__doc__, out="pretrained backbones, one folder per model",
              metrics="folder of metrics JSON, one per model")  # fmt: skip
