"""`occsim`: make the synthetic set, generate the occluded HDF5 file, describe it, preview it.

Thin: each command parses its options, calls one library function and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.common import (
    OneLineErrorsGroup,
    force_option,
    handle_bad_input,
    handle_interrupt,
    setup_logging,
    version_option,
)
from cli.options import click_option, config_options, values_from_cli
from common.options import FORCE
from common.workers import PROCESS_WORKERS
from occsim.generate_config import GenerateConfig
from occsim.occluders import OccluderParams
from occsim.synth_config import SYNTH_OUT, SynthConfig


@click.group(cls=OneLineErrorsGroup)
@click.option("--verbose", is_flag=True, help="Debug logging.")
@version_option
def main(verbose: bool) -> None:
    """Materialise an Occluded Market-1501 (frozen splits + occlusion manifest) as HDF5."""
    setup_logging(verbose)


#: `occsim synth`'s options of SynthConfig (--out, --workers and --force are synthesize_market's).
SYNTH_OPTIONS: tuple[str, ...] = ("seed", "n_ids", "n_cameras", "images_per_id")


@main.command()
@click_option("out", SYNTH_OUT)
@config_options(SynthConfig, SYNTH_OPTIONS)
@click_option("workers", PROCESS_WORKERS)
@click_option("force", FORCE, help="Replace an existing non-empty --out.")
@handle_bad_input
@handle_interrupt
def synth(out: str, workers: int, force: bool, **options: Any) -> None:
    """Write the built-in synthetic pedestrian set in the Market-1501 layout."""
    from occsim.synth import synthesize_market

    config = SynthConfig(**values_from_cli(SynthConfig, SYNTH_OPTIONS, options))
    summary = synthesize_market(SYNTH_OUT.parse(out, "--out"), config, workers=workers, force=force)
    click.echo(f"wrote {summary.root}: train {summary.n_train_ids} ids / {summary.n_train_images} images, "
               f"query {summary.n_query_images}, gallery {summary.n_gallery_images} "
               f"(incl. {summary.n_junk} junk, {summary.n_distractors} distractors), {summary.n_cameras} cameras")


#: `occsim generate`'s options of GenerateConfig, around the occluder parameters (in --help order).
SOURCE_OPTIONS: tuple[str, ...] = ("src", "layout", "variant", "split_seed", "out", "types")
RUN_OPTIONS: tuple[str, ...] = ("seed", "workers", "occlude", "occlude_gallery", "image_size", "force", "skip_bad")
OCCLUDER_OPTIONS: tuple[str, ...] = ("patch", "area_min", "area_max", "ratio_min", "ratio_max")


@main.command()
@config_options(GenerateConfig, SOURCE_OPTIONS)
@config_options(OccluderParams, OCCLUDER_OPTIONS)
@config_options(GenerateConfig, RUN_OPTIONS)
@handle_bad_input
@handle_interrupt
def generate(**options: Any) -> None:
    """Write the occluded dataset (clean + occluded rows per split) to an HDF5 file."""
    from occsim.generate import generate as run_generate

    occluder = OccluderParams(**values_from_cli(OccluderParams, OCCLUDER_OPTIONS, options))
    config = GenerateConfig(occluder=occluder, **values_from_cli(GenerateConfig, SOURCE_OPTIONS + RUN_OPTIONS, options))
    report = run_generate(config, echo=click.echo)
    click.echo(report.summary_text())


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@handle_bad_input
def info(file: Path) -> None:
    """Validate FILE (every image's checksum included) and print its splits, counts, generator
    arguments and fingerprint."""
    from occsim.info import describe
    from occsim.store import read_store, verify_pixels

    store = read_store(file)
    click.echo(describe(store, verified=verify_pixels(file)))


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("data/preview.png"), show_default=True,
              help="PNG to write.")
@click.option("--n", "n", type=int, default=16, show_default=True, help="Clean / occluded pairs to show.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which rows are picked.")
@force_option
@handle_bad_input
def preview(file: Path, out: Path, n: int, seed: int, force: bool) -> None:
    """Write a PNG grid of clean / occluded pairs of FILE with the boxes drawn."""
    from occsim.preview import write_preview

    click.echo(f"wrote {write_preview(file, out, n=n, seed=seed, force=force)}")


@main.command("split-val")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("data/validation.h5"), show_default=True,
              help="The validation file to write.")
@click.option("--fraction", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Share of the training identities held out as validation query/gallery.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which identities are held out.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out.")
@handle_bad_input
def split_val(file: Path, out: Path, fraction: float, seed: int, force: bool) -> None:
    """Carve a validation file out of FILE's training identities, for model selection.

    Its train split keeps the other training identities; its query/gallery come from the
    held-out ones, so `reid train --data OUT --eval-every N` selects best.pt without ever
    seeing FILE's test split.
    """
    from occsim.info import describe
    from occsim.store import read_store
    from occsim.validation import carve_validation

    click.echo(describe(read_store(carve_validation(file, out, fraction=fraction, seed=seed, force=force))))


if __name__ == "__main__":
    main()
