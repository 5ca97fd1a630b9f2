"""params.yaml -> frozen, validated settings (pydantic).

params.yaml is the only place a setting's value lives: this module declares each key's type and
range and holds no default. A missing key, an unknown (misspelled) key, a value of the wrong type
or out of range raises :class:`ParamsError` naming the key, so nothing is ever filled in behind
DVC's back (`dvc params diff` and `dvc exp show` list every setting a stage uses).
"""

from __future__ import annotations

import copy
import json
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model

from cnnlab.cures import STRATEGIES
from cnnlab.errors import ParamsError
from cnnlab.params.messages import params_messages

# -- value types ----------------------------------------------------------------------------------

Count = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]  # strictly between 0 and 1
Unit = Annotated[float, Field(ge=0, le=1)]  # between 0 and 1
Rate = Annotated[float, Field(ge=0, lt=1)]  # in [0, 1): momentum, dropout
# dataset and model names become folder names and are joined as <dataset>-<model>
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]+$")]
Strategy = Literal[STRATEGIES]  # the names of cnnlab.cures.CURES, in the comparison's order


class Section(BaseModel):
    """A params section: every key required, unknown keys rejected, values never coerced
    (except ints where floats are expected), frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def flat(self, prefix: str = "") -> dict[str, Any]:
        """{'key.sub': value} of every setting, lists as lists (for logging)."""
        return _flatten(self.model_dump(mode="json"), prefix)


# -- the objects chain ----------------------------------------------------------------------------


class Objects(Section):
    root: str  # the dataset folder, in the objects format
    seeds: Count  # every training of the chain runs with seeds seed, seed + 1, ...
    strategies: Annotated[tuple[Strategy, ...], Field(min_length=1)]

    def seed_list(self, first: int) -> list[int]:
        return [first + i for i in range(self.seeds)]


class Generate(Section):
    classes: Annotated[int, Field(ge=2, le=8)]
    train_per_class: Count
    test_per_class: Count
    image_size: Annotated[int, Field(ge=32)]
    object_scale: tuple[Fraction, Fraction]
    shared_backgrounds: Unit


class Crop(Section):
    size: Annotated[int, Field(ge=8)]
    context: Annotated[float, Field(gt=0, le=1)]  # the context crops' margin per side, of the crop's side


class Segment(Section):
    iterations: Count
    max_side: Annotated[int, Field(ge=16)]
    margin: Unit


class Backgrounds(Section):
    # auto: the find_shortcut stage detects the shortcut class (or none) and picks the contrast
    # class; or [shortcut class, contrast class]
    classes: Literal["auto"] | tuple[str, str]
    patches_per_image: Count
    max_box_overlap: Unit


class Training(Section):
    """How a network is trained: the one training config of both chains (cnnlab.train.loop.fit)."""

    optimizer: Literal["adam", "sgd"]
    lr: Positive
    momentum: Rate  # SGD's momentum; Adam's beta1
    weight_decay: Annotated[float, Field(ge=0)]
    batch_size: Count
    epochs: Count
    patience: NonNegative  # early stopping on val loss, best weights restored; 0 = off
    # constant: lr throughout; onecycle: per batch, lr warms up to `lr` over the first 30% of the
    # steps, then anneals to ~0 (torch's OneCycleLR; momentum stays `momentum`)
    schedule: Literal["constant", "onecycle"]
    label_smoothing: Rate  # the training loss's cross-entropy targets: 1 - ls on the class, ls spread evenly


class ObjectsNet(Training):
    """A network of the objects chain (the report's CNNs): its training, hidden width and split."""

    hidden: Count
    val_fraction: Fraction


class Masker(Section):
    """The learned foreground masker (cnnlab.train.masker): a MaskNet per seed, trained on the ring
    seeds of the training crops and on background patches, then on its own refined masks. No
    validation split: it has no labels to validate on that it was not trained to copy."""

    width: Count  # channels of the U-Net's first level (then 2x, 4x)
    seed_bins: Annotated[int, Field(ge=2, le=32)]  # ring seeds: colour histogram bins per channel
    seed_margin: Annotated[float, Field(ge=0)]  # ring seeds: log-likelihood ratio an object pixel must pass (nats)
    rounds: Count  # trainings: the first on GrabCut's masks, each next on the previous one's
    patch_ratio: Positive  # background patches per training crop in its training set (all, at most)
    affinity: Annotated[float, Field(ge=0)]  # weight of the colour-affinity term (0 = off)
    colour_components: NonNegative  # Gaussians per colour model of a crop (0 = no colour refinement)
    colour_prior: Annotated[float, Field(ge=0)]  # weight of the network's log-odds against the colours
    optimizer: Literal["adam", "sgd"]
    lr: Positive
    momentum: Rate
    weight_decay: Annotated[float, Field(ge=0)]
    batch_size: Count
    epochs: Count  # of the first round
    round_epochs: Count  # of each later round (from the last round's weights)
    schedule: Literal["constant", "onecycle"]

    def training(self) -> Training:
        """The loop's settings (no early stopping, no label smoothing)."""
        keys = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "schedule")
        return Training(**{k: getattr(self, k) for k in keys}, patience=0, label_smoothing=0.0)


