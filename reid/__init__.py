"""reid: AlignedReID + occlusion-classification (OBC) training, evaluation and saliency."""

from __future__ import annotations

from typing import Any

from common import __version__  # the project's one version

__all__ = ["Embedder", "load_model", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import reid` (and `reid --help`) stays free of torch.
    if name == "load_model":
        from reid.models.checkpoint import load_model

        return load_model
    if name == "Embedder":
        from reid.inference.embedder import Embedder

        return Embedder
    raise AttributeError(name)
