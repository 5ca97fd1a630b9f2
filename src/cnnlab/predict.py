"""Classify new images with a trained model (`cnnlab predict`).

The model is a checkpoint the pipeline wrote (``data/models/classifier/<strategy>/seed<k>.pt``,
``data/study/<dataset>-<model>/model.pt``) or a registered MLflow model
(``models:/cnnlab-objects-segment@champion``, or one version: ``models:/cnnlab-objects-segment/1``).
Either carries its `usage`: kind (objects or study), classes, input size and, for the objects
chain, the cure strategy. The images get the
preprocessing the model was trained with:

- study models: shorter side resized to the input size, centre-cropped (as ``prepare`` does);
- objects models: each image cut to its box from a boxes CSV (columns ``path,x,y,w,h``, as in
  the objects format's ``boxes.csv``; without one, the whole image) and resized to the crop
  size; a ``segment`` model's crops are masked by GrabCut from the box at test time, as in
  training, and a ``segment_learned`` model's by the learned masker it was trained with (carried
  in its checkpoint and its MLflow model), so both need the boxes. An ``oracle`` model needs
  ground-truth masks: refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cnnlab.cures import CURE, CURES
from cnnlab.data.objects import IMAGE_SUFFIXES, load_rgb
from cnnlab.errors import CnnlabError, DatasetError
from cnnlab.tensors import predict
from cnnlab.usage import ModelUsage

CHECKPOINT_HINT = (
    "give a checkpoint the pipeline wrote (data/models/classifier/<strategy>/seed<k>.pt, "
    "data/study/<dataset>-<model>/model.pt) or a registered model (models:/<name>@champion, models:/<name>/<version>)"
)


@dataclass
class Predictor:
    model: torch.nn.Module
    usage: ModelUsage  # how its images are prepared (kind, classes, input size, cure, masking settings)
    masker: torch.nn.Module | None = None  # a segment_learned model's foreground masker


def load_predictor(spec: str, device: torch.device) -> Predictor:
    """The model at `spec` (a path or an MLflow model URI) and its usage.

    Raises:
        CnnlabError: the model does not exist or does not say how to use it.
    """
    if spec.startswith(("models:/", "runs:/")):
        from cnnlab.tracking import load_logged_model

        model, usage, parts = load_logged_model(spec)
        model, masker = model.to(device), parts.get("masker")
    else:
        path = Path(spec)
        if not path.is_file():
            raise CnnlabError(f"{spec}: no such model file; {CHECKPOINT_HINT}")
        model, state = load_checkpoint(path, device)
        usage, masker = state.get("usage"), masker_of(state, device)
    if not usage:
        raise CnnlabError(f"{spec}: this model does not say how to prepare images for it (no usage); {CHECKPOINT_HINT}")
    usage = ModelUsage.from_dict(usage, spec)
    if usage.kind == "masker":
        raise CnnlabError(f"{spec}: a masker gives masks, not classes; serve it as an MLflow model (models:/"
                          "cnnlab-objects-masker@champion) or predict with a segment_learned model")  # fmt: skip
    cure = CURE.get(usage.strategy)
    if cure is not None and cure.test_masks and cure.masks == "truth":
        raise CnnlabError(f"{spec}: an oracle model masks test crops with ground-truth masks, which new images do not "
                          "have; use another strategy's model (e.g. segment)")  # fmt: skip
    if usage.strategy in LEARNED_MASKS and masker is None:
        raise CnnlabError(f"{spec}: {NO_MASKER}")
    return Predictor(model, usage, masker)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Any model checkpoint cnnlab writes (an objects classifier, a masker, a study model; the
    file a logged MLflow model holds too, cnnlab.serving), rebuilt by its `arch`: (the model in
    eval mode, the whole state)."""
    from cnnlab.train.checkpoint import load_model, read_checkpoint

    state = read_checkpoint(path, device)
    if state.get("arch", {}).get("family") not in (None, "mask_net"):
        from cnnlab.train.cell import load_study_model as load_model  # the study's model zoo
    return load_model(path, device)


def masker_of(state: dict, device: torch.device | str = "cpu") -> torch.nn.Module | None:
    """The foreground masker a segment_learned checkpoint carries (None if it has none)."""
    if "masker" not in state:
        return None
    from cnnlab.models.mask_net import MaskNet

    masker = MaskNet(state["masker"]["arch"]["width"])
    masker.load_state_dict(state["masker"]["model"])
    return masker.to(device).eval()