class Gradcam(Section):
    threshold: Unit
    candidates: Annotated[tuple[Unit, ...], Field(min_length=1)]
    batch_size: Count


# -- the study ------------------------------------------------------------------------------------


class _Dataset(Section):
    image_size: Annotated[int, Field(ge=16)]
    val_fraction: Fraction  # of train, held out where the source has no validation split


class SyntheticDataset(_Dataset):
    source: Literal["synthetic"]
    stream: NonNegative  # datasets with the same seed and stream hold the same images
    train_per_class: Count
    test_per_class: Count


class _RealDataset(_Dataset):
    root: str
    limit_per_class: NonNegative  # 0 = every image


class Cifar10Dataset(_RealDataset):
    source: Literal["cifar10"]
    download: bool


class ImagenetteDataset(_RealDataset):
    source: Literal["imagenette"]
    download: bool


class FolderDataset(_RealDataset):
    source: Literal["folder"]


Dataset = Annotated[
    Union[SyntheticDataset, Cifar10Dataset, ImagenetteDataset, FolderDataset], Field(discriminator="source")
]


class StudyModel(Training):
    """A model of the study: its family's settings and its training."""

    augment: bool  # apply the `augment` section
    single_batch: bool  # sanity check: train on one batch only
    retrain_epochs: NonNegative  # > 0: the final model is retrained on train+val


class SimpleCNNParams(StudyModel):
    family: Literal["simple_cnn"]
    dropout: Rate


class MishCNNParams(StudyModel):
    family: Literal["mish_cnn"]
    dropout: Rate


class ImageNet10CNNParams(StudyModel):
    family: Literal["imagenet10_cnn"]
    dropout: Rate
    input_size: NonNegative  # 0: the dataset's image size


class ResNetParams(StudyModel):
    family: Literal["resnet"]
    width: Count


class TransferParams(StudyModel):
    family: Literal["mobilenet_v3", "inception_v3"]
    dropout: Rate
    input_size: NonNegative
    # imagenet: torchvision's ImageNet weights; pretrained: the backbone the `pretrain` stage trained
    # (transfer.pretrain on transfer.source); none: random
    weights: Literal["imagenet", "pretrained", "none"]
    fallback: Literal["pretrained", "random", "error"]  # weights: imagenet where they cannot be had
    freeze_backbone: bool
    head_hidden: Count


Model = Annotated[
    Union[SimpleCNNParams, MishCNNParams, ImageNet10CNNParams, ResNetParams, TransferParams],
    Field(discriminator="family"),
]


class Study(Section):
    datasets: Annotated[tuple[str, ...], Field(min_length=1)]
    models: Annotated[tuple[str, ...], Field(min_length=1)]


