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
    """Where the objects dataset lives (a folder in the objects format), how many seeds every
    training of the chain runs with, and which cures of the shortcut are compared."""

    root: str = "data/raw/objects"
    seeds: int = field(default=3, metadata=AT_LEAST_ONE)  # seeds `seed`, `seed` + 1, ...
    strategies: tuple[str, ...] = ("none", "report", "segment", "mixed_rand", "oracle")

    def seed_list(self, first: int) -> list[int]:
        return [first + i for i in range(self.seeds)]


@dataclass(frozen=True)
class SegmentParams:
    """GrabCut foreground masks of every crop (the `segment` stage)."""

    iterations: int = field(default=3, metadata=AT_LEAST_ONE)
    max_side: int = field(default=96, metadata=_check(lambda v: v >= 16, ">= 16"))  # px GrabCut works at
    margin: float = field(default=0.25, metadata=UNIT)  # context around the box, fraction of its side


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
    # Without ground-truth masks: the threshold used. With them: the candidates are scored by
    # mask IoU on the shortcut class's validation crops and the best one is used.
    threshold: float = field(default=0.2, metadata=UNIT)
    candidates: tuple[float, ...] = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
    batch_size: int = field(default=64, metadata=AT_LEAST_ONE)


# ---------------------------------------------------------------------------------------------
# The CIFAR-10 / ImageNet10 study: one DVC matrix stage over study.datasets x study.models.

DATASET_SOURCES = {
    "cifar10": ("synthetic", "torchvision"),
    "imagenet10": ("synthetic", "folder", "imagenette"),
}
OPTIMIZERS = ("adam", "sgd")
WEIGHTS = ("imagenet", "none")


@dataclass(frozen=True)
class DatasetParams:
    """One dataset of the study; `source` picks where its images come from."""

    # cifar10: synthetic | torchvision; imagenet10: synthetic | folder | imagenette
    source: str = "synthetic"
    root: str = ""  # folder of the real dataset (torchvision / folder / imagenette sources)
    download: bool = False  # torchvision / imagenette: download into `root` when missing (needs internet)
    image_size: int = field(default=32, metadata=_check(lambda v: v >= 16, ">= 16"))  # px, square
    val_fraction: float = field(default=0.1, metadata=FRACTION)  # of train, where the source has no val split
    limit_per_class: int = field(default=0, metadata=NON_NEGATIVE)  # real sources: 0 = all images
    train_per_class: int = field(default=100, metadata=AT_LEAST_ONE)  # synthetic source only
    test_per_class: int = field(default=20, metadata=AT_LEAST_ONE)  # synthetic source only


@dataclass(frozen=True)
class DatasetsParams:
    cifar10: DatasetParams = DatasetParams(root="data/raw/cifar10", image_size=32)
    imagenet10: DatasetParams = DatasetParams(root="data/raw/imagenet10", image_size=64)


@dataclass(frozen=True)
class ModelParams:
    """How one model family is built and trained (the keys a family does not use are ignored;
    the comments say which)."""

    optimizer: str = "adam"  # adam | sgd
    lr: float = field(default=1e-3, metadata=POSITIVE)
    momentum: float = field(default=0.9, metadata=_check(lambda v: 0 <= v < 1, "in [0, 1)"))  # sgd only
    weight_decay: float = field(default=0.0, metadata=NON_NEGATIVE)  # L2 penalty on all weights
    batch_size: int = field(default=64, metadata=AT_LEAST_ONE)
    epochs: int = field(default=3, metadata=AT_LEAST_ONE)
    patience: int = field(default=0, metadata=NON_NEGATIVE)  # early stopping on val loss; 0 = off
    shuffle: bool = True
    dropout: float = field(default=0.2, metadata=_check(lambda v: 0 <= v < 1, "in [0, 1)"))
    augment: bool = True  # apply the `augment` section when training
    # Inputs are resized to input_size x input_size; 0 keeps the dataset's image size.
    input_size: int = field(default=0, metadata=NON_NEGATIVE)
    width: int = field(default=64, metadata=AT_LEAST_ONE)  # resnet: channels of the first stage
    weights: str = "none"  # mobilenet_v3 / inception_v3: imagenet | none
    allow_random_init: bool = False  # imagenet weights unavailable: train from random weights instead of failing
    freeze_backbone: bool = True  # mobilenet_v3 / inception_v3: train the new head only
    head_hidden: int = field(default=256, metadata=AT_LEAST_ONE)  # transfer head: Linear -> ReLU -> Dropout -> Linear
    single_batch: bool = False  # sanity check: train on one batch only (loss should go to ~0, val loss up)
    retrain_epochs: int = field(default=0, metadata=NON_NEGATIVE)  # > 0: final model retrained on train+val