def image_files(inputs: list[str]) -> list[Path]:
    """The image files given, a folder standing for the images in it (sorted, not recursive)."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DatasetError(f"{path}: no images (.png, .jpg, .jpeg) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DatasetError(f"{path}: no such image file or folder")
    return files


Box = tuple[int, int, int, int]


class Boxes(dict):
    """path -> (x, y, w, h), read from a boxes CSV, remembering each row's line for errors."""

    def __init__(self, source: Path):
        super().__init__()
        self.source = source
        self.lines: dict[str, int] = {}

    def where(self, key: str) -> str:
        return f"{self.source} line {self.lines[key]}"


def read_boxes(path: Path) -> Boxes:
    """path -> (x, y, w, h) from a CSV with columns path,x,y,w,h (others ignored); a box must have
    w, h > 0 and x, y >= 0 (whether it fits its image is checked when the image is read)."""
    from cnnlab.data.objects import read_csv

    if not Path(path).is_file():
        raise DatasetError(f"{path}: no such boxes CSV (columns path,x,y,w,h)")
    frame = read_csv(path, ["path", "x", "y", "w", "h"])
    boxes = Boxes(Path(path))
    for i, row in enumerate(frame.itertuples(index=False)):
        try:
            x, y, w, h = (int(v) for v in (row.x, row.y, row.w, row.h))
        except ValueError:
            raise DatasetError(f"{path} line {i + 2}: x, y, w, h must be whole numbers") from None
        if w <= 0 or h <= 0 or x < 0 or y < 0:
            raise DatasetError(f"{path} line {i + 2} ({row.path}): box {x},{y},{w},{h} must have w, h > 0 and "
                               "x, y >= 0 (x,y is the top-left pixel)")  # fmt: skip
        boxes[row.path] = (x, y, w, h)
        boxes.lines[row.path] = i + 2
    return boxes


def _box_of(path: Path, boxes: dict, shape: tuple[int, int]) -> Box:
    """The image's box: the row whose path is the image's path as given, ends it, or has its file
    name (when only one row does)."""
    found = [key for key in boxes if path.as_posix() == key or path.as_posix().endswith("/" + key)]
    if not found:
        found = [key for key in boxes if Path(key).name == path.name]
        if len(found) > 1:
            raise DatasetError(f"{path}: {len(found)} rows of the boxes CSV have its file name; give its path there")
    if not found:
        raise DatasetError(f"{path}: no row in the boxes CSV (matched by path or file name)")
    where = f"{path} ({boxes.where(found[0])})" if isinstance(boxes, Boxes) else str(path)
    return check_box(boxes[found[0]], shape, where)


def check_box(box: Box, shape: tuple[int, int], where: str) -> Box:
    """The box (x, y, w, h) if it lies inside an image of `shape` (H, W), else DatasetError naming `where`."""
    height, width = shape
    x, y, w, h = box
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise DatasetError(f"{where}: box {x},{y},{w},{h} lies outside the {width}x{height} image")
    return box


NEEDS_BOXES = ("a {} model masks each crop {} from the object's box: give every image's box (`cnnlab predict "
               "--boxes`, a CSV of path,x,y,w,h; the served model: columns x, y, w, h)")  # fmt: skip
# the cures whose test crops are masked from the box, and by what (cnnlab.cures)
MASKED_BY = {c.name: {"segments": "by GrabCut", "learned": "by the learned masker it was trained with"}[c.masks]
             for c in CURES if c.test_masks and c.masks in ("segments", "learned")}  # fmt: skip
LEARNED_MASKS = tuple(c.name for c in CURES if c.test_masks and c.masks == "learned")  # masked by their masker
NO_MASKER = ("a segment_learned model masks test crops with the masker it was trained with, and this one does not "
             "carry it (saved before models carried their masker): run `dvc repro` to save it again, or use the "
             "segment model (GrabCut masks from the box) or a mixed_rand_learned model (no test-time masks)")


OLD_MASKER = ("this model's masker was saved before maskers carried their ring-seed settings (masker.seed_bins, "
              "masker.seed_margin, crop.context): run `dvc repro` to save it again")


def _check_boxes(usage: ModelUsage, boxes) -> None:
    """A segment or segment_learned model needs every image's box (`boxes`: None, or a list with None
    where a row has none, or a path -> box mapping)."""
    strategy = usage.strategy
    if strategy in MASKED_BY and (boxes is None or (isinstance(boxes, list) and None in boxes)):
        raise CnnlabError(NEEDS_BOXES.format(strategy, MASKED_BY[strategy]))


