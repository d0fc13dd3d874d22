"""Materialise an occluded dataset: source folder -> frozen HDF5 file (docs/design.md, "The HDF5 file").

How the work is split:

1. The main process parses the source (:mod:`occsim.sources`), prints its counts and, with
   ``skip_bad``, has the workers decode every image once to find the unreadable ones.
2. The workers draw every occlusion box (and passer-by source row, :mod:`occsim.plan`). They
   depend only on the per-image generator ``numpy.random.default_rng([seed, split_index,
   clean_row, type_code])``, the stored size and the pids, never on the pixels, so the whole
   manifest is known before any pixel is written -- the writer needs it up front -- and the
   bytes do not depend on how many workers there are.
3. The workers decode (BGR->RGB, grayscale and RGBA converted to 3 channels), resize to the
   stored size (INTER_AREA when shrinking, INTER_LINEAR when growing) and occlude chunks of
   images (a ``pedestrian`` row's passer-by decoded again from its path); the one writer
   (this process) streams the blocks into the HDF5 file as they come back, in order, through
   :class:`occsim.store.StoreWriter`, which renames the file into place only when it is
   complete. The pixels travel through a ring of slot files in
   /dev/shm rather than loky's pipe (see :mod:`occsim.spool`; the pipe costs more CPU than the
   decoding), and the ring bounds how many chunks wait for the writer.

Interruptions: SIGINT and SIGTERM become KeyboardInterrupt while a run is going; the
temporary HDF5 file and the slot folder are removed and the workers killed. After a SIGKILL
the next run sweeps the dead run's slot folder.

Occlusion is applied after resizing, so boxes are in stored pixels and ``patch=50`` hides
50x50 of a 128x64 image, as the paper did on Market's native crops.

Row layout of a split with ``n`` clean images and occluder types ``t_1..t_T`` (in code
order: mean, black, random, pedestrian): rows ``0..n-1`` are the clean images in source
order, rows ``k*n .. (k+1)*n-1`` their copies occluded by ``t_k``, in the same order,
``clean_index`` pointing back at the clean row (``occ_source`` at a passer-by's row).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from common.atomic import check_output
from common.decoding import decode_image
from common.errors import BadInputError
from common.workers import resolve_workers
from occsim.generate_config import DEFAULT_OUT, RNG_SCHEME, GenerateConfig  # noqa: F401 (re-exported)
from occsim.occluders import OCCLUDERS, fill_box
from occsim.pedestrian import paste_region
from occsim.plan import build_manifest, pedestrian_paths, pedestrian_pools, plan_boxes
from occsim.schema import REAL_OCCLUSION, SPLITS
from occsim.sources import Source, format_summary, read_source, summarize_source
from occsim.spool import Slot, SlotFull, open_spool, wait_for_slot
from occsim.store import StoreWriter
from occsim.synth_config import SYNTH_OUT

logger = logging.getLogger(__name__)

DEFAULT_MARKET = Path("data/Market-1501-v15.09.15")
DEFAULT_SYNTHETIC: Path = SYNTH_OUT.default


@dataclass(frozen=True)
class SkippedImage:
    """A source image left out under ``skip_bad``: its path relative to the source root and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class GenerateReport:
    """What :func:`generate` wrote.

    Attributes:
        rows: per split, the row count of each kind: "clean" and one entry per occluder type.
        images: source images decoded (skipped ones excluded).
        seconds: wall time of the run, source parsing included, making the synthetic source not.
    """

    out: Path
    source: Path
    layout: str
    fingerprint: str
    rows: dict[str, dict[str, int]]
    images: int
    seconds: float
    workers: int
    skipped: tuple[SkippedImage, ...] = field(default=())

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.inf

    def summary_text(self) -> str:
        """A few lines for a person: where, how many rows of which kind, how fast, what was skipped."""
        lines = [f"wrote {self.out} (fingerprint {self.fingerprint[:16]})"]
        for split, kinds in self.rows.items():
            if not sum(kinds.values()):
                lines.append(f"  {split:<8}{0:>7} rows (the source has no {split} split)")
                continue
            parts = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
            lines.append(f"  {split:<8}{sum(kinds.values()):>7} rows: {parts}")
        lines.append(f"  {self.images} source images in {self.seconds:.1f} s "
                     f"({self.images_per_second:.0f} images/s, {self.workers} workers)")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} unreadable images:")
            lines.extend(f"    {s.path}: {s.reason}" for s in self.skipped)
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# Work done in the worker processes (also callable in-process): pure functions of their args.