@dataclass(frozen=True)
class ModelsParams:
    """Per model family; the defaults are the reference reports' settings."""

    simple_cnn: ModelParams = ModelParams(optimizer="adam", lr=1e-3, batch_size=256, epochs=100, dropout=0.2)
    mish_cnn: ModelParams = ModelParams(
        optimizer="adam", lr=1e-3, batch_size=128, epochs=100, patience=10, weight_decay=2e-3, dropout=0.2
    )
    imagenet10_cnn: ModelParams = ModelParams(
        optimizer="adam", lr=1e-3, batch_size=64, epochs=30, dropout=0.3, input_size=128
    )
    resnet: ModelParams = ModelParams(
        optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-3, batch_size=64, epochs=30, width=64
    )
    mobilenet_v3: ModelParams = ModelParams(
        optimizer="adam", lr=1e-3, batch_size=64, epochs=15, dropout=0.3, input_size=224, weights="imagenet"
    )
    inception_v3: ModelParams = ModelParams(
        optimizer="adam",
        lr=1e-3,
        batch_size=256,
        epochs=4,
        dropout=0.3,
        input_size=299,
        weights="imagenet",
        head_hidden=512,
    )


@dataclass(frozen=True)
class Rotate90:
    p: float = field(default=0.0, metadata=UNIT)  # rotate by a random multiple of 90 degrees


@dataclass(frozen=True)
class ResizedCrop:
    p: float = field(default=0.0, metadata=UNIT)
    scale: tuple[float, float] = (0.5, 1.0)  # area fraction of the crop (min, max)


@dataclass(frozen=True)
class Translate:
    p: float = field(default=0.0, metadata=UNIT)
    max: tuple[float, float] = (0.1, 0.4)  # max shift as a fraction of width, height


@dataclass(frozen=True)
class HFlip:
    p: float = field(default=0.0, metadata=UNIT)


@dataclass(frozen=True)
class RotateShift:
    p: float = field(default=0.0, metadata=UNIT)
    degrees: float = field(default=15.0, metadata=NON_NEGATIVE)  # rotation in [-degrees, degrees]
    shift: float = field(default=0.1, metadata=UNIT)  # max shift as a fraction of the side


@dataclass(frozen=True)
class Cutout:
    p: float = field(default=0.0, metadata=UNIT)
    scale: tuple[float, float] = (0.02, 0.2)  # erased area fraction (min, max)


@dataclass(frozen=True)
class Mix:
    p: float = field(default=0.0, metadata=UNIT)  # fraction of batches mixed
    alpha: float = field(default=1.0, metadata=POSITIVE)  # Beta(alpha, alpha) mixing ratio


@dataclass(frozen=True)
class AugmentParams:
    """Training augmentation, each step on with probability p (0 = off), in this order."""

    rotate90: Rotate90 = Rotate90()
    resized_crop: ResizedCrop = ResizedCrop()
    translate: Translate = Translate()
    hflip: HFlip = HFlip()
    rotate_shift: RotateShift = RotateShift()
    cutout: Cutout = Cutout()
    cutmix: Mix = Mix()
    mixup: Mix = Mix(alpha=0.2)


@dataclass(frozen=True)
class StudyParams:
    """Which datasets x models the `study` matrix stage runs."""

    datasets: tuple[str, ...] = ("cifar10", "imagenet10")
    models: tuple[str, ...] = ("simple_cnn", "mish_cnn", "imagenet10_cnn", "resnet", "mobilenet_v3", "inception_v3")


@dataclass(frozen=True)
class ClassImageParams:
    """Class images: Adam on a Fourier-space image, maximising one class logit."""

    steps: int = field(default=256, metadata=POSITIVE)
    lr: float = field(default=0.05, metadata=POSITIVE)
    decay: float = 1.0  # spectrum scaled by 1/frequency^decay: higher = smoother images
    scale: float = 0.1  # random rescale 1 +- scale every step
    degrees: float = 5.0  # random rotation +- degrees every step


@dataclass(frozen=True)
class VisualizeParams:
    """What the visualize stage draws from which study cell (`<dataset>-<model>`, in the matrix)."""

    features_cell: str = "imagenet10-imagenet10_cnn"  # filters and feature maps
    deconv_cell: str = "cifar10-resnet"  # deconvnet reconstructions
    class_images_cell: str = "cifar10-simple_cnn"  # class images
    augment_dataset: str = "cifar10"  # the fixed batch of the augmentation examples
    images: int = field(default=3, metadata=POSITIVE)  # input images (of different classes) per figure
    filters: int = field(default=4, metadata=POSITIVE)  # filters shown per layer
    gradcam_examples: int = field(default=6, metadata=POSITIVE)  # crops per Grad-CAM figure
    class_images: ClassImageParams = ClassImageParams()