class Transfer(Section):
    """The transfer matrix (study.datasets x transfer.models) and the backbone pretrained for it."""

    source: Name  # a key of datasets, not in study.datasets: what the pretrain stage trains `pretrain` on
    pretrain: Name  # a key of models: a transfer family with weights none
    models: Annotated[tuple[str, ...], Field(min_length=1)]
    train_per_class: NonNegative  # the transfer cells train on the first N images per class (0: all)


class Rotate90(Section):
    p: Unit


class ResizedCrop(Section):
    p: Unit
    scale: tuple[Unit, Unit]


class Translate(Section):
    p: Unit
    max: tuple[Unit, Unit]


class HFlip(Section):
    p: Unit


class RotateShift(Section):
    p: Unit
    degrees: Annotated[float, Field(ge=0)]
    shift: Unit


class Cutout(Section):
    p: Unit
    scale: tuple[Unit, Unit]


class Mix(Section):
    p: Unit
    alpha: Positive


class Augment(Section):
    """Training augmentation, each step on with probability p (0 = off), in this order."""

    rotate90: Rotate90
    resized_crop: ResizedCrop
    translate: Translate
    hflip: HFlip
    rotate_shift: RotateShift
    cutout: Cutout
    cutmix: Mix
    mixup: Mix


class ClassImages(Section):
    steps: Count
    lr: Positive
    decay: float
    scale: Annotated[float, Field(ge=0)]
    degrees: Annotated[float, Field(ge=0)]


class Tracking(Section):
    system_metrics: bool  # CPU, memory (and GPU) usage sampled on the training runs


class Visualize(Section):
    features_cell: str | None
    deconv_cell: str | None
    class_images_cell: str | None
    augment_dataset: str | None
    images: Count
    filters: Count
    class_images: ClassImages


class Params(Section):
    seed: NonNegative
    lr: Positive  # the 8-class classifier's (classifier.lr), top level for `dvc exp run -S lr=...`
    deterministic: bool
    launcher: str
    objects: Objects
    generate: Generate
    crop: Crop
    segment: Segment
    masker: Masker
    backgrounds: Backgrounds
    background_classifier: ObjectsNet
    gradcam: Gradcam
    classifier: ObjectsNet
    study: Study
    transfer: Transfer
    datasets: dict[Name, Dataset]
    model_defaults: dict[Name, Any]  # applied to `models` before validation (_with_model_defaults)
    models: dict[Name, Model]
    augment: Augment
    visualize: Visualize
    tracking: Tracking

    def cells(self) -> list[str]:
        """Every cell (<dataset>-<model>): the study matrix's, then the transfer matrix's."""
        return [f"{d}-{m}" for models in (self.study.models, self.transfer.models) for d in self.study.datasets
                for m in models]  # fmt: skip

    def cell(self, key: str) -> tuple[str, str]:
        """The study cell a `visualize.<key>` figure uses, and a note when it is not the one set:
        null, or a cell that is not in the matrices (study.*, transfer.*), gives the first
        cell of the study matrix."""
        cells, wanted = self.cells(), getattr(self.visualize, key)
        if wanted in cells:
            return wanted, ""
        why = "not set" if wanted is None else f"{wanted!r} is not in the study matrix"
        return cells[0], f"visualize.{key} {why}: using {cells[0]!r}"

    def segment_settings(self) -> dict:
        """The keyword arguments of cnnlab.data.segment.grabcut_crop: GrabCut's (`segment`) and its
        fallback's (crop.context, masker.seed_bins, masker.seed_margin). A segment model carries
        them (its usage record), so new images are masked as the pipeline masked its crops."""
        fallback = {"context": self.crop.context, "bins": self.masker.seed_bins, "margin": self.masker.seed_margin}
        return {**self.segment.model_dump(), "fallback": fallback}

    def augment_dataset(self) -> tuple[str, str]:
        """The dataset of the augmentation figure (as :meth:`cell`, for study.datasets)."""
        wanted = self.visualize.augment_dataset
        if wanted in self.study.datasets:
            return wanted, ""
        first = self.study.datasets[0]
        why = "not set" if wanted is None else f"{wanted!r} is not in study.datasets"
        return first, f"visualize.augment_dataset {why}: using {first!r}"


