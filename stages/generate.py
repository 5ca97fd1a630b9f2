"""Stage generate: the built-in synthetic objects dataset, one zip: cnnlab.objects.generate."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.objects.generate import write_dataset
from cnnlab.stage import run_stage
from cnnlab.tracking import stage_run


def main(p, args):
    with stage_run("generate", {"seed": p.seed, **p.generate.flat("generate.")}, data_source="synthetic"):
        write_dataset(p.generate, p.seed, args.out)


if __name__ == "__main__":
    run_stage(main, doc=__doc__, out="the generated dataset (a zip in the objects format)")
