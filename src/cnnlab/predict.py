"""Classify new images with a trained model (`cnnlab predict`).

The model is a checkpoint the pipeline wrote (``data/models/classifier/<strategy>/seed<k>.pt``,
``data/study/<dataset>-<model>/model.pt``) or a registered MLflow model
(``models:/cnnlab-objects-segment/1``). Either carries its `usage`: kind (objects or study),
classes, input size and, for the objects chain, the cure strategy. The images get the
preprocessing the model was trained with:

- study models: shorter side resized to the input size, centre-cropped (as ``prepare`` does);
- objects models: each image cut to its box from a boxes CSV (columns ``path,x,y,w,h``, as in
  the objects format's ``boxes.csv``; without one, the whole image) and resized to the crop
  size; a ``segment`` model's crops are masked by GrabCut from the box at test time, as in
  training, so it needs the boxes. An ``oracle`` model needs ground-truth masks: refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cnnlab.data.objects import IMAGE_SUFFIXES, load_rgb
from cnnlab.errors import CnnlabError, DatasetError
from cnnlab.tensors import predict

CHECKPOINT_HINT = (
    "give a checkpoint the pipeline wrote (data/models/classifier/<strategy>/seed<k>.pt, "
    "data/study/<dataset>-<model>/model.pt) or a registered model (models:/<name>/<version>)"
)


@dataclass
class Predictor:
    model: torch.nn.Module
    usage: dict  # kind, classes, input_size, strategy (objects), segment (GrabCut settings)


def load_predictor(spec: str, device: torch.device) -> Predictor:
    """The model at `spec` (a path or an MLflow model URI) and its usage.

    Raises:
        CnnlabError: the model does not exist or does not say how to use it.
    """
    if spec.startswith(("models:/", "runs:/")):
        from cnnlab.tracking import load_logged_model

        model, usage = load_logged_model(spec)
        model = model.to(device)
    else:
        path = Path(spec)
        if not path.is_file():
            raise CnnlabError(f"{spec}: no such model file; {CHECKPOINT_HINT}")
        from cnnlab.train.checkpoint import load_model

        model, state = load_model(path, device)
        usage = state.get("usage")
    if not usage:
        raise CnnlabError(f"{spec}: this model does not say how to prepare images for it (no usage); {CHECKPOINT_HINT}")
    if usage.get("strategy") == "oracle":
        raise CnnlabError(f"{spec}: an oracle model masks test crops with ground-truth masks, which new images do not "
                          "have; use another strategy's model (e.g. segment)")  # fmt: skip
    return Predictor(model, usage)


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


def read_boxes(path: Path) -> dict[str, tuple[int, int, int, int]]:
    """path -> (x, y, w, h) from a CSV with columns path,x,y,w,h (others ignored)."""
    from cnnlab.data.objects import read_csv

    if not Path(path).is_file():
        raise DatasetError(f"{path}: no such boxes CSV (columns path,x,y,w,h)")
    frame = read_csv(path, ["path", "x", "y", "w", "h"])
    boxes = {}
    for i, row in enumerate(frame.itertuples(index=False)):
        try:
            box = tuple(int(v) for v in (row.x, row.y, row.w, row.h))
        except ValueError:
            raise DatasetError(f"{path} line {i + 2}: x, y, w, h must be whole numbers") from None
        boxes[row.path] = box
    return boxes


def _box_of(path: Path, boxes: dict, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The image's box: the row whose path is the image's path as given, ends it, or has its file
    name (when only one row does)."""
    height, width = shape
    found = [box for key, box in boxes.items() if path.as_posix() == key or path.as_posix().endswith("/" + key)]
    if not found:
        found = [box for key, box in boxes.items() if Path(key).name == path.name]
        if len(found) > 1:
            raise DatasetError(f"{path}: {len(found)} rows of the boxes CSV have its file name; give its path there")
    if not found:
        raise DatasetError(f"{path}: no row in the boxes CSV (matched by path or file name)")
    x, y, w, h = found[0]
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise DatasetError(f"{path}: box {x},{y},{w},{h} lies outside the {width}x{height} image")
    return x, y, w, h


def prepare(files: list[Path], usage: dict, boxes: dict | None) -> np.ndarray:
    """(N, 3, S, S) uint8: the images as the model's training prepared them."""
    size = usage["input_size"]
    if usage["kind"] == "study":
        from cnnlab.data.sources import decode_square

        return decode_square(files, size, "decode")
    from cnnlab.data.crops import crop_mask, crop_resize

    segment = usage.get("strategy") == "segment"
    if segment and boxes is None:
        raise CnnlabError("a segment model masks each crop by GrabCut from the object's box: give --boxes (a CSV of "
                          "path,x,y,w,h)")  # fmt: skip
    out = np.empty((len(files), 3, size, size), np.uint8)
    for i, path in enumerate(tqdm(files, desc="crop", unit="img", leave=False)):
        image = load_rgb(path)
        box = _box_of(path, boxes, image.shape[:2]) if boxes is not None else (0, 0, image.shape[1], image.shape[0])
        out[i] = crop_resize(image, box, size)
        if segment:
            from cnnlab.data.segment import grabcut_mask

            mask = crop_mask(grabcut_mask(image, box, **usage["segment"]), box, size)
            out[i] *= mask[None].astype(np.uint8)
    return out


def predict_files(predictor: Predictor, files: list[Path], boxes: dict | None, device: torch.device) -> pd.DataFrame:
    """One row per image: path, predicted label, its probability, and every class's probability."""
    images = torch.from_numpy(prepare(files, predictor.usage, boxes))
    classes = predictor.usage["classes"]
    chunks = range(0, max(len(images), 1), 64)
    logits = torch.cat([predict(predictor.model, images[i : i + 64], device)
                        for i in tqdm(chunks, desc="predict", unit="batch", leave=False)])  # fmt: skip
    probs = torch.softmax(logits, 1).numpy()
    frame = pd.DataFrame({"path": [p.as_posix() for p in files], "label": [classes[k] for k in probs.argmax(1)],
                          "probability": probs.max(1)})  # fmt: skip
    for k, name in enumerate(classes):
        frame[f"p_{name}"] = probs[:, k]
    return frame
