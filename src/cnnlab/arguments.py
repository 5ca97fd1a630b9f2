"""The help of the stage scripts' arguments that several stages share (`--crops`, `--figures`,
...), so `python stages/<stage>.py --help` says what each path holds. Wording only, like
cnnlab.errors: no stage's dependency in dvc.yaml, so rewording it reruns nothing."""

SHARED = {
    "root": "the dataset folder (objects format: images/, boxes.csv, optional masks/ and paired/)",
    "crops": "crops of every split, crop.size px (crop stage)",
    "context": "the crops with crop.context of the photograph around each box; masks: inside the photograph "
               "(crop stage)",
    "splits": "each seed's train/val split of the training crops (crop stage)",
    "segments": "GrabCut masks of every crop (segment stage)",
    "backgrounds": "background patches, crop.size px (backgrounds stage)",
    "shortcut": "the shortcut class and the contrast class, or none (find_shortcut stage)",
    "masked": "Grad-CAM-masked crops of the shortcut class, per seed (gradcam_mask stage)",
    "learned": "learned masks of every crop, per seed (masker stage)",
    "prepared": "a prepared dataset (prepare stage)",
    "checkpoints": "per-epoch checkpoints: scratch, resumed after an interruption, removed when a fit finishes",
    "metrics": "the stage's metrics (JSON: mean, sd and per-seed values where there are seeds)",
    "figures": "folder of the stage's figures (PNG)",
}