def _single_threaded_cv2(in_worker: bool) -> None:
    # Worker processes already use every core; cv2's own threads would only contend.
    if in_worker:
        cv2.setNumThreads(0)


def _check_chunk(root: str, paths: list[str], image_size: tuple[int, int], in_worker: bool) -> list[tuple[str, str]]:
    """(path, reason) of every image of ``paths`` that cannot be decoded."""
    _single_threaded_cv2(in_worker)
    failures = []
    for rel in paths:
        image, reason = decode_image(os.path.join(root, rel), image_size)
        if image is None:
            failures.append((rel, reason))
    return failures


@dataclass
class _Chunk:
    """A worker's answer for ``n`` images and ``T`` occluder types: exactly one of

    - ``block``: the pixels, shape [1 + T, n, H, W, 3] (the clean images, then one slab per type);
    - ``spooled``: True when that block is in the task's slot file instead;
    - ``failures``: (path, reason) of the first image that could not be used.
    """

    block: np.ndarray | None = None
    spooled: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)


def _process_chunk(root: str, paths: list[str], image_size: tuple[int, int], types: tuple[str, ...],
                   boxes: np.ndarray, in_worker: bool, slot: Slot | None = None,
                   passers_by: list[str] | None = None) -> _Chunk:
    """Decode, resize and occlude ``paths`` (``boxes`` shape [T, n, 4] from :func:`occsim.plan.plan_boxes`;
    ``passers_by`` the source path of each row's ``pedestrian`` copy, decoded here).

    With a ``slot`` the pixels are written to the slot's file, one row at a time, and only
    a flag goes back: sending the blocks through loky's pipe (pickle, copy, unpickle) costs
    more CPU than decoding them. Stops at the first bad image.
    """
    _single_threaded_cv2(in_worker)
    height, width = int(image_size[0]), int(image_size[1])
    n, copies = len(paths), 1 + len(types)
    row_bytes = height * width * 3
    fills = [OCCLUDERS[name].fill_colour if name in OCCLUDERS else None for name in types]  # None: pedestrian
    scratch = np.empty((height, width, 3), dtype=np.uint8)
    block = None if slot else np.empty((copies, n, height, width, 3), dtype=np.uint8)
    fd = -1
    if slot is not None:
        wait_for_slot(slot)
        fd = os.open(slot.path, os.O_WRONLY | os.O_CREAT, 0o600)  # no O_TRUNC: keep the pages

    def put(copy: int, i: int, image: np.ndarray) -> None:
        if block is not None:
            block[copy, i] = image
        elif os.pwrite(fd, image, (copy * n + i) * row_bytes) != row_bytes:
            raise SlotFull

    box_lists = boxes.tolist()  # [T][n][4] Python ints: cheaper to index than the array
    try:
        for i, rel in enumerate(paths):
            image, reason = decode_image(os.path.join(root, rel), image_size)
            if image is None:
                return _Chunk(failures=[(rel, reason)])
            put(0, i, image)
            colours: dict[Any, np.ndarray] = {}  # mean and random share the mean colour
            for t, fill_colour in enumerate(fills):
                if fill_colour is None:  # a region of another identity's clean image, as stored
                    passer_by, reason = decode_image(os.path.join(root, passers_by[i]), image_size)
                    if passer_by is None:
                        return _Chunk(failures=[(passers_by[i], reason)])
                    put(1 + t, i, paste_region(image, passer_by, box_lists[t][i], out=scratch))
                    continue
                if fill_colour not in colours:
                    colours[fill_colour] = fill_colour(image)
                put(1 + t, i, fill_box(image, box_lists[t][i], colours[fill_colour], out=scratch))
    except (SlotFull, OSError) as exc:
        if slot is None or (isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT)):
            raise
        return _process_chunk(root, paths, image_size, types, boxes, in_worker, None, passers_by)
    finally:
        if fd >= 0:
            os.close(fd)
    return _Chunk(block=block, spooled=slot is not None)


