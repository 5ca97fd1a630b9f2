"""Which training class shares the test images' background (the find_shortcut stage).

Every image's background is known from its box. A classifier of backgrounds learns what each
training class's background looks like from the training images' background patches only (the
backgrounds stage's patches, boxes blacked out): colour and texture statistics of the pixels
outside the box (:func:`patch_features`), standardised, multinomial logistic regression
(scikit-learn), checked on a held-out fifth of the training images (grouped by image, stratified
by class). It then labels background patches of the unlabelled test images (and of paired/, only
to report); each test image goes to the class of its patches' mean probability.

The decision (:func:`decide`), stated in advance and never tuned on test labels (none is read):
the class with most test images is the shortcut class when

- it has at least half of the test images (`MIN_SHARE`) and at least twice the runner-up's share;
- that share is unlikely by chance: a binomial test against 1 / classes, p < `MAX_P`;
- the test backgrounds assigned to it look like its own training backgrounds, not merely more
  like them than like the others': at least half of those test images (`MIN_TYPICAL`) lie as close
  to the class's training patches (nearest neighbour in the standardised features; an image: the
  median over its patches) as 95% of the class's own patches lie to its other patches.

Otherwise there is no shortcut. The contrast class (the report's binary background classifier's
other class) is the class whose held-out patches are told apart from the shortcut class's most
reliably: the highest mean of (1 - p(shortcut)) on its patches and (1 - p(class)) on the shortcut
class's patches; scores within CONTRAST_TIE of the best are a tie, won by the first in class order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import rgb_to_hsv

from cnnlab.objects.decision import Decision

if TYPE_CHECKING:
    from cnnlab.params.schema import Backgrounds

MIN_SHARE = 0.5  # the shortcut class has at least this share of the test images ...
MIN_LEAD = 2.0  # ... and this many times the runner-up's
MAX_P = 1e-3  # binomial test of its share against chance
MIN_TYPICAL = 0.5  # share of its test images as close to its training patches as those are to each other
TYPICAL_QUANTILE = 0.95
VAL_FOLDS = 5  # one fold of the training images held out
HUE_BINS, SAT_BINS, VAL_BINS, ORIENT_BINS = 12, 4, 4, 8
GRADIENT_EDGES = (0.0, 0.01, 0.03, 0.1, 0.3, np.inf)
CONTRAST_TIE = 0.01  # contrast scores this close to the best count as a tie (the first class wins)
MIN_VALID = 0.1  # a patch is judged on at least this share of pixels outside the box


def _hist(index: np.ndarray, weight: np.ndarray, bins: int) -> np.ndarray:
    """(N, bins) per-patch histograms of `index` (N, ...) in [0, bins), weighted, summing to 1."""
    flat_i, flat_w = index.reshape(len(index), -1), weight.reshape(len(weight), -1)
    out = np.stack([(flat_w * (flat_i == b)).sum(1) for b in range(bins)], 1)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-8)


def valid_pixels(patches: np.ndarray) -> np.ndarray:
    """(N, S, S) bool: the pixels of (N, 3, S, S) uint8 patches outside the blacked-out box."""
    return patches.max(axis=1) > 0


def patch_features(patches: np.ndarray) -> np.ndarray:
    """(N, F) colour and texture statistics of background patches (N, 3, S, S) uint8, over the
    pixels outside the blacked-out box only: per-channel mean and spread; histograms of hue
    (weighted by saturation), saturation and value; of the grey level's gradient magnitude and
    (magnitude-weighted) orientation; the mean gradient."""
    valid = valid_pixels(patches).astype(np.float32)
    x = patches.astype(np.float32) / 255
    count = np.maximum(valid.sum((1, 2)), 1)[:, None]
    mean = (x * valid[:, None]).sum((2, 3)) / count
    spread = np.sqrt(((x - mean[..., None, None]) ** 2 * valid[:, None]).sum((2, 3)) / count)
    hsv = rgb_to_hsv(np.moveaxis(x, 1, -1))
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hue = _hist(np.minimum((h * HUE_BINS).astype(int), HUE_BINS - 1), s * valid, HUE_BINS)
    sat = _hist(np.minimum((s * SAT_BINS).astype(int), SAT_BINS - 1), valid, SAT_BINS)
    val = _hist(np.minimum((v * VAL_BINS).astype(int), VAL_BINS - 1), valid, VAL_BINS)
    grey = x.mean(1)
    gx, gy = grey[:, :-1, 1:] - grey[:, :-1, :-1], grey[:, 1:, :-1] - grey[:, :-1, :-1]
    both = valid[:, :-1, :-1] * valid[:, :-1, 1:] * valid[:, 1:, :-1]  # no step across the box's edge
    magnitude = np.hypot(gx, gy)
    edges = np.asarray(GRADIENT_EDGES[1:-1])
    grad = _hist(np.searchsorted(edges, magnitude), both, len(GRADIENT_EDGES) - 1)
    angle = np.mod(np.arctan2(gy, gx), np.pi)  # orientation, not direction
    orient = _hist(np.minimum((angle / np.pi * ORIENT_BINS).astype(int), ORIENT_BINS - 1), magnitude * both,
                   ORIENT_BINS)  # fmt: skip
    mean_grad = (magnitude * both).sum((1, 2)) / np.maximum(both.sum((1, 2)), 1)
    return np.concatenate([mean, spread, hue, sat, val, grad, orient, mean_grad[:, None]], 1)


@dataclass
class BackgroundModel:
    """The classifier of backgrounds and what its held-out patches said."""

    classes: list[str]
    pipeline: object  # scikit-learn: StandardScaler -> LogisticRegression
    val_accuracy: float
    val_recall: dict[str, float]
    val_proba: np.ndarray  # (n_val, classes)
    val_labels: np.ndarray
    neighbours: dict[int, object]  # class -> NearestNeighbors on its training patches' scaled features
    typical_distance: dict[int, float]  # class -> TYPICAL_QUANTILE of its patches' distances to its others

    def proba(self, features: np.ndarray) -> np.ndarray:
        return self.pipeline.predict_proba(features)

    def distance(self, features: np.ndarray, cls: int) -> np.ndarray:
        scaled = self.pipeline[:-1].transform(features)
        return self.neighbours[cls].kneighbors(scaled, n_neighbors=1)[0][:, 0]


def fit_backgrounds(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, classes: list[str],
                    seed: int) -> BackgroundModel:  # fmt: skip
    """Fit the classifier of backgrounds on four fifths of the training images' patches
    (`labels`: class indices; `groups`: the source image of each patch) and check it on the rest."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.neighbors import NearestNeighbors
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(VAL_FOLDS, int(np.bincount(labels, minlength=len(classes)).min()))
    if folds < 2:
        raise ValueError("every class needs background patches of at least two training images")
    split = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fit_rows, val_rows = next(split.split(features, labels, groups))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    pipeline.fit(features[fit_rows], labels[fit_rows])
    val_proba = pipeline.predict_proba(features[val_rows])
    val_labels, val_pred = labels[val_rows], val_proba.argmax(1)
    scaled = pipeline[:-1].transform(features)
    neighbours, typical = {}, {}
    for c in range(len(classes)):  # each patch of the class against the class's other patches
        own = scaled[labels == c]
        neighbours[c] = NearestNeighbors(n_neighbors=2).fit(own)
        d = neighbours[c].kneighbors(own, n_neighbors=2)[0][:, 1]
        typical[c] = float(np.quantile(d, TYPICAL_QUANTILE))
    recall = {classes[c]: float(np.mean(val_pred[val_labels == c] == c)) for c in range(len(classes))}
    return BackgroundModel(classes, pipeline, float(np.mean(val_pred == val_labels)), recall, val_proba, val_labels,
                           neighbours, typical)  # fmt: skip