@dataclass(frozen=True)
class Params:
    seed: int = 0
    lr: float = field(default=0.01, metadata=POSITIVE)
    # deterministic GPU kernels (slower); CPU runs are deterministic either way
    deterministic: bool = False
    # what runs the training stages (train_classifier, study): `python`, or `torchrun ... --nproc_per_node N`
    launcher: str = "python"
    generate: GenerateParams = GenerateParams()
    objects: ObjectsParams = ObjectsParams()
    crop: CropParams = CropParams()
    segment: SegmentParams = SegmentParams()
    backgrounds: BackgroundsParams = BackgroundsParams()
    background_classifier: TrainParams = TrainParams()
    # `lr` of the 8-class classifier is the top-level `lr` (so `dvc exp run -S lr=0.01` works);
    # a `lr` key inside this section is rejected to keep one source of truth.
    classifier: TrainParams = TrainParams(batch_size=32, epochs=5, hidden=1012)
    gradcam: GradcamParams = GradcamParams()
    study: StudyParams = StudyParams()
    datasets: DatasetsParams = DatasetsParams()
    models: ModelsParams = ModelsParams()
    augment: AugmentParams = AugmentParams()
    visualize: VisualizeParams = VisualizeParams()

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
    if origin is tuple and typing.get_args(tp)[-1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"params key '{key}' must be a list, got {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
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


def _one_of(key: str, value: str, valid) -> None:
    if value not in valid:
        raise ParamsError(f"params key '{key}': unknown name {value!r}; valid names: {', '.join(valid)}")


def _check_study(p: Params) -> None:
    datasets = [f.name for f in dataclasses.fields(DatasetsParams)]
    models = [f.name for f in dataclasses.fields(ModelsParams)]
    for i, name in enumerate(p.study.datasets):
        _one_of(f"study.datasets[{i}]", name, datasets)
    for i, name in enumerate(p.study.models):
        _one_of(f"study.models[{i}]", name, models)
    for key, values in (("study.datasets", p.study.datasets), ("study.models", p.study.models)):
        if not values:
            raise ParamsError(f"params key '{key}' must list at least one name")
        if len(set(values)) != len(values):
            raise ParamsError(f"params key '{key}' lists a name twice: {list(values)}")
    for name in datasets:
        _one_of(f"datasets.{name}.source", getattr(p.datasets, name).source, DATASET_SOURCES[name])
    for name in models:
        m = getattr(p.models, name)
        _one_of(f"models.{name}.optimizer", m.optimizer, OPTIMIZERS)
        _one_of(f"models.{name}.weights", m.weights, WEIGHTS)
    if p.augment.cutmix.p + p.augment.mixup.p > 1:
        raise ParamsError(
            "params keys 'augment.cutmix.p' + 'augment.mixup.p' must be <= 1 (a batch is mixed at most once)"
        )
    for name in ("resized_crop", "cutout"):
        low, high = getattr(p.augment, name).scale
        if not 0 < low <= high <= 1:
            raise ParamsError(f"params key 'augment.{name}.scale' must be 0 < min <= max <= 1, got {[low, high]}")


def _check_objects(p: Params) -> None:
    from cnnlab.data.strategies import STRATEGIES

    if not p.objects.strategies:
        raise ParamsError("params key 'objects.strategies' must list at least one strategy")
    for i, name in enumerate(p.objects.strategies):
        _one_of(f"objects.strategies[{i}]", name, STRATEGIES)
    if len(set(p.objects.strategies)) != len(p.objects.strategies):
        raise ParamsError(f"params key 'objects.strategies' lists a name twice: {list(p.objects.strategies)}")
    for i, t in enumerate(p.gradcam.candidates):
        if not 0 <= t <= 1:
            raise ParamsError(f"params key 'gradcam.candidates[{i}]' must be between 0 and 1, got {t!r}")


def _check_visualize(p: Params) -> None:
    cells = [f"{d}-{m}" for d in p.study.datasets for m in p.study.models]
    for key in ("features_cell", "deconv_cell", "class_images_cell"):
        _one_of(f"visualize.{key}", getattr(p.visualize, key), cells)
    _one_of("visualize.augment_dataset", p.visualize.augment_dataset, p.study.datasets)


def parse_params(data: dict | None) -> Params:
    """Validate a params mapping (as read from params.yaml) and return :class:`Params`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError("params.yaml must hold a mapping of keys at the top level")
    params = _build(Params, data)
    if params.launcher.split()[:1] not in (["python"], ["torchrun"]):
        raise ParamsError(
            f"launcher: {params.launcher!r} must start with `python` or `torchrun` "
            "(e.g. `torchrun --standalone --nproc_per_node 2`)"
        )
    _check_objects(params)
    _check_study(params)
    _check_visualize(params)
    return params


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