# ----------------------------------------------------------------------------------------
# The main process.


def _start_workers_deaf_to_sigint(n_workers: int) -> None:
    """Start the loky workers with SIGINT ignored.

    Ctrl-C reaches every process of the terminal's foreground group: workers that heard it would
    each print a KeyboardInterrupt traceback (often while still importing). An ignored signal
    stays ignored through fork and exec (Python keeps an inherited SIG_IGN), so this process
    ignores SIGINT while the workers are forked, from a helper thread, and takes it back as soon
    as they exist (a few milliseconds; on Linux, seen in /proc); it alone then stops the run and
    kills them. The same workers serve every later :func:`_parallel` call (loky reuses them).
    """
    if n_workers <= 1 or threading.current_thread() is not threading.main_thread():
        return
    before = _loky_children()
    done, failures = threading.Event(), []

    def start() -> None:
        try:
            with _parallel(n_workers, (delayed(os.getpid)() for _ in range(n_workers))) as results:
                list(results)
        except BaseException as exc:  # re-raised below, in the main thread
            failures.append(exc)
        finally:
            done.set()

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        threading.Thread(target=start, name="occsim-start-workers", daemon=True).start()
        while not done.wait(0.002) and len(_loky_children() - before) < n_workers:
            pass
    finally:
        signal.signal(signal.SIGINT, previous)
    done.wait()  # interruptible: Ctrl-C from here on stops the run
    if failures:
        raise failures[0]


def _loky_children() -> set[int]:
    """Ids of this process's children that already run a loky worker (Linux; empty elsewhere,
    and then the caller waits for the workers' first answers instead)."""
    found = set()
    for listing in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with contextlib.suppress(OSError):
            for pid in Path(listing).read_text().split():
                with contextlib.suppress(OSError):
                    if b"popen_loky_posix" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        found.add(int(pid))
    return found


def resolve_source(src: Path | None, workers: int = 1, echo: Callable[[str], None] = logger.info) -> Path:
    """The source folder: ``src``, else the real Market-1501 under data/, else the synthetic set.

    The synthetic set is made in ``data/synthetic-market`` when it is not there yet (it is
    written atomically, so an existing folder is complete) and reused otherwise.
    """
    if src is not None:
        return Path(src)
    if DEFAULT_MARKET.exists():
        echo(f"--src not given: using {DEFAULT_MARKET}")
        return DEFAULT_MARKET
    if DEFAULT_SYNTHETIC.exists():
        echo(f"--src not given and no {DEFAULT_MARKET}: reusing the built-in synthetic set in {DEFAULT_SYNTHETIC}")
        return DEFAULT_SYNTHETIC
    from occsim.synth import SynthConfig, synthesize_market  # only needed on this path

    echo(f"--src not given and no {DEFAULT_MARKET}: making the built-in synthetic set in {DEFAULT_SYNTHETIC}")
    synthesize_market(DEFAULT_SYNTHETIC, SynthConfig(), workers=workers)
    return DEFAULT_SYNTHETIC