def contrast_class(model: BackgroundModel, shortcut: int) -> tuple[int, dict[str, float]]:
    """The class told apart from `shortcut` most reliably on the held-out patches (module doc);
    returns it and every candidate's score."""
    p, y = model.val_proba, model.val_labels
    scores = {}
    for c in range(len(model.classes)):
        if c == shortcut:
            continue
        scores[model.classes[c]] = float(np.mean([np.mean(1 - p[y == c, shortcut]), np.mean(1 - p[y == shortcut, c])]))
    best = max(scores.values())
    chosen = next(name for name in model.classes if name in scores and scores[name] >= best - CONTRAST_TIE)
    return model.classes.index(chosen), scores


def image_votes(proba: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's class from its patches' mean probability: (the images, sorted by name,
    their class index)."""
    order, inverse = np.unique(images, return_inverse=True)
    mean = np.zeros((len(order), proba.shape[1]))
    np.add.at(mean, inverse, proba)
    return order, mean.argmax(1)


def decide(model: BackgroundModel, test_features: np.ndarray, test_images: np.ndarray) -> dict:
    """The shortcut decision from the test images' background patches (module doc): a dict with
    `shortcut` (a class name or None), `contrast`, each class's share of the test images, the
    runner-up, the binomial p-value against chance, the typical share and the reason."""
    from scipy.stats import binomtest

    classes, k = model.classes, len(model.classes)
    names, votes = image_votes(model.proba(test_features), test_images)
    counts = np.bincount(votes, minlength=k)
    shares = counts / len(names)
    top, runner = np.argsort(-shares, kind="stable")[:2]
    p_value = float(binomtest(int(counts[top]), len(names), 1 / k, alternative="greater").pvalue)
    mine = np.isin(test_images, names[votes == top])
    distance = model.distance(test_features[mine], int(top))
    per_image = {}
    for name, d in zip(test_images[mine], distance):
        per_image.setdefault(name, []).append(d)
    typical = float(np.mean([np.median(d) <= model.typical_distance[int(top)] for d in per_image.values()]))
    checks = [
        (shares[top] >= MIN_SHARE,
         f"class {classes[top]} has {shares[top]:.0%} of the test images, under {MIN_SHARE:.0%}"),
        (shares[top] >= MIN_LEAD * shares[runner],
         f"class {classes[top]}'s {shares[top]:.0%} is under {MIN_LEAD:g}x the runner-up's ({classes[runner]}: "
         f"{shares[runner]:.0%})"),
        (p_value < MAX_P, f"class {classes[top]}'s share is not unlikely by chance (p = {p_value:.2g})"),
        (typical >= MIN_TYPICAL,
         f"the test backgrounds do not look like class {classes[top]}'s training backgrounds (only {typical:.0%} as "
         f"close as its own patches are to each other)"),
    ]  # fmt: skip
    failed = [why for ok, why in checks if not ok]
    out = {
        "shortcut": None if failed else classes[top],
        "contrast": None,
        "test_images": int(len(names)),
        "share": {c: float(s) for c, s in zip(classes, shares)},
        "top": classes[top],
        "top_share": float(shares[top]),
        "runner_up": classes[runner],
        "runner_up_share": float(shares[runner]),
        "chance": 1 / k,
        "p_value": p_value,
        "typical_share": typical,
        "reason": "; ".join(failed) if failed else (
            f"class {classes[top]} has {shares[top]:.0%} of the test images (runner-up {classes[runner]}: "
            f"{shares[runner]:.0%}, chance {1 / k:.0%}, p = {p_value:.2g}); {typical:.0%} of them look like its "
            "own training backgrounds"),
    }  # fmt: skip
    if not failed:
        contrast, scores = contrast_class(model, int(top))
        out["contrast"], out["contrast_scores"] = classes[contrast], scores
    return out


def paired_agreement(model: BackgroundModel, features: np.ndarray, images: np.ndarray, labels: dict[str, str]) -> float:
    """The share of paired images (each object on its own class's background) whose background
    the classifier gives to that class: a check of the classifier, reported only."""
    names, votes = image_votes(model.proba(features), images)
    return float(np.mean([model.classes[v] == labels[n] for n, v in zip(names, votes)]))


EXPLICIT = "explicit (backgrounds.classes in params.yaml)"
TEST_PATCHES_PER_IMAGE = 4  # background patches cut from each test (and paired) image
MIN_JUDGED = 10  # test images with enough background to judge, at the least


@dataclass
class Finding:
    """The find_shortcut stage's result: the decision, its metrics and the patches it looked at."""

    decision: Decision
    metrics: dict
    train: object  # Split: the training images' background patches
    test: object  # Split: the test images' background patches (None: the folder has no test image)
    classes: list[str]

    def figures(self) -> dict:
        from cnnlab.viz.plots import labelled_rows

        share = self.metrics["detected"].get("share", {}) if self.metrics.get("detected") else {}
        rows = [] if self.test is None else [("test", self.test.images[:: TEST_PATCHES_PER_IMAGE][:8])]
        found = self.decision.shortcut
        marked = len(rows) + self.classes.index(found) if found is not None else None
        for c in self.classes:
            own = self.train.images[np.flatnonzero(self.train.index.label.to_numpy() == c)[:8]]
            rows.append((f"{c} ({share[c]:.0%})" if c in share else c, own))
        chosen = f"shortcut class {found}" if found is not None else "no shortcut class"
        top = "test backgrounds (top row) beside each training class's" if self.test is not None else (
            "each training class's backgrounds (the folder has no test image)")  # fmt: skip
        title = f"{chosen}, {self.metrics['decided_by']}\n{top}, with its share of the test images"
        return {"shortcut.png": labelled_rows(rows, marked, title=title)}


def _judged(patches, images: np.ndarray, where: str) -> np.ndarray:
    """The rows of patches with enough pixels outside the box (MIN_VALID), or a DatasetError
    naming a file when too few images are left to judge."""
    enough = valid_pixels(patches).mean((1, 2)) >= MIN_VALID
    judged = np.unique(images[enough])
    if len(judged) < MIN_JUDGED:
        from cnnlab.errors import DatasetError

        bad = next((name for name in images[~enough]), images[0] if len(images) else where)
        raise DatasetError(
            f"{bad}: its box leaves too little background to judge ({len(judged)} of {len(np.unique(images))} "
            f"{where} images have {MIN_VALID:.0%} of a patch outside their box; at least {MIN_JUDGED} are needed); "
            "set params key backgrounds.classes to [shortcut class, contrast class]"
        )
    return np.flatnonzero(enough)


def find_shortcut(b: Backgrounds, size: int, seed: int, ds, train) -> Finding:
    """Detect the shortcut class from the training images' background patches `train` (Split,
    the backgrounds stage's) and patches (`size` px, drawn with `seed`) of the test images of
    `ds`; decide by `b.classes` (params.yaml's backgrounds): `auto` takes the detection, an
    explicit pair is checked and kept (the detection is reported beside it)."""
    from cnnlab.data.crops import background_patches
    from cnnlab.errors import DatasetError

    classes = list(ds.classes)
    explicit = b.classes != "auto"
    if explicit:
        for i, name in enumerate(b.classes):
            if name not in classes:
                raise DatasetError(f"params key 'backgrounds.classes[{i}]' names class '{name}', not in {ds.root}: "
                                   f"{', '.join(classes)}")  # fmt: skip
    if len(ds.split("test")) == 0:
        if explicit:
            unseen = {"decided_by": EXPLICIT, "detected": None, "why_not_detected": "no test images"}
            return Finding(Decision(*b.classes), unseen, train, None, classes)
        raise DatasetError(f"{ds.root}: no test images in boxes.csv to find the shortcut class from; set params key "
                           "backgrounds.classes to [shortcut class, contrast class]")  # fmt: skip
    test = background_patches(ds, ds.classes, size, TEST_PATCHES_PER_IMAGE, b.max_box_overlap, seed, split="test")
    test_images = test.index.id.to_numpy()
    try:
        judged = _judged(test.images, test_images, "test")
    except DatasetError:
        if not explicit:
            raise
        unseen = {"decided_by": EXPLICIT, "detected": None, "why_not_detected": "too little test background"}
        return Finding(Decision(*b.classes), unseen, train, test, classes)
    labels = np.array([classes.index(c) for c in train.index.label])
    missing = [c for i, c in enumerate(classes) if not (labels == i).any()]
    if missing:
        raise DatasetError(f"class {missing[0]} has no background patches in the backgrounds stage's output; "
                           "run `dvc repro backgrounds`")  # fmt: skip
    keep = _judged(train.images, train.index.id.to_numpy(), "training")
    try:
        model = fit_backgrounds(patch_features(train.images[keep]), labels[keep], train.index.id.to_numpy()[keep],
                                classes, seed)  # fmt: skip
    except ValueError as e:
        raise DatasetError(f"{ds.root}: {e}; set params key backgrounds.classes to [shortcut class, contrast "
                           "class]") from None  # fmt: skip
    detected = decide(model, patch_features(test.images[judged]), test_images[judged])
    detected["val_accuracy"], detected["val_recall"] = model.val_accuracy, model.val_recall
    paired = ds.split("paired")
    if len(paired) and (paired.label != "").all():
        pp = background_patches(ds, ds.classes, size, TEST_PATCHES_PER_IMAGE, b.max_box_overlap, seed, split="paired")
        rows = np.flatnonzero(valid_pixels(pp.images).mean((1, 2)) >= MIN_VALID)
        detected["paired_own_class_share"] = paired_agreement(
            model, patch_features(pp.images[rows]), pp.index.id.to_numpy()[rows], dict(zip(paired.path, paired.label)))
    if explicit:
        decision, how = Decision(*b.classes), EXPLICIT
    else:
        decision = Decision(detected["shortcut"], detected["contrast"], detected["reason"])
        how = "auto (backgrounds.classes: auto)"
    metrics = {"data_source": ds.source, "shortcut": decision.shortcut, "contrast": decision.contrast,
               "decided_by": how, "detected": detected}  # fmt: skip
    return Finding(decision, metrics, train, test, classes)