# -- reading and checking -------------------------------------------------------------------------


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def merge(base: dict, delta: dict) -> dict:
    """A copy of `base` with the values of `delta` put in, recursively (mappings merged, other
    values replaced); neither argument is changed."""
    out = copy.deepcopy(base)
    for k, v in delta.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _one_of(key: str, value, valid) -> None:
    if value not in valid:
        raise ParamsError(f"params key '{key}': unknown name {value!r}; valid names: {', '.join(valid)}")


def _unique(key: str, values) -> None:
    if len(set(values)) != len(values):
        raise ParamsError(f"params key '{key}' lists a name twice: {list(values)}")


def _check(p: Params) -> None:
    """The rules that tie keys together."""
    if p.launcher.split()[:1] not in (["python"], ["torchrun"]):
        raise ParamsError(f"params key 'launcher': {p.launcher!r} must start with `python` or `torchrun` "
                          "(e.g. `torchrun --standalone --nproc_per_node 2`)")  # fmt: skip
    _unique("objects.strategies", p.objects.strategies)
    for key, names, declared in (("study.datasets", p.study.datasets, p.datasets),
                                 ("study.models", p.study.models, p.models)):  # fmt: skip
        for i, name in enumerate(names):
            _one_of(f"{key}[{i}]", name, list(declared))
        _unique(key, names)
    _check_transfer(p)
    for key in ("features_cell", "deconv_cell", "class_images_cell"):
        cell = getattr(p.visualize, key)
        if cell is not None:  # a typo fails here; a declared cell outside the matrix falls back (Params.cell)
            valid = [f"{d}-{m}" for d in p.datasets for m in p.models]
            _one_of(f"visualize.{key}", cell, valid)
    if p.visualize.augment_dataset is not None:
        _one_of("visualize.augment_dataset", p.visualize.augment_dataset, list(p.datasets))
    if p.augment.cutmix.p + p.augment.mixup.p > 1:
        raise ParamsError(
            "params keys 'augment.cutmix.p' + 'augment.mixup.p' must be <= 1 (a batch is mixed at most once)"
        )
    for name in ("resized_crop", "cutout"):
        low, high = getattr(p.augment, name).scale
        if not 0 < low <= high:
            raise ParamsError(f"params key 'augment.{name}.scale' must be 0 < min <= max <= 1, got {[low, high]}")


def needs_pretrained(m: Model) -> bool:
    """Whether model params `m` may load the pretrain stage's backbone."""
    return isinstance(m, TransferParams) and (
        m.weights == "pretrained" or (m.weights == "imagenet" and m.fallback == "pretrained")
    )


def _check_transfer(p: Params) -> None:
    t = p.transfer
    _one_of("transfer.source", t.source, list(p.datasets))
    _one_of("transfer.pretrain", t.pretrain, list(p.models))
    pre = p.models[t.pretrain]
    if not isinstance(pre, TransferParams) or pre.weights != "none" or pre.freeze_backbone:
        raise ParamsError(f"params key 'transfer.pretrain': models.{t.pretrain} must be a transfer family "
                          "(mobilenet_v3, inception_v3) with weights: none and freeze_backbone: false "
                          "(the pretrain stage trains it from scratch)")  # fmt: skip
    if t.source in p.study.datasets:
        raise ParamsError(f"params key 'transfer.source': {t.source!r} is in study.datasets; the transfer cells "
                          "run on every dataset there, and a backbone pretrained on the same images shows no "
                          "transfer: pretrain on another dataset")  # fmt: skip
    for i, name in enumerate(t.models):
        _one_of(f"transfer.models[{i}]", name, list(p.models))
        if name in p.study.models:
            raise ParamsError(f"params key 'transfer.models[{i}]': {name!r} is in study.models too (one cell "
                              "name, two stages); list it in one of them")  # fmt: skip
    _unique("transfer.models", t.models)
    for i, name in enumerate(p.study.models):
        if needs_pretrained(p.models[name]):
            raise ParamsError(f"params key 'study.models[{i}]': models.{name} may load the pretrain stage's "
                              f"backbone (weights: pretrained, or imagenet with fallback: pretrained), which "
                              f"only the transfer stage depends on: list it in transfer.models, or set its "
                              f"fallback to random or error")  # fmt: skip
    for name in t.models:
        m = p.models[name]
        if needs_pretrained(m) and m.family != pre.family:
            raise ParamsError(f"params key 'models.{name}.family': {m.family} cannot load the pretrained "
                              f"backbone, a {pre.family} (transfer.pretrain: {t.pretrain})")  # fmt: skip


