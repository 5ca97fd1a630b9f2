"""params.yaml -> frozen dataclasses.

Every key is checked: an unknown (misspelled) key, a value of the wrong type or a value out of
range raises :class:`ParamsError` naming the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    """A params.yaml key is unknown, of the wrong type or out of range."""


# (check, human description) attached to fields through metadata
def _check(fn, text):
    return {"check": fn, "text": text}


POSITIVE = _check(lambda v: v > 0, "> 0")
AT_LEAST_ONE = _check(lambda v: v >= 1, ">= 1")
NON_NEGATIVE = _check(lambda v: v >= 0, ">= 0")
FRACTION = _check(lambda v: 0 < v < 1, "strictly between 0 and 1")
UNIT = _check(lambda v: 0 <= v <= 1, "between 0 and 1")


@dataclass(frozen=True)
class GenerateParams:
    """Built-in synthetic objects dataset (the `generate` stage)."""

    classes: int = field(default=8, metadata=_check(lambda v: 2 <= v <= 8, "between 2 and 8"))
    train_per_class: int = field(default=200, metadata=AT_LEAST_ONE)
    test_per_class: int = field(default=50, metadata=AT_LEAST_ONE)
    image_size: int = field(default=350, metadata=_check(lambda v: v >= 32, ">= 32"))
    # Object side as a fraction of the image side (min, max).
    object_scale: tuple[float, float] = (0.22, 0.4)
    # Fraction of the non-shortcut classes' training images put on another class's background.
    shared_backgrounds: float = field(default=0.4, metadata=UNIT)


@dataclass(frozen=True)
class ObjectsParams:
    """Where the objects dataset lives (a folder in the objects format)."""

    root: str = "data/raw/objects"


@dataclass(frozen=True)
class CropParams:
    size: int = field(default=117, metadata=_check(lambda v: v >= 8, ">= 8"))


@dataclass(frozen=True)
class BackgroundsParams:
    # First: the shortcut class, whose background the test images share and Grad-CAM removes;
    # second: a contrast class for the background classifier.
    classes: tuple[str, str] = ("00", "04")
    patches_per_image: int = field(default=1, metadata=AT_LEAST_ONE)
    max_box_overlap: float = field(default=0.25, metadata=UNIT)


@dataclass(frozen=True)
class TrainParams:
    """Settings shared by both CNN trainings."""

    lr: float = field(default=0.01, metadata=POSITIVE)
    momentum: float = field(default=0.0, metadata=_check(lambda v: 0 <= v < 1, "in [0, 1)"))
    batch_size: int = field(default=8, metadata=AT_LEAST_ONE)
    epochs: int = field(default=2, metadata=AT_LEAST_ONE)
    val_fraction: float = field(default=0.2, metadata=FRACTION)
    hidden: int = field(default=512, metadata=AT_LEAST_ONE)
    # 0 turns early stopping off; otherwise stop after this many epochs without a better val loss
    # and restore the best weights.
    patience: int = field(default=0, metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class GradcamParams:
    threshold: float = field(default=0.2, metadata=UNIT)
    batch_size: int = field(default=64, metadata=AT_LEAST_ONE)


@dataclass(frozen=True)
class Params:
    seed: int = 0
    lr: float = field(default=0.01, metadata=POSITIVE)
    generate: GenerateParams = GenerateParams()
    objects: ObjectsParams = ObjectsParams()
    crop: CropParams = CropParams()
    backgrounds: BackgroundsParams = BackgroundsParams()
    background_classifier: TrainParams = TrainParams()
    # `lr` of the 8-class classifier is the top-level `lr` (so `dvc exp run -S lr=0.01` works);
    # a `lr` key inside this section is rejected to keep one source of truth.
    classifier: TrainParams = TrainParams(batch_size=32, epochs=5, hidden=1012)
    gradcam: GradcamParams = GradcamParams()

    def classifier_train(self) -> TrainParams:
        """The 8-class classifier's settings with the top-level `lr` filled in."""
        return dataclasses.replace(self.classifier, lr=self.lr)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, default: Any = None) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"params key '{key}' must be a mapping of {tp.__name__} settings, got {value!r}")
        return _build(tp, value, key, default)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ParamsError(f"params key '{key}' must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        # YAML reads 00 as the integer 0: class names must be quoted.
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, tp)
    if not ok:
        hint = ' (quote it in params.yaml, e.g. "00")' if tp is str else ""
        raise ParamsError(
            f"params key '{key}' must be of type {_type_name(tp)}, got {value!r} ({type(value).__name__}){hint}"
        )
    return value


def _build(cls, data: dict, prefix: str = "", defaults=None):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"section '{prefix}'" if prefix else "the top level"
        raise ParamsError(
            f"unknown params key(s) {', '.join(repr(f'{prefix}.{k}' if prefix else k) for k in unknown)} "
            f"in {where}; valid keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        value = _coerce(value, hints[name], key, getattr(defaults or cls(), name))
        check = fields[name].metadata.get("check")
        if check is not None and not check(value):
            raise ParamsError(f"params key '{key}' must be {fields[name].metadata['text']}, got {value!r}")
        kwargs[name] = value
    if prefix == "classifier" and "lr" in data:
        raise ParamsError("params key 'classifier.lr' is not used: set the top-level 'lr' instead")
    return dataclasses.replace(defaults or cls(), **kwargs)


def parse_params(data: dict | None) -> Params:
    """Validate a params mapping (as read from params.yaml) and return :class:`Params`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError("params.yaml must hold a mapping of keys at the top level")
    return _build(Params, data)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml.

    Raises:
        ParamsError: unknown key, wrong type or out-of-range value, naming the key.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: params file not found; run from the repository root") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    try:
        return parse_params(data)
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None


def to_flat_dict(obj, prefix: str = "") -> dict[str, Any]:
    """Flatten a params dataclass into {'section.key': value} (for logging)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(to_flat_dict(value, key + "."))
        else:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out
