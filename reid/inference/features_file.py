"""The features file ``reid embed`` writes and ``reid search`` reads (HDF5, format_version 2).

Root attributes: ``format`` = "occluded-reid-features", ``format_version``, ``source`` (the
folder, list or file embedded, resolved), ``source_kind`` ("folder", "list", "image", "h5"),
``checkpoint`` (resolved path), ``checkpoint_fingerprint`` (SHA-256 of the checkpoint file:
features are comparable only between equal fingerprints), ``dataset_fingerprint`` (of the
checkpoint's training file), ``arch``, ``input_size`` [H, W], ``mean`` and ``std`` [3],
``flip``, ``package_version``, ``obc_head_trained`` (absent when the checkpoint does not say:
:func:`reid.models.checkpoint.obc_head_trained`).

| dataset | dtype, shape | meaning |
|---|---|---|
| ``global`` | float32 (N, D) | the retrieval feature ``reid eval`` measures (after the BN neck for a model trained with ``--retrieval-feature bn``; version 1 held the pooled feature before it) |
| ``local`` | float32 (N, H, C) | stripe features (absent with ``--no-local``) |
| ``occlusion`` | float32 (N,) | OBC probability that the image is occluded (NaN: head not trained) |
| ``path`` | str (N,) | image, relative to ``source`` ("split/row" for an .h5 source) |
| ``pid``, ``camid`` | int32 / int16 (N,) | only for an .h5 source |
| ``skipped_path``, ``skipped_reason`` | str (S,) | images left out under ``--skip-bad`` |

Datasets are contiguous and written without timestamps: the same input gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from common.atomic import atomic_path
from common.errors import BadInputError

FEATURES_FORMAT = "occluded-reid-features"
FEATURES_VERSION = 2
_STR = h5py.string_dtype(encoding="utf-8")


@dataclass
class FeatureBlock:
    """Consecutive rows of a features file (also one chunk of an embedding run).

    Attributes:
        global_feat: shape [n, D]; local_feat: shape [n, H, C] or None; occlusion: shape [n].
        names: shape [n], the images' paths relative to the source.
        pids, camids: shape [n] for an .h5 source, else None.
    """

    global_feat: np.ndarray
    local_feat: np.ndarray | None
    occlusion: np.ndarray
    names: list[str]
    pids: np.ndarray | None = None
    camids: np.ndarray | None = None


def write_features(path: str | Path, attrs: dict[str, Any], blocks: Iterable[FeatureBlock], num_rows: int,
                   skipped: list[tuple[str, str]] = (), overwrite: bool = True) -> Path:  # type: ignore[assignment]
    """Stream ``blocks`` (``num_rows`` rows in all) into a new features file, atomically.

    The file is written under a temporary name in the same folder and renamed when complete;
    without ``overwrite`` not over a file that exists by then (:func:`common.atomic.commit_file`).
    """
    path = Path(path)
    blocks = iter(blocks)
    first = next(blocks, None)
    if first is None or num_rows < 1:
        raise BadInputError(f"{path}: no image could be embedded; nothing written")
    with atomic_path(path, "features", overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as h5:
            for key, value in attrs.items():
                h5.attrs[key] = value
            h5.attrs["format"] = FEATURES_FORMAT
            h5.attrs["format_version"] = FEATURES_VERSION
            columns = {
                "global": (np.float32, first.global_feat.shape[1:]),
                "occlusion": (np.float32, ()),
                "path": (_STR, ()),
            }
            if first.local_feat is not None:
                columns["local"] = (np.float32, first.local_feat.shape[1:])
            if first.pids is not None:
                columns["pid"] = (np.int32, ())
                columns["camid"] = (np.int16, ())
            out = {name: h5.create_dataset(name, shape=(num_rows, *shape), dtype=dtype, track_times=False)
                   for name, (dtype, shape) in columns.items()}
            start = 0
            for block in _chain(first, blocks):
                stop = start + len(block.names)
                out["global"][start:stop] = block.global_feat
                out["occlusion"][start:stop] = block.occlusion
                out["path"][start:stop] = block.names
                if "local" in out:
                    out["local"][start:stop] = block.local_feat
                if "pid" in out:
                    out["pid"][start:stop] = block.pids
                    out["camid"][start:stop] = block.camids
                start = stop
            if start != num_rows:
                raise RuntimeError(f"features: {start} rows written, {num_rows} expected")
            h5.create_dataset("skipped_path", data=np.array([p for p, _ in skipped], dtype=object), dtype=_STR, track_times=False)
            h5.create_dataset("skipped_reason", data=np.array([r for _, r in skipped], dtype=object), dtype=_STR, track_times=False)
    return path


def _chain(first: FeatureBlock, rest: Iterable[FeatureBlock]) -> Iterable[FeatureBlock]:
    yield first
    yield from rest


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FeaturesFile:
    """An open features file, read lazily: ``global``/``local`` rows are sliced on demand, so a
    gallery larger than memory can be streamed in blocks.

    Use as a context manager. Attributes mirror the root attributes (``obc_head_trained``: None
    when absent); ``paths`` [N] and ``occlusion`` [N] are loaded on open.

    Raises:
        BadInputError: missing, unreadable, not a features file, another format_version, or
            text (an attribute, a path) that is not UTF-8.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInputError(f"{self.path}: no such features file; make one with `reid embed --out {self.path}`")
        try:
            self.h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise BadInputError(f"{self.path}: not a readable HDF5 file; make it again with `reid embed`") from exc
        try:
            self._validate()
        except UnicodeDecodeError as exc:  # an attribute or path written by something else than `reid embed`
            self.h5.close()
            raise BadInputError(f"{self.path}: holds text that is not UTF-8 ({exc.reason} at byte {exc.start}); "
                                "the file is damaged or not written by `reid embed`, embed again") from exc
        except BaseException:
            self.h5.close()
            raise

    def _validate(self) -> None:
        attrs = self.h5.attrs
        if _text(attrs.get("format", "")) != FEATURES_FORMAT:
            raise BadInputError(f"{self.path}: not a features file (no format={FEATURES_FORMAT!r}); make one with `reid embed`")
        version = int(attrs.get("format_version", -1))
        if version != FEATURES_VERSION:
            raise BadInputError(f"{self.path}: features format_version {version}, this version reads {FEATURES_VERSION}; "
                                "embed again with this version")
        for name in ("global", "occlusion", "path"):
            if name not in self.h5:
                raise BadInputError(f"{self.path}: dataset '{name}' is missing; the file is damaged, embed again")
        n = self.h5["global"].shape[0]
        for name in ("occlusion", "path", "local", "pid", "camid"):
            if name in self.h5 and self.h5[name].shape[0] != n:
                raise BadInputError(f"{self.path}: dataset '{name}' has {self.h5[name].shape[0]} rows, 'global' {n}; embed again")
        self.paths = [_text(p) for p in self.h5["path"][()]]
        self.occlusion = self.h5["occlusion"][()].astype(np.float32)
        self.checkpoint = _text(attrs.get("checkpoint", ""))
        self.checkpoint_fingerprint = _text(attrs.get("checkpoint_fingerprint", ""))
        self.source = _text(attrs.get("source", ""))
        self.source_kind = _text(attrs.get("source_kind", ""))
        self.input_size = tuple(int(v) for v in attrs.get("input_size", (0, 0)))
        trained = attrs.get("obc_head_trained")
        self.obc_head_trained = None if trained is None else bool(trained)
        self.pids = self.h5["pid"][()] if "pid" in self.h5 else None
        self.camids = self.h5["camid"][()] if "camid" in self.h5 else None

    def __len__(self) -> int:
        return int(self.h5["global"].shape[0])

    @property
    def has_local(self) -> bool:
        return "local" in self.h5

    @property
    def global_dim(self) -> int:
        return int(self.h5["global"].shape[1])

    def global_rows(self, start: int, stop: int) -> np.ndarray:
        """float32 [stop - start, D]."""
        return self.h5["global"][start:stop]

    def local_rows(self, start: int, stop: int) -> np.ndarray:
        """float32 [stop - start, H, C]."""
        return self.h5["local"][start:stop]

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> "FeaturesFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
