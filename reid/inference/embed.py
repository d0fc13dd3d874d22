"""``reid embed``: features of every image of a folder, list or HDF5 file, streamed into a
features file (:mod:`reid.inference.features_file`), resumable after a kill.

How the work is cut: the listing is fixed first (:func:`reid.inference.images.list_images`);
batch j always holds listing items [j * batch_size, (j + 1) * batch_size) and a *chunk* is a
fixed number of consecutive batches. Each finished chunk is written atomically as one
``.npz`` into a spool folder beside the output (``.<out name>.parts/``). A killed run leaves
only whole chunks there; ``--resume`` checks that the spool belongs to the same checkpoint,
listing and options, keeps those chunks and computes the rest with the same batches, so the
result is the same rows (and bytes) as an uninterrupted run. When every chunk is there the
chunks are streamed into the output file (written under a temporary name and renamed), and
the spool folder is removed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.utils.data
from tqdm import tqdm

from common.atomic import atomic_write_bytes, atomic_write_json
from common.errors import BadInputError
from common.workers import cap_workers
from reid.inference.embed_config import EmbedConfig
from reid.inference.features_file import FeatureBlock, write_features
from reid.inference.images import ImageList, decode_file, list_images

logger = logging.getLogger(__name__)

_CHUNK_NAME = re.compile(r"^chunk-(\d{6})\.npz$")
_SPOOL_MANIFEST = "manifest.json"


@dataclass
class EmbedReport:
    """What a run did: ``rows`` images embedded into ``out``, ``skipped`` (path, reason) left
    out, ``resumed_rows`` of them taken from an interrupted run, ``seconds`` of this run."""

    out: Path
    rows: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    resumed_rows: int = 0
    computed_rows: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.computed_rows / self.seconds if self.seconds > 0 else 0.0


def spool_dir(out: Path) -> Path:
    """The folder holding the finished chunks of an unfinished run for ``out``."""
    return out.parent / f".{out.name}.parts"


# ------------------------------------------------------------------------ data loading


class _Items(torch.utils.data.Dataset):
    """Item i of a listing -> (i, uint8 tensor [3, H, W] or None, reason). Picklable for workers:
    an .h5 source is opened lazily, once per process."""

    def __init__(self, listing: ImageList, size: tuple[int, int]) -> None:
        self.listing = listing
        self.size = size
        self._h5: Any = None
        self._splits: dict[str, Any] = {}  # split -> occsim.pixels.CheckedImages of this process's handle
        self._pid = -1

    def __len__(self) -> int:
        return len(self.listing)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_h5": None, "_splits": {}, "_pid": -1}

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        if self.listing.kind == "h5":
            image = self._h5_image(i)
        else:
            image, reason = decode_file(self.listing.files[i], self.size)
            if image is None:
                return i, None, reason
        return i, torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), ""

    def _h5_image(self, i: int) -> np.ndarray:
        from occsim.store import CheckedImages, open_h5
        from reid.inference.images import fit_to_input

        if self._h5 is None or self._pid != os.getpid():
            self._h5, self._splits, self._pid = open_h5(self.listing.root), {}, os.getpid()
        split, row = self.listing.h5_rows[i]
        if split not in self._splits:  # its handles looked up once: a lookup costs more than a read
            self._splits[split] = CheckedImages(self._h5, split)
        # Stored images are enlarged to the input size bilinearly, exactly as `reid eval` does;
        # each is checked against its checksums.
        return fit_to_input(self._splits[split].read(row), self.size)


def _collate(items: list[tuple[int, torch.Tensor | None, str]]) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    """-> (indices of the readable items, their uint8 batch [b, 3, H, W] or None, (index, reason) of the others)."""
    good = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, reason) for i, t, reason in items if t is None]
    batch = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], batch, bad


def _batches(n: int, batch_size: int, first_batch: int) -> list[list[int]]:
    return [list(range(start, min(n, start + batch_size))) for start in range(first_batch * batch_size, n, batch_size)]


# ------------------------------------------------------------------------------ spool


def _spool_manifest(config: EmbedConfig, listing: ImageList, checkpoint_fingerprint: str) -> dict[str, Any]:
    return {
        "checkpoint_fingerprint": checkpoint_fingerprint,
        "source": str(listing.root),
        "source_kind": listing.kind,
        "listing_digest": listing.digest(),
        "images": len(listing),
        "batch_size": config.batch_size,
        "chunk_rows": config.chunk_rows,
        "flip": config.flip,
        "local": config.local,
        "skip_bad": config.skip_bad,
    }


def _finished_chunks(spool: Path) -> list[Path]:
    """The chunk files of ``spool`` in order; they must be chunks 0..k-1 (atomic writes
    guarantee it unless someone deleted one)."""
    found = sorted((int(m.group(1)), p) for p in spool.iterdir() if (m := _CHUNK_NAME.match(p.name)))
    for expected, (number, path) in enumerate(found):
        if number != expected:
            raise BadInputError(f"{spool}: chunk {expected} is missing but {path.name} exists; delete {spool} to start over")
    return [p for _, p in found]


def _open_spool(config: EmbedConfig, manifest: dict[str, Any]) -> tuple[Path, list[Path]]:
    """Create the spool folder, or check and reuse an interrupted run's under ``--resume``."""
    out = Path(config.out)
    spool = spool_dir(out)
    if spool.is_dir():
        if not config.resume:
            raise BadInputError(
                f"{spool}: an interrupted `reid embed` left its finished batches here; pass --resume to continue it, "
                "or delete the folder to start over"
            )
        try:
            recorded = json.loads((spool / _SPOOL_MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise BadInputError(f"{spool}: its {_SPOOL_MANIFEST} is unreadable; delete the folder to start over") from exc
        differs = [f"{k} {recorded.get(k)!r} -> {v!r}" for k, v in manifest.items() if recorded.get(k) != v]
        if differs:
            raise BadInputError(
                f"{spool}: --resume needs the same checkpoint, source and options as the interrupted run "
                f"({'; '.join(differs)}); repeat them, or delete the folder to start over"
            )
        return spool, _finished_chunks(spool)
    if config.resume:
        logger.info("--resume: no interrupted run for %s; starting from the first image", out)
    try:
        spool.mkdir(parents=True)
    except OSError as exc:
        raise BadInputError(f"{out}: cannot write there ({exc.strerror or exc}); choose another --out") from exc
    atomic_write_json(spool / _SPOOL_MANIFEST, manifest, what="embedding manifest")
    return spool, []


def _write_chunk(path: Path, indices: list[int], parts: dict[str, list[np.ndarray]], bad: list[tuple[int, str]]) -> None:
    buffer = io.BytesIO()
    arrays = {k: np.concatenate(v) for k, v in parts.items() if v}
    np.savez(
        buffer,
        index=np.asarray(indices, dtype=np.int64),
        bad_index=np.asarray([i for i, _ in bad], dtype=np.int64),
        bad_reason=np.asarray([r for _, r in bad], dtype=str),
        **arrays,
    )
    atomic_write_bytes(path, buffer.getvalue(), what="embedding chunk")


def _read_chunk(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a chunk file (only ``keys`` when given: an .npz reads each array on demand,
    so the row counts of a large run do not read its features)."""
    try:
        with np.load(path) as data:
            return {k: data[k] for k in (keys or data.files)}
    except (OSError, ValueError, KeyError) as exc:
        raise BadInputError(f"{path}: unreadable chunk of an interrupted run; delete {path.parent} to start over") from exc


# -------------------------------------------------------------------------------- run


def run_embed(config: EmbedConfig, on_chunk: Callable[[int, int], None] | None = None) -> EmbedReport:
    """Embed every image of ``config.src`` into ``config.out`` (see the module docstring).

    Args:
        config: the options.
        on_chunk: called as ``on_chunk(chunk_number, images_done)`` after each chunk is safely
            on disk (progress reporting; tests use it to kill the process at a known point).

    Raises:
        BadInputError: a bad source, checkpoint or output (one that exists, without ``force``;
            one that is the source or the checkpoint); an unreadable image without
            ``skip_bad`` (nothing is written then, the finished chunks stay for ``--resume``);
            a spool folder left by another run.
    """
    from reid.inference.backends import open_backend, plan_backend
    from reid.inference.embedder import Embedder
    from reid.models.inference import file_fingerprint

    config.validate()
    out = Path(config.out)
    listing = list_images(config.src, config.splits)
    plan = plan_backend(config.backend, config.device, spool_dir(out) if config.resume else None)
    embedder = Embedder(config.checkpoint, device=plan.device, batch_size=config.batch_size, flip=config.flip)
    spec = embedder.spec
    fingerprint = file_fingerprint(config.checkpoint)
    spool, done_chunks = _open_spool(config, _spool_manifest(config, listing, fingerprint))

    per_chunk = config.batches_per_chunk
    n = len(listing)
    first_item = min(n, len(done_chunks) * per_chunk * config.batch_size)
    resumed_rows = sum(len(_read_chunk(p, ("index",))["index"]) for p in done_chunks)
    if done_chunks:
        logger.info("--resume: %d of %d images already embedded in %s", first_item, n, spool)
    started = time.perf_counter()
    computed = 0
    if first_item < n:
        try:
            runner = open_backend(plan, embedder, spool, fingerprint, resumed=bool(done_chunks))
            started = time.perf_counter()  # the rate is of embedding, without an ONNX export
            computed = _embed_remaining(config, listing, runner, spool, len(done_chunks), on_chunk)
        except BaseException as exc:
            _keep_or_drop_spool(spool, exc)
            raise
    seconds = time.perf_counter() - started

    chunks = _finished_chunks(spool)
    attrs = {
        "source": str(listing.root), "source_kind": listing.kind,
        "checkpoint": str(Path(config.checkpoint).resolve()), "checkpoint_fingerprint": fingerprint,
        "dataset_fingerprint": spec.dataset_fingerprint, "arch": spec.arch,
        "input_size": list(spec.input_size), "mean": list(spec.mean), "std": list(spec.std),
        "flip": bool(config.flip), "package_version": _package_version(),
        **({} if spec.obc_head_trained is None else {"obc_head_trained": spec.obc_head_trained}),
    }
    if spec.obc_head_trained is False:
        logger.info("%s: the OBC head was not trained (alpha = 1), so 'occlusion' holds NaN, no probability",
                    config.checkpoint)
    rows = [_read_chunk(p, ("index", "bad_index", "bad_reason")) for p in chunks]
    counts = [len(chunk["index"]) for chunk in rows]
    skipped = [(listing.names[int(i)], str(r)) for chunk in rows for i, r in _bad_of(chunk)]
    write_features(out, attrs, _blocks(chunks, listing, config.local), sum(counts), skipped, overwrite=config.force)
    shutil.rmtree(spool, ignore_errors=True)
    for path, reason in skipped:
        logger.warning("skipped %s: %s", listing.root / path if listing.kind != "h5" else path, reason)
    return EmbedReport(out=out, rows=sum(counts), skipped=skipped, resumed_rows=resumed_rows,
                       computed_rows=computed, seconds=seconds)


def _keep_or_drop_spool(spool: Path, exc: BaseException) -> None:
    """After a failure: a spool without a finished chunk is removed (nothing half-written is
    left); one with finished chunks stays, for ``--resume``, and the error says so."""
    chunks = _finished_chunks(spool) if spool.is_dir() else []
    if not chunks:
        shutil.rmtree(spool, ignore_errors=True)
        return
    kept = f"the finished batches stay in {spool}: run again with --resume to continue"
    if isinstance(exc, BadInputError):
        exc.args = (f"{exc.args[0]} ({kept})",)
    else:
        logger.warning("interrupted; %s", kept)


def _package_version() -> str:
    from reid import __version__

    return __version__


def _bad_of(chunk: dict[str, np.ndarray]) -> list[tuple[int, str]]:
    return list(zip(chunk["bad_index"].tolist(), chunk["bad_reason"].tolist()))


def _blocks(chunks: list[Path], listing: ImageList, local: bool) -> Iterator[FeatureBlock]:
    """The finished chunks as feature blocks, one chunk in memory at a time."""
    for path in chunks:
        chunk = _read_chunk(path)
        index = chunk["index"]
        if not len(index):
            continue
        yield FeatureBlock(
            global_feat=chunk["global"],
            local_feat=chunk["local"] if local else None,
            occlusion=chunk["occlusion"],
            names=[listing.names[i] for i in index.tolist()],
            pids=listing.pids[index] if listing.pids is not None else None,
            camids=listing.camids[index] if listing.camids is not None else None,
        )


def _embed_remaining(config: EmbedConfig, listing: ImageList, embedder: Any, spool: Path, first_chunk: int,
                     on_chunk: Callable[[int, int], None] | None) -> int:
    """Compute and write chunks ``first_chunk``.. to the end; returns the images embedded."""
    per_chunk = config.batches_per_chunk
    n = len(listing)
    batches = _batches(n, config.batch_size, first_chunk * per_chunk)
    loader = torch.utils.data.DataLoader(
        _Items(listing, embedder.spec.input_size),
        batch_sampler=batches,
        num_workers=cap_workers(config.workers),  # more processes than usable CPUs only contend
        collate_fn=_collate,
        pin_memory=embedder.device.type == "cuda",
    )
    chunk = first_chunk
    indices: list[int] = []
    bad: list[tuple[int, str]] = []
    parts: dict[str, list[np.ndarray]] = {"global": [], "occlusion": [], **({"local": []} if config.local else {})}
    computed = 0
    done = batches[0][0] if batches else n
    with tqdm(total=n, initial=done, desc="embed", unit="img", disable=None) as bar:
        for number, (good, images, failures) in enumerate(loader, start=first_chunk * per_chunk):
            for i, reason in failures:
                if not config.skip_bad:
                    where = listing.files[i] if listing.files else f"{listing.root}:{listing.names[i]}"
                    raise BadInputError(f"{where}: {reason}; replace or remove the file, or pass --skip-bad to skip unreadable images")
            bad += failures
            if images is not None:
                out = embedder.embed_prepared(images)
                indices += good
                parts["global"].append(out.global_feat)
                parts["occlusion"].append(out.occlusion)
                if config.local:
                    parts["local"].append(out.local_feat)
                computed += len(good)
            done += len(good) + len(failures)
            bar.update(len(good) + len(failures))
            last_of_chunk = (number + 1) % per_chunk == 0 or done >= n
            if last_of_chunk:
                _write_chunk(spool / f"chunk-{chunk:06d}.npz", indices, parts, bad)
                if on_chunk is not None:
                    on_chunk(chunk, done)
                chunk += 1
                indices, bad = [], []
                parts = {k: [] for k in parts}
    return computed
