"""Stage generate: write the built-in synthetic objects dataset (objects format, with masks)."""

from cnnlab.config import to_flat_dict
from cnnlab.data.synthetic import generate_objects
from cnnlab.stage import run_stage
from cnnlab.tracking import stage_run


def main(p, args):
    with stage_run("generate", {"seed": p.seed, **to_flat_dict(p.generate, "generate.")}, data_source="synthetic"):
        g = p.generate
        generate_objects(
            args.out,
            seed=p.seed,
            classes=g.classes,
            train_per_class=g.train_per_class,
            test_per_class=g.test_per_class,
            image_size=g.image_size,
            object_scale=g.object_scale,
            shared_backgrounds=g.shared_backgrounds,
        )


if __name__ == "__main__":
    run_stage(main, "out", doc=__doc__)
