"""What every model cnnlab logs to MLflow serves: images in, class names and probabilities out.

Each trained network is logged (cnnlab.tracking) as an MLflow pyfunc model "from code"
(src/cnnlab/serving_model.py, no pickle) holding the network's checkpoint (`model.pt`: its
weights, read back with weights_only, and the arguments that rebuild it; a segment_learned model's
masker inside it) and its usage (kind, classes, input size, strategy) as the model config. Loaded
by `mlflow.pyfunc.load_model`, `mlflow models serve` or `cnnlab predict models:/...`, it
prepares each image exactly as `cnnlab predict` does (the same functions of cnnlab.predict), so
both give the same numbers for the same image and box.

Input, a table (over REST: `{"dataframe_split": {"columns": [...], "data": [...]}}`):

- `image`: the bytes of an image file (PNG, JPEG, ...; greyscale and RGBA are converted to RGB);
  over REST, base64-encoded (MLflow decodes the `binary` column);
- `x`, `y`, `w`, `h` (objects models only; optional): the object's box in pixels, as in the
  objects format's boxes.csv. A row without one is the whole image; a `segment` model needs it
  (it masks the crop by GrabCut from the box, as in training), and so does a `segment_learned`
  model (it masks the crop with the learned masker it was trained with, inside its checkpoint).

Output, one row per image: `label` (the predicted class), `probability` (its softmax
probability) and `p_<class>` for every class.

The learned foreground masker of each seed is logged too (a logged model of the masker stage's
run; a segment_learned model carries its own; model file src/cnnlab/serving_masker.py, :class:`ForegroundMasker`):
`image` and its box `x`, `y`, `w`, `h` in; out, one row per image, `mask` (a PNG of the crop's
mask, crop-size pixels, 255 = object; base64 over REST) and `kept_fraction` (the share of the crop
it keeps).

A logged model carries cnnlab's code (`code/cnnlab`, MLflow's code_paths) and its requirements
pinned (:func:`requirements`), so it is served where cnnlab is not installed:
`mlflow models serve -m models:/<name>@champion --env-manager virtualenv` (or `local` in this
repository's environment).
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow.pyfunc
import numpy as np
import pandas as pd

from cnnlab.tracking.registry import WEIGHTS_TAG
from cnnlab.usage import ModelUsage

if TYPE_CHECKING:
    import torch

BOX = ("x", "y", "w", "h")
MODEL_FILE = Path(__file__).with_name("serving_model.py")  # MLflow's model-from-code file (python_model)
MASKER_FILE = Path(__file__).with_name("serving_masker.py")  # the same for the learned masker
PACKAGE = Path(__file__).parent  # cnnlab's code, which every logged model carries (MLflow's code_paths)
CHECKPOINT_ARTIFACT, CHECKPOINT_FILE = "model", "model.pt"  # a logged model's checkpoint: artifact name, file
# what the served code imports (cnnlab.serving, .predict, .data.segment, .train.masker and the modules
# they import), pinned to this environment's versions in each model's requirements; a test builds an
# environment of exactly these (and what they require) without cnnlab and serves a model there
SERVED_DISTRIBUTIONS = ("torch", "torchvision", "numpy", "pandas", "pillow", "opencv-python-headless", "pydantic",
                        "pyyaml", "tqdm", "scikit-learn")  # fmt: skip


def requirements() -> list[str]:
    """The pip requirements of a logged model: :data:`SERVED_DISTRIBUTIONS` at the installed
    versions (torch's without its local build tag: PyPI's torch of that version)."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in SERVED_DISTRIBUTIONS]


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 (first 16 hex digits) of a model's weights (every state-dict tensor, in order): the
    tag `cnnlab.weights_digest` of its logged model, by which a later stage that loads the same weights
    (evaluate) finds it."""
    import hashlib

    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def log_model(run, model: torch.nn.Module, name: str, *, registered: str | None = None,
              usage: ModelUsage | dict, tags: dict, masker: torch.nn.Module | None = None,
              metrics: dict | None = None) -> None:  # fmt: skip
    """Log a trained model to its stage's MLflow run (every trained model is logged this way: an
    MLflow pyfunc model that takes image files and returns class probabilities, cnnlab.serving; a
    learned masker, usage kind "masker", returns masks), with its `usage` (cnnlab.usage: what
    `cnnlab predict` and the served model need; the MLflow model's config and metadata), `tags`
    (and its weights' digest, :func:`weights_digest`), its own `metrics` linked to it, the
    `masker` it masks its crops with (a segment_learned model's); registered as a new version of
    `registered` if given (else :func:`register_best` picks which of a stage's models is).

    The model's artifact `model` is a checkpoint as the stages write them (cnnlab.train.checkpoint:
    the weights, the `arch` that rebuilds the network, the usage, the masker's weights), which the
    served model rebuilds as `cnnlab predict` rebuilds a checkpoint (cnnlab.predict.load_checkpoint)."""
    import tempfile

    from cnnlab.train.checkpoint import save_checkpoint

    usage = ModelUsage.from_dict(usage, name)
    python_model = MASKER_FILE if usage.kind == "masker" else MODEL_FILE
    tags = {**tags, WEIGHTS_TAG: weights_digest(model)}
    extra = {"masker": {"arch": dict(masker.arch), "model": masker.cpu().state_dict()}} if masker is not None else {}
    with tempfile.TemporaryDirectory(prefix="cnnlab-model-") as folder:
        checkpoint = Path(folder) / CHECKPOINT_FILE
        save_checkpoint(checkpoint, model.cpu(), usage=usage.as_dict(), **extra)
        run.log_model(name.replace("_", "-"), {CHECKPOINT_ARTIFACT: checkpoint}, registered=registered,
                      metadata=usage.as_dict(), tags=tags, python_model=python_model, signature=signature(usage),
                      metrics=metrics, code=PACKAGE, requirements=requirements())  # fmt: skip


def register_best(run, registered: str, candidates: dict[str, tuple[float, dict]]) -> str:
    """Register one of the models `run` logged (name -> (validation accuracy, version tags)): the
    one with the best validation accuracy (the first on a tie), as a new version of `registered`
    with its tags and `val_accuracy`; the registry's `champion` alias then goes to the best
    validation accuracy over all versions (cnnlab.tracking.registry). Returns the name chosen."""
    best = max(candidates, key=lambda n: candidates[n][0])  # max keeps the first of equals
    score, tags = candidates[best]
    run.register(best.replace("_", "-"), registered, {**tags, "val_accuracy": score})
    return best


def signature(usage: ModelUsage):
    """The model signature: `image` (binary) and, for objects models, the optional box columns in;
    label, probability and every class's probability out (a masker: the box required; mask and
    kept_fraction out)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("binary", "image")]
    if usage.kind == "masker":
        outputs = [ColSpec("binary", "mask"), ColSpec("double", "kept_fraction")]
        return ModelSignature(inputs=Schema(inputs + [ColSpec("long", name) for name in BOX]), outputs=Schema(outputs))
    if usage.kind == "objects":
        inputs += [ColSpec("long", name, required=False) for name in BOX]
    outputs = [ColSpec("string", "label"), ColSpec("double", "probability")]
    outputs += [ColSpec("double", f"p_{name}") for name in usage.classes]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _decode(value, row: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from cnnlab.errors import DatasetError

    if isinstance(value, str):  # base64 text, where the caller did not go through MLflow's decoding
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise DatasetError(f"row {row}: column image holds text that is not base64") from None
    if not isinstance(value, (bytes, bytearray)):
        raise DatasetError(f"row {row}: column image must hold an image file's bytes, got {type(value).__name__}")
    try:
        with Image.open(io.BytesIO(value)) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DatasetError(f"row {row}: unreadable or truncated image ({e})") from None


def _boxes(frame: pd.DataFrame, images: list[np.ndarray], usage: ModelUsage) -> list | None:
    """Each row's box (None where the row has none), checked against its image."""
    from cnnlab.errors import DatasetError
    from cnnlab.predict import check_box

    if usage.kind not in ("objects", "masker"):
        return None
    given = [c for c in BOX if c in frame.columns]
    if given and len(given) < 4:
        raise DatasetError(f"a box needs all of columns x, y, w, h; got only {', '.join(given)}")
    if not given:
        return [None] * len(frame)
    boxes = []
    for row, (values, image) in enumerate(zip(frame[list(BOX)].itertuples(index=False), images)):
        if all(pd.isna(v) for v in values):
            boxes.append(None)
            continue
        if any(pd.isna(v) for v in values) or any(float(v) != int(v) for v in values):
            raise DatasetError(f"row {row}: x, y, w, h must all be whole numbers, got {tuple(values)}")
        boxes.append(check_box(tuple(int(v) for v in values), image.shape[:2], f"row {row}"))
    return boxes


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """A cnnlab network with its preprocessing; see the module's docstring for its contract."""

    def load_context(self, context) -> None:
        from cnnlab.predict import load_checkpoint, masker_of

        self.usage = ModelUsage.from_dict(context.model_config, "the served model")
        if CHECKPOINT_ARTIFACT not in context.artifacts:  # logged before the checkpoint: torch.export graphs
            self.network, self.parts = _exported(context.artifacts)
            return
        self.network, state = load_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT], "cpu")
        masker = masker_of(state, "cpu")
        self.parts = {"masker": masker} if masker is not None else {}

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import torch

        from cnnlab.predict import prediction_frame, prepare_images, probabilities

        frame, images = _images(model_input)
        prepared = prepare_images(images, self.usage, _boxes(frame, images, self.usage), self.parts.get("masker"))
        probs = probabilities(self.network, prepared, torch.device("cpu"))
        return prediction_frame(probs, self.usage.classes)


def _exported(artifacts: dict) -> tuple[torch.nn.Module, dict]:
    """The networks of a model logged as torch.export graphs (`network.pt2`, `masker.pt2`): the
    network and its other parts by name."""
    import torch

    from cnnlab.tensors import frozen

    graphs = {name: frozen(torch.export.load(path).module()) for name, path in artifacts.items()}
    return graphs.pop("network"), graphs


def _images(model_input: pd.DataFrame) -> tuple[pd.DataFrame, list[np.ndarray]]:
    from cnnlab.errors import DatasetError

    frame = pd.DataFrame(model_input).reset_index(drop=True)
    if "image" not in frame.columns:
        raise DatasetError(f"no column image (the image file's bytes); columns given: {', '.join(frame.columns)}")
    return frame, [_decode(value, row) for row, value in enumerate(frame["image"])]


class ForegroundMasker(ImageClassifier):
    """A seed's learned foreground masker (cnnlab.train.masker): each image cut to its box, resized
    to the crop size and masked as the pipeline masks its crops; see the module's docstring."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from PIL import Image

        from cnnlab.data.crops import crop_resize
        from cnnlab.errors import DatasetError
        from cnnlab.predict import learned_mask

        frame, images = _images(model_input)
        boxes = _boxes(frame, images, self.usage)
        if None in boxes:
            raise DatasetError(f"row {boxes.index(None)}: the masker needs the object's box (columns x, y, w, h)")
        size = self.usage.input_size
        masks = np.stack([learned_mask(self.network, image, box, crop_resize(image, box, size), self.usage.masker)
                          for image, box in zip(images, boxes)])  # fmt: skip
        pngs = []
        for mask in masks:
            buffer = io.BytesIO()
            Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
            pngs.append(buffer.getvalue())
        return pd.DataFrame({"mask": pngs, "kept_fraction": masks.reshape(len(masks), -1).mean(1).astype(float)})
