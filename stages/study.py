"""Stages study and transfer (one cell of the dataset x model matrix): train one model on one
prepared dataset, write its reports and figures, log them to its MLflow run (cnnlab.study.study;
a transfer cell: cnnlab.study.transfer). Runs under torchrun too (`launcher` in params.yaml)."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.data.arrays import load_images
from cnnlab.stage import run_stage, write_figures
from cnnlab.study.study import study_cell, train_cell
from cnnlab.study.transfer import is_transfer, transfer_cell
from cnnlab.tracking import stage_run
from cnnlab.train import distributed


def main(p, args):
    cell = study_cell(p, args.dataset, args.model, load_images(args.prepared), args.prepared)
    if is_transfer(p, args.model):
        cell = transfer_cell(p, cell)
    checkpoint = args.checkpoints / f"{cell.name}.pt"
    with stage_run(cell.stage, cell.params, data_source=cell.data.source, tags=cell.tags,
                   inputs={"prepared": args.prepared}, system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        trained = train_cell(p, cell, checkpoint=checkpoint, run=run,
                             pretrained=args.pretrained and args.pretrained / "model.pt")  # fmt: skip
        if not distributed.is_main():  # under torchrun, rank 0 writes
            return
        trained.save(out=args.out, metrics=args.metrics)
        write_figures(trained.figures(), args.figures, run)
        trained.log(run, out=args.out, metrics=args.metrics)
    checkpoint.unlink(missing_ok=True)  # finished: nothing to resume


if __name__ == "__main__":
    run_stage(main, "prepared", "checkpoints", "figures", doc=__doc__,
              names={"dataset": "a dataset of params.yaml datasets", "model": "a model of params.yaml models"},
              options={"pretrained": "pretrained backbones (pretrain stage), for the transfer cells"},
              out="the cell's model and its test predictions",
              metrics="folder: metrics JSON, classification report, curves, confusion CSVs")  # fmt: skip
