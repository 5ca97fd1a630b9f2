"""The model registry's rules: which version of a registered model is its champion, and the tag
that ties a logged model to the weights a stage saved (so a later stage finds the model it scores)."""

from __future__ import annotations

import contextlib

WEIGHTS_TAG = "cnnlab.weights_digest"  # a logged model's tag: the digest of its weights (cnnlab.serving.weights_digest)
CHAMPION = "champion"  # the alias of a registered model's best version
CHAMPION_KEY = "val_accuracy"  # the version tag that decides it (validation, never test)


def move_champion(client, registered: str) -> str | None:
    """Give alias `champion` to the version of `registered` with the highest `val_accuracy` tag
    (an earlier version keeps it on a tie: it moves when a better one arrives). Returns that
    version (None: no version has the tag)."""
    scored = []
    for v in client.search_model_versions(f"name='{registered}'"):
        with contextlib.suppress(KeyError, ValueError):
            scored.append((float(v.tags[CHAMPION_KEY]), -int(v.version), v.version))
    if not scored:
        return None
    best = max(scored)[2]
    try:
        current = client.get_model_version_by_alias(registered, CHAMPION).version
    except Exception:  # noqa: BLE001 - no alias yet
        current = None
    if current != best:
        client.set_registered_model_alias(registered, CHAMPION, best)
    return best