def prepare_image(image: np.ndarray, usage: ModelUsage, box: Box | None,
                  masker: torch.nn.Module | None = None) -> np.ndarray:  # fmt: skip
    """(3, S, S) uint8: a decoded (H, W, 3) uint8 image as the model's training prepared it.
    Objects models: cut to `box` (None: the whole image), resized to the crop size, and masked from
    the box for a segment model (GrabCut, cnnlab.data.segment.grabcut_crop) or a segment_learned
    one (`masker`: :func:`learned_mask`); study models: shorter side
    resized, centre-cropped. `cnnlab predict` and the MLflow model (cnnlab.serving) both come here."""
    size = usage.input_size
    if usage.kind == "study":
        from cnnlab.data.sources import square

        return square(torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1), size).numpy()
    from cnnlab.data.crops import crop_resize

    strategy = usage.strategy
    if strategy in MASKED_BY and box is None:
        raise CnnlabError(NEEDS_BOXES.format(strategy, MASKED_BY[strategy]))
    crop = crop_resize(image, box or (0, 0, image.shape[1], image.shape[0]), size)
    if strategy == "segment":
        from cnnlab.data.segment import grabcut_crop

        return crop * grabcut_crop(image, box, size, **usage.segment)[0][None].astype(np.uint8)
    if strategy in LEARNED_MASKS:  # never unmasked: it was trained and scored on masked crops
        if masker is None:
            raise CnnlabError(NO_MASKER)
        return crop * learned_mask(masker, image, box, crop, usage.masker)[None].astype(np.uint8)
    return crop


def learned_mask(masker: torch.nn.Module, image: np.ndarray, box: Box, crop: np.ndarray, settings: dict) -> np.ndarray:
    """(S, S) bool: the mask the masker stage gives the crop `crop` of `box` in `image`: the learned
    masker's probability refined by the crop's colours, with the same fallbacks
    (cnnlab.train.masker.predict_masks), from the crop's context (crop.context around the box)."""
    from cnnlab.data.crops import context_crop, context_pad
    from cnnlab.train.masker import Masking, predict_masks

    if "seed_bins" not in settings:
        raise CnnlabError(OLD_MASKER)
    size = crop.shape[-1]
    context, valid = context_crop(image, box, size, context_pad(size, settings["context"]))
    where = next(masker.parameters()).device
    return predict_masks(masker, crop[None], context[None], valid[None], Masking.of(settings), where)[0][0]


def prepare_images(images: list[np.ndarray], usage: ModelUsage, boxes: list[Box | None] | None,
                   masker: torch.nn.Module | None = None) -> np.ndarray:  # fmt: skip
    """(N, 3, S, S) uint8: decoded images prepared one by one (:func:`prepare_image`)."""
    _check_boxes(usage, boxes)
    size = usage.input_size
    out = np.empty((len(images), 3, size, size), np.uint8)
    for i, image in enumerate(images):
        out[i] = prepare_image(image, usage, boxes[i] if boxes is not None else None, masker)
    return out


def prepare(files: list[Path], usage: ModelUsage, boxes: dict | None,
            masker: torch.nn.Module | None = None) -> np.ndarray:  # fmt: skip
    """(N, 3, S, S) uint8: the image files as the model's training prepared them (see
    :func:`prepare_image`), each objects image cut to its row of `boxes` (path -> box); decoded
    one at a time, so a folder of large photographs never sits in memory at once."""
    _check_boxes(usage, boxes)
    size = usage.input_size
    out = np.empty((len(files), 3, size, size), np.uint8)
    for i, path in enumerate(tqdm(files, desc="prepare", unit="img", leave=False)):
        image = load_rgb(path)  # DatasetError names an unreadable file
        box = _box_of(path, boxes, image.shape[:2]) if boxes is not None and usage.kind == "objects" else None
        out[i] = prepare_image(image, usage, box, masker)
    return out


def probabilities(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """(N, classes) softmax probabilities of prepared uint8 images (N, 3, S, S)."""
    images = torch.from_numpy(images)
    chunks = range(0, max(len(images), 1), 64)
    logits = torch.cat([predict(model, images[i : i + 64], device)
                        for i in tqdm(chunks, desc="predict", unit="batch", leave=False)])  # fmt: skip
    return torch.softmax(logits, 1).numpy()


def prediction_frame(probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per image: predicted label, its probability, and every class's probability (p_<class>)."""
    frame = pd.DataFrame({"label": [classes[k] for k in probs.argmax(1)], "probability": probs.max(1)})
    for k, name in enumerate(classes):
        frame[f"p_{name}"] = probs[:, k]
    return frame


def predict_files(predictor: Predictor, files: list[Path], boxes: dict | None, device: torch.device) -> pd.DataFrame:
    """One row per image: path, predicted label, its probability, and every class's probability."""
    probs = probabilities(predictor.model, prepare(files, predictor.usage, boxes, predictor.masker), device)
    frame = prediction_frame(probs, predictor.usage.classes)
    frame.insert(0, "path", [p.as_posix() for p in files])
    return frame
