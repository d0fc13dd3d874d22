"""``--device`` values to a :class:`torch.device`, shared by every command that computes."""

from __future__ import annotations

import torch

from common.errors import BadInputError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or "auto": CUDA when available, else CPU; otherwise the given device.

    Raises:
        BadInputError: CUDA was asked for on a machine without a GPU.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError("--device: cuda was requested but no GPU is available; use cpu or auto")
    return dev
