"""Stage pretrain: the backbone the transfer cells load, trained on transfer.source from random
weights: cnnlab.study.pretrain."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.stage import run_stage
from cnnlab.study.pretrain import pretrain, source_data
from cnnlab.tracking import stage_run
from cnnlab.train import distributed


def main(p, args):
    data, params, tags = source_data(p)
    checkpoint = args.checkpoints / "pretrain.pt"
    with stage_run("pretrain", params, data_source=data.source, tags=tags,
                   system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        trained = pretrain(p, data, checkpoint=checkpoint, run=run)
        if not distributed.is_main():  # under torchrun, rank 0 writes
            return
        trained.save(args.out, args.metrics)
        trained.log(run)
    checkpoint.unlink(missing_ok=True)  # finished: nothing to resume
    accuracy = trained.result.metrics["test"]["accuracy"]
    print(f"pretrained {p.transfer.pretrain} on {p.transfer.source}: test accuracy {accuracy:.3f}")


if __name__ == "__main__":
    run_stage(main, "checkpoints", doc=__doc__, out="pretrained backbones, one folder per model",
              metrics="folder of metrics JSON, one per model")  # fmt: skip
