"""The cures of the background shortcut, one record each, in the comparison's order.

Everything in cnnlab that must know what a cure is reads these records: the params schema (the
valid names of `objects.strategies`), the chain (its training and test crops: how
cnnlab.data.strategies makes them), the comparison (the baseline, the upper bound, the cures a run
may recommend), `cnnlab predict` and the served model (which masks a new image's crop needs) and
the docs' labels. A new cure is one record here and, when none of the views of
cnnlab.data.strategies.TRAIN_VIEWS makes its training crops, one function there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

View = Literal["as_is", "gradcam", "black_fill", "composite"]  # cnnlab.data.strategies.TRAIN_VIEWS
Source = Literal["segments", "learned", "truth"]  # a cnnlab.data.strategies.ChainData field


@dataclass(frozen=True)
class Cure:
    """One cure (a "strategy" in params.yaml and the metrics).

    Attributes:
        name: its name in params.yaml, the metrics, the registered models.
        label: what it does, in a phrase (the docs' tables).
        train: how its training crops are made (cnnlab.data.strategies.TRAIN_VIEWS); "gradcam"
            needs the gradcam_mask stage's crops, so a shortcut class.
        masks: where its masks come from: GrabCut (segments), the masker stage (learned), the
            folder's ground truth (truth); None: it uses none.
        test_masks: its test crops are masked as its training crops are (new images too).
        recommendable: a run may recommend it (chosen on validation accuracy): its validation crops
            are treated as its training crops are, so a classifier cannot score there by the
            training backgrounds.
        role: the baseline every cure is compared with, a cure, or the upper bound (reported,
            never chosen).
    """

    name: str
    label: str
    train: View
    masks: Source | None = None
    test_masks: bool = False
    recommendable: bool = False
    role: Literal["baseline", "cure", "upper_bound"] = "cure"


CURES: tuple[Cure, ...] = (
    Cure("none", "none (baseline)", "as_is", role="baseline"),
    Cure("report", "report (Grad-CAM blacks out the shortcut class's background)", "gradcam"),
    Cure("segment", "segment (GrabCut masks every crop, train and test)", "black_fill", "segments", test_masks=True,
         recommendable=True),
    Cure("segment_learned", "segment_learned (the learned masker's masks, train and test)", "black_fill", "learned",
         test_masks=True, recommendable=True),
    Cure("mixed_rand", "mixed_rand (objects on random classes' backgrounds)", "composite", "segments",
         recommendable=True),
    Cure("mixed_rand_learned", "mixed_rand_learned (the same, learned masks)", "composite", "learned",
         recommendable=True),
    Cure("oracle", "oracle (ground-truth masks: upper bound, not a result)", "black_fill", "truth", test_masks=True,
         role="upper_bound"),
)  # fmt: skip
STRATEGIES: tuple[str, ...] = tuple(c.name for c in CURES)
CURE: dict[str, Cure] = {c.name: c for c in CURES}
BASELINE = next(c.name for c in CURES if c.role == "baseline")
UPPER_BOUND = next(c.name for c in CURES if c.role == "upper_bound")
RECOMMENDABLE: tuple[str, ...] = tuple(c.name for c in CURES if c.recommendable)