class _StopSignal:
    """Remembers an interrupting signal.

    The handler raises KeyboardInterrupt, but Python drops an exception raised while a
    weakref callback or ``__del__`` runs, so the main loop also calls :meth:`check` after
    every chunk.
    """

    def __init__(self) -> None:
        self.signum = 0

    def check(self) -> None:
        if self.signum:
            raise KeyboardInterrupt(f"signal {self.signum}")


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_StopSignal]:
    """SIGINT (Ctrl-C) and SIGTERM (a plain ``kill``) stop the run through KeyboardInterrupt,
    so that the clean-up code runs (temporary file, spool folder, workers)."""
    stop = _StopSignal()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def interrupt(signum: int, frame: Any) -> None:
        if stop.signum:  # already stopping: a second Ctrl-C must not cut the clean-up short
            return
        stop.signum = signum
        raise KeyboardInterrupt(f"signal {signum}")

    def quiet_when_stopping(unraisable: Any) -> None:
        # Python prints ("Exception ignored in ...") and drops an exception raised while a weakref
        # callback or __del__ runs; stop.check() raises this one again from the main loop.
        if not (stop.signum and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            previous_hook(unraisable)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, quiet_when_stopping
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = previous_hook


@contextlib.contextmanager
def _parallel(n_workers: int, tasks: Iterable[Any]) -> Iterator[Iterator[Any]]:
    """Results of ``tasks`` in order, computed by ``n_workers`` loky processes (in-process for 1).

    Two tasks per worker are dispatched ahead, one at a time (what bounds the pixels in flight
    is the slot ring, see :class:`occsim.spool.Spool`). Leaving the block early (an error, Ctrl-C) cancels
    the remaining tasks and kills the busy workers.
    """
    # batch_size=1: a task is already a chunk, and the slot ring (see occsim.spool) relies on each
    # task being sent back on its own, in order -- an auto-sized batch holding chunk k and
    # k + n_slots would wait for itself.
    results = Parallel(n_jobs=n_workers, backend="loky", return_as="generator", pre_dispatch="2*n_jobs",
                       batch_size=1)(tasks)
    try:
        yield results
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joblib warns that the cancelled tasks were not used
            results.close()


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + size)) for start in range(0, n, size)]


def _bad_image_error(root: Path, path: str, reason: str) -> BadInputError:
    return BadInputError(f"{root / path}: {reason}; replace or remove the file, "
                         f"or pass --skip-bad to skip unreadable images")


def _find_bad_images(source: Source, config: GenerateConfig, n_workers: int, stop: _StopSignal) -> list[SkippedImage]:
    """Decode every image once (in the workers) and list those that cannot be used."""
    root, in_worker = str(source.root.resolve()), n_workers > 1
    paths = [r.path for records in source.splits.values() for r in records]
    tasks = (delayed(_check_chunk)(root, paths[a:b], config.image_size, in_worker)
             for a, b in _chunks(len(paths), config.chunk_size))
    skipped: list[SkippedImage] = []
    with _parallel(n_workers, tasks) as results:
        for failures in results:
            stop.check()
            skipped.extend(SkippedImage(path, reason) for path, reason in failures)
    return skipped


def _row_counts(records: tuple, types: tuple[str, ...]) -> dict[str, int]:
    """Rows of each kind of a split: "clean", "real" (when any) and one entry per occluder type."""
    real = sum(1 for r in records if r.occluded)
    return {"clean": len(records) - real, **({REAL_OCCLUSION: real} if real else {}),
            **{t: len(records) for t in types}}


def _read(src: Path, config: GenerateConfig) -> Source:
    return read_source(src, layout=config.layout, variant=config.variant, split_seed=config.split_seed)


