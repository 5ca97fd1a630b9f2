"""The objects chain as library steps, each run once per seed and returning a result object that
owns its seeds, per-seed summaries, curves and outputs: the stage scripts of the chain read their
inputs, call one step and write what it returns.

- `cnnlab.chain.seeds`: the per-seed loop (`for_each_seed`) and its result (`PerSeed`);
- `cnnlab.chain.maskers`: `train_maskers` (masker stage);
- `cnnlab.chain.background`: `train_background_classifiers` (background_classifier stage);
- `cnnlab.chain.shortcut`: `mask_shortcut` (gradcam_mask stage);
- `cnnlab.chain.training`: `train_strategies` (train_classifier stage);
- `cnnlab.chain.evaluation`: `evaluate_strategies` (evaluate stage).

Every step that needs a validation split reads the one the crop stage wrote (`splits.csv`,
cnnlab.data.split.read_split)."""
