"""Stage generate: write the built-in synthetic objects dataset (objects format, with masks)."""

from cnnlab.warm import handoff

handoff()  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.data.synthetic import generate_objects
from cnnlab.stage import run_stage
from cnnlab.tracking import stage_run


def main(p, args):
    with stage_run("generate", {"seed": p.seed, **p.generate.flat("generate.")}, data_source="synthetic"):
        generate_objects(args.out, seed=p.seed, **p.generate.model_dump())


if __name__ == "__main__":
    run_stage(main, "out", doc=__doc__)
