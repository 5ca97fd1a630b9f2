"""What every model cnnlab logs to MLflow serves: images in, class names and probabilities out.

Each trained network is logged (cnnlab.tracking) as an MLflow pyfunc model "from code"
(src/cnnlab/serving_model.py, no pickle) holding the network as a torch.export graph
(`network.pt2`) and its usage (kind, classes, input size, strategy) as the model config. Loaded
by `mlflow.pyfunc.load_model`, `mlflow models serve` or `cnnlab predict models:/...`, it
prepares each image exactly as `cnnlab predict` does (the same functions of cnnlab.predict), so
both give the same numbers for the same image and box.

Input, a table (over REST: `{"dataframe_split": {"columns": [...], "data": [...]}}`):

- `image`: the bytes of an image file (PNG, JPEG, ...; greyscale and RGBA are converted to RGB);
  over REST, base64-encoded (MLflow decodes the `binary` column);
- `x`, `y`, `w`, `h` (objects models only; optional): the object's box in pixels, as in the
  objects format's boxes.csv. A row without one is the whole image; a `segment` model needs it
  (it masks the crop by GrabCut from the box, as in training).

Output, one row per image: `label` (the predicted class), `probability` (its softmax
probability) and `p_<class>` for every class.

Serving needs cnnlab installed beside MLflow (this repository's environment:
`mlflow models serve -m models:/<name>/<version> --env-manager local`).
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

BOX = ("x", "y", "w", "h")
MODEL_FILE = Path(__file__).with_name("serving_model.py")  # MLflow's model-from-code file (python_model)


def signature(usage: dict):
    """The model signature: `image` (binary) and, for objects models, the optional box columns in;
    label, probability and every class's probability out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("binary", "image")]
    if usage["kind"] == "objects":
        inputs += [ColSpec("long", name, required=False) for name in BOX]
    outputs = [ColSpec("string", "label"), ColSpec("double", "probability")]
    outputs += [ColSpec("double", f"p_{name}") for name in usage["classes"]]
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


def _boxes(frame: pd.DataFrame, images: list[np.ndarray], usage: dict) -> list | None:
    """Each row's box (None where the row has none), checked against its image."""
    from cnnlab.errors import DatasetError
    from cnnlab.predict import check_box

    if usage["kind"] != "objects":
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
        import torch

        from cnnlab.tensors import frozen

        self.usage = dict(context.model_config)
        self.network = frozen(torch.export.load(context.artifacts["network"]).module())

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import torch

        from cnnlab.errors import DatasetError
        from cnnlab.predict import prediction_frame, prepare_images, probabilities

        frame = pd.DataFrame(model_input).reset_index(drop=True)
        if "image" not in frame.columns:
            raise DatasetError(f"no column image (the image file's bytes); columns given: {', '.join(frame.columns)}")
        images = [_decode(value, row) for row, value in enumerate(frame["image"])]
        prepared = prepare_images(images, self.usage, _boxes(frame, images, self.usage))
        probs = probabilities(self.network, prepared, torch.device("cpu"))
        return prediction_frame(probs, self.usage["classes"])
