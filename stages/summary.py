"""Stage summary: the experiment's headline metrics, on the DVC experiment's parent MLflow run and
in metrics/summary/<group>/<name>.json (cnnlab.report.summary).

The last output lists the metric names that went to MLflow (the same for every run of the same
params, so dvc.lock does not change with the run's id). It is a DVC output never taken from the
run cache (dvc.yaml), so this stage runs wherever it is missing (a fresh clone that did not `dvc
pull`) and whenever params.yaml changed, even when every other stage was skipped or restored."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import json

from cnnlab.io import atomic_dir, write_json, write_text
from cnnlab.report.summary import data_sources, decision_tags, headline
from cnnlab.stage import run_stage
from cnnlab.tracking import EXPERIMENT, flat_metrics, log_experiment_metrics


def main(p, args):
    evaluation = json.loads(args.evaluation.read_text())
    study = {cell: json.loads((args.study / cell / "metrics.json").read_text()) for cell in p.cells()}
    summary = headline(evaluation, study)
    tags = {f"cnnlab.data_source.{k}": v for k, v in data_sources(evaluation, study).items()}
    row = log_experiment_metrics(summary, tags | decision_tags(json.loads(args.shortcut.read_text())))
    print(f"headline metrics on MLflow run {row['run_id']} ({row['experiment']}, the DVC experiment's parent)")
    with atomic_dir(args.out) as tmp:
        for group, rows in summary.items():
            for name, numbers in rows.items():
                write_json(tmp / group / f"{name}.json", numbers)
    names = "".join(f"{name}\n" for name in flat_metrics(summary))
    write_text(args.logged, f"# logged to the DVC experiment's parent run (MLflow experiment {EXPERIMENT})\n{names}")


if __name__ == "__main__":
    run_stage(main, doc=__doc__, evaluation="the evaluate stage's metrics JSON",
              study="folder of the study cells' metrics (one folder per cell)",
              shortcut="the find_shortcut stage's metrics JSON (the decision: tags shortcut/* of the parent run)",
              out="folder of the headline metrics, one JSON per group and name",
              logged="text file: the metrics logged to the DVC experiment's parent MLflow run")  # fmt: skip
