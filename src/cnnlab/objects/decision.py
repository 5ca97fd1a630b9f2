"""The find_shortcut stage's decision, as every later stage reads it (data/interim/shortcut.json):
the shortcut class and the contrast class, or none. Kept apart from the detection
(cnnlab.objects.find_shortcut) so that the stages that read it do not depend on how it was found."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import DatasetError
from cnnlab.io import write_json


@dataclass(frozen=True)
class Decision:
    """What every stage after find_shortcut reads of it (never params.yaml's backgrounds.classes):
    the shortcut class and the contrast class, or None for both with the reason."""

    shortcut: str | None
    contrast: str | None
    reason: str = ""

    @property
    def pair(self) -> list[str]:
        if self.shortcut is None:
            raise ValueError("no shortcut class")
        return [self.shortcut, self.contrast]

    def skipped(self, what: str) -> str | None:
        """Why `what` (something that needs a shortcut class) is skipped, or None."""
        if self.shortcut is not None:
            return None
        return f"{what} needs a shortcut class, and find_shortcut found none ({self.reason})"


def write_decision(path, decision: Decision) -> None:
    """Only the decision: the same pair gives the same bytes, so `auto` and the explicit pair it
    found leave every later stage cached alike."""
    write_json(path, {"shortcut": decision.shortcut, "contrast": decision.contrast, "reason": decision.reason
                      if decision.shortcut is None else ""})  # fmt: skip


def read_decision(path) -> Decision:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return Decision(data["shortcut"], data["contrast"], data.get("reason", ""))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(
            f"{path}: not the find_shortcut stage's decision ({e}); run `dvc repro find_shortcut`"
        ) from None