FAMILIES = {tag: member for member in typing.get_args(typing.get_args(Model)[0])
            for tag in typing.get_args(member.model_fields["family"].annotation)}  # fmt: skip


def _with_model_defaults(data: dict) -> dict:
    """`data` with `model_defaults` applied: each block of `models` starts from the defaults its
    family has a setting for (`weights` only reaches the transfer families), and its own keys win.
    A default no family has, or of the wrong type, is named as `model_defaults.<key>`."""
    defaults, models = data.get("model_defaults"), data.get("models")
    if not isinstance(defaults, dict) or not isinstance(models, dict):
        return data  # validation names what is wrong with them
    fields = {}
    for member in FAMILIES.values():
        fields |= {k: f for k, f in member.model_fields.items() if k != "family" and k not in fields}
    if unknown := sorted(set(defaults) - set(fields)):
        raise ParamsError(f"params key 'model_defaults.{unknown[0]}': no model family has this setting; the "
                          f"settings are {', '.join(sorted(fields))}")  # fmt: skip
    inner = create_model("ModelDefaults", __base__=Section, **{k: (fields[k].annotation, fields[k]) for k in defaults})
    outer = create_model("Defaults", __base__=Section, model_defaults=(inner, ...))
    try:
        outer.model_validate_json(json.dumps({"model_defaults": defaults}, default=str))
    except ValidationError as e:
        raise ParamsError("\n".join(params_messages(e.errors(), outer))) from None
    resolved = {}
    for name, block in models.items():
        family = block.get("family") if isinstance(block, dict) else None
        member = FAMILIES.get(family) if isinstance(family, str) else None
        shared = {k: v for k, v in defaults.items() if member is not None and k in member.model_fields}
        resolved[name] = {**shared, **block} if member is not None else block
    return {**data, "models": resolved}


def parse_params(data: Any) -> Params:
    """Validate a params mapping (as read from params.yaml) and return :class:`Params`.

    Raises:
        ParamsError: one line per problem, each naming its key.
    """
    if not isinstance(data, dict):
        raise ParamsError("params.yaml must hold a mapping of keys at the top level")
    classifier = data.get("classifier")
    if isinstance(classifier, dict):
        if "lr" in classifier:
            raise ParamsError("params key 'classifier.lr' is not used: set the top-level 'lr' instead")
        if "lr" in data:  # the 8-class classifier's learning rate is the top-level `lr`
            data = {**data, "classifier": {**classifier, "lr": data["lr"]}}
    data = _with_model_defaults(data)
    try:
        params = Params.model_validate_json(json.dumps(data, default=str))
    except ValidationError as e:
        raise ParamsError("\n".join(params_messages(e.errors(), Params))) from None
    _check(params)
    return params


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from a file (ParamsError names the file if it is not one)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: params file not found; run from the repository root") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    return data


def load_params(path: str | Path = "params.yaml", overrides: dict | None = None) -> Params:
    """Read and validate params.yaml (with `overrides` merged in, see :func:`merge`).

    Raises:
        ParamsError: a missing, unknown, mistyped or out-of-range key, naming the file and the key.
        FileNotFoundError: the file does not exist.
    """
    data = read_yaml(path)
    if overrides and isinstance(data, dict):
        data = merge(data, overrides)
    try:
        return parse_params(data)
    except ParamsError as e:
        raise ParamsError(re.sub(r"^", f"{path}: ", str(e), flags=re.M)) from None
