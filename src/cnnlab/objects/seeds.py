"""The per-seed loop of the objects chain, written once: a step runs one function per seed
(objects.seeds: each seed has its own split and initial weights) and gets back every seed's
summary, model and training history, with the mean and spread over the seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from cnnlab.metrics import mean_curves, over_seeds


@dataclass
class SeedResult:
    """One seed of a step: its summary (metric -> number), and for a step that trains, the model
    and its history (one dict per epoch)."""

    summary: dict
    model: nn.Module | None = None
    history: list[dict] | None = None


@dataclass
class PerSeed:
    """Every seed of a step, in seed order."""

    summaries: dict[int, dict] = field(default_factory=dict)
    models: dict[int, nn.Module] = field(default_factory=dict)
    histories: list[list[dict]] = field(default_factory=list)

    @property
    def over_seeds(self) -> dict:
        """metric -> {mean, sd, per_seed} (cnnlab.metrics.over_seeds)."""
        return over_seeds(self.summaries)

    @property
    def curves(self) -> list[dict]:
        """The per-epoch mean of the seeds' histories."""
        return mean_curves(self.histories)

    @property
    def per_seed(self) -> dict[str, dict]:
        """seed (as a JSON key) -> its summary."""
        return {str(seed): summary for seed, summary in self.summaries.items()}


def for_each_seed(seeds: list[int], one_seed: Callable[[int], SeedResult]) -> PerSeed:
    """Run `one_seed` for every seed, in order, and collect what each returns."""
    out = PerSeed()
    for seed in seeds:
        result = one_seed(seed)
        out.summaries[seed] = result.summary
        if result.model is not None:
            out.models[seed] = result.model
        if result.history is not None:
            out.histories.append(result.history)
    return out


def log_means(run, over: dict) -> None:
    """Each metric's mean over the seeds to the stage's MLflow run, as mean/<metric>."""
    run.log_metrics({k: v["mean"] for k, v in over.items()}, prefix="mean/")


def remove_finished(checkpoints: list[Path]) -> None:
    """Per-epoch checkpoints of finished fits: nothing left to resume."""
    for checkpoint in checkpoints:
        checkpoint.unlink(missing_ok=True)