def generate(config: GenerateConfig, echo: Callable[[str], None] = logger.info) -> GenerateReport:
    """Write the occluded dataset described by ``config``; see the module docstring.

    Args:
        config: what to generate.
        echo: receives the lines a person wants before the work starts (the source's counts,
            which source was picked); the CLI prints them.

    Raises:
        BadInputError: invalid options, a bad source folder, an unreadable image (unless
            ``skip_bad``), or an output that exists (without ``force``) or cannot be written.
            Nothing is left at ``config.out`` then.
    """
    started = time.perf_counter()
    config.validate()
    out = Path(config.out)
    n_workers = resolve_workers(config.workers)
    # Fail fast, before any long work (making the synthetic set, decoding): a given source
    # is parsed first (it is only listed), then the output is checked.
    source = _read(config.src, config) if config.src is not None else None
    check_output(out, (config.src,), config.force, "HDF5 file")  # never over the source (a .csv), even with --force
    if source is None:
        resolving = time.perf_counter()
        root = resolve_source(None, n_workers, echo)
        started += time.perf_counter() - resolving  # making the synthetic set is not generating
        source = _read(root, config)
    echo(format_summary(source, summarize_source(source)))
    types, image_size = config.ordered_types, (int(config.image_size[0]), int(config.image_size[1]))
    if not types or not config.occluded_splits:
        logger.warning("no occluder type or no occluded split: the file will hold clean rows only")

    _start_workers_deaf_to_sigint(n_workers)
    with _stop_on_signals() as stop:
        skipped: list[SkippedImage] = []
        if config.skip_bad:
            skipped = _find_bad_images(source, config, n_workers, stop)
            for bad in skipped:
                logger.warning("skipping %s: %s", source.root / bad.path, bad.reason)
            had_rows = {s for s, records in source.splits.items() if records}  # a test-only source has no train
            source = source.without({bad.path for bad in skipped})
            empty = [s for s, records in source.splits.items() if not records and s in had_rows]
            if empty:
                raise BadInputError(f"{source.root}: no readable image left in the {', '.join(empty)} split; "
                                    f"check the source folder")

        split_types = {s: types if s in config.occluded_splits else () for s in SPLITS}
        pools = pedestrian_pools(source, split_types)  # refuses a pedestrian split of one identity
        plans = [(s, a, b) for s in SPLITS for a, b in _chunks(len(source.splits[s]), config.chunk_size)]
        plan_tasks = (delayed(plan_boxes)(config.seed, SPLITS.index(s), a, [r.pid for r in source.splits[s][a:b]],
                                          split_types[s], config.occluder, image_size, pools[s]) for s, a, b in plans)
        with _parallel(n_workers, plan_tasks) as results:
            chunk_plans = []  # (boxes [T, b - a, 4], sources [T, b - a]) per entry of plans
            for plan in results:
                stop.check()
                chunk_plans.append(plan)
        # An empty split (the train split of a test-only benchmark) has no chunk and no box.
        manifests = {s: build_manifest(s, source, split_types[s], [c for (p, _, _), c in zip(plans, chunk_plans)
                                                                   if p == s]) for s in SPLITS}

        chunk_bytes = config.chunk_size * (1 + len(types)) * image_size[0] * image_size[1] * 3
        with StoreWriter(out, image_size=image_size, force=config.force) as writer, \
                open_spool(n_workers, chunk_bytes) as spool, \
                tqdm(total=len(source), unit="img", desc="generate", disable=None if config.progress else True) as bar:
            for split in SPLITS:
                writer.add_split(split, manifests[split])
            # Absolute: reused loky workers keep the working folder they were started in.
            root, in_worker = str(source.root.resolve()), n_workers > 1
            tasks = (delayed(_process_chunk)(root, [r.path for r in source.splits[s][a:b]], image_size,
                                             split_types[s], boxes, in_worker, spool.slot(k) if spool else None,
                                             pedestrian_paths(source.splits[s], split_types[s], sources))
                     for k, ((s, a, b), (boxes, sources)) in enumerate(zip(plans, chunk_plans)))
            with _parallel(n_workers, tasks) as results:
                for k, ((split, a, b), chunk) in enumerate(zip(plans, results)):
                    if chunk.failures:
                        raise _bad_image_error(source.root, *chunk.failures[0])
                    shape = (1 + len(split_types[split]), b - a, *image_size, 3)
                    block = spool.read(k, shape) if chunk.spooled else chunk.block
                    n_clean = len(source.splits[split])
                    for copy in range(shape[0]):
                        writer.write_images(split, copy * n_clean + a, block[copy])
                    del block  # unmap before the slot is handed back
                    if spool:
                        spool.consumed(k + 1)
                    bar.update(b - a)
                    stop.check()
            fingerprint = writer.finish(source=source.name, seed=int(config.seed),
                                        generator_args=config.generator_args(source, (s.path for s in skipped)))

    rows = {s: _row_counts(source.splits[s], split_types[s]) for s in SPLITS}
    return GenerateReport(out=out, source=source.root, layout=source.layout, fingerprint=fingerprint, rows=rows,
                          images=len(source), seconds=time.perf_counter() - started, workers=n_workers,
                          skipped=tuple(skipped))

