"""The objects chain, one module per stage, named after it (dvc.yaml; tests/unit/test_stage_modules.py
holds the mapping): `generate`, `crop`, `backgrounds`, `find_shortcut`, `segment`, `masker`,
`background_classifier`, `gradcam_mask`, `train_classifier`, `evaluate`. The steps that train
or score run once per seed (`seeds`: the per-seed loop `for_each_seed` and its result `PerSeed`)
and return a result object that owns its seeds, per-seed summaries, curves and outputs; the
stage scripts read their inputs, call one step and write what it returns. `decision`: the
shortcut and contrast classes find_shortcut decides, which later stages read.

Every step that needs a validation split reads the one the crop stage wrote (`splits.csv`,
cnnlab.data.split.read_split)."""
