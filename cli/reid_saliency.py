"""`reid saliency`: Grad-CAM maps of one or more checkpoints on occluded queries (thin Click layer)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from cli.common import handle_bad_input
from occsim.errors import BadInputError

logger = logging.getLogger(__name__)


def parse_ids(value: str | None) -> list[int] | None:
    """"12,34" -> [12, 34]; None stays None."""
    if value is None:
        return None
    try:
        ids = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise BadInputError(f"--ids {value!r}: expected comma-separated identity numbers, e.g. 12,34") from None
    if not ids:
        raise BadInputError(f"--ids {value!r}: no identity given; e.g. --ids 12,34")
    return ids


def model_names(checkpoints: list[Path], names: tuple[str, ...]) -> list[str]:
    """--name values, or each checkpoint's run folder name (made unique with a suffix)."""
    if names:
        if len(names) != len(checkpoints):
            raise BadInputError(
                f"--name given {len(names)} times for {len(checkpoints)} --checkpoint; give one name per checkpoint or none"
            )
        return list(names)
    out: list[str] = []
    for path in checkpoints:
        base = path.parent.name or path.stem
        name, suffix = base, 2
        while name in out:
            name, suffix = f"{base}-{suffix}", suffix + 1
        out.append(name)
    return out


@click.command("saliency")
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/occluded.h5"), show_default=True,
              help="The occluded-reid HDF5 file made by `occsim generate`.")
@click.option("--checkpoint", "checkpoints", type=click.Path(path_type=Path), multiple=True,
              help="A checkpoint to explain; repeat for several models (e.g. the baseline, then the OBC model). "
                   "Default: the newest run under runs/.")
@click.option("--name", "names", multiple=True, help="Label per --checkpoint, in the same order. Default: run folder names.")
@click.option("--ids", default=None, metavar="PID,PID",
              help="Query identities to show (the first occluded image of each). Default: --n drawn at random.")
@click.option("--n", "n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Identities drawn at random (with --seed) when --ids is not given.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--type", "occ_type", default="mean", show_default=True, help="Occluder type of the queries (mean, black, random).")
@click.option("--target", type=click.Choice(["similarity", "obc"]), default="similarity", show_default=True,
              help="similarity: cosine similarity of the occluded image's embedding to its clean original's; "
                   "obc: the OBC head's occluded logit.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--scale", type=click.IntRange(min=1, max=8), default=3, show_default=True, help="Image upscaling in the figures.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/saliency"), show_default=True,
              help="Folder for the per-identity PNGs, the contact sheet and box_mass.json.")
@handle_bad_input
def saliency_command(
    data: Path,
    checkpoints: tuple[Path, ...],
    names: tuple[str, ...],
    ids: str | None,
    n: int,
    seed: int,
    occ_type: str,
    target: str,
    device: str,
    batch_size: int,
    scale: int,
    out: Path,
) -> None:
    """Grad-CAM (Figure 2 of the paper): clean image, occluded copy, and each model's saliency on
    the occluded copy, with the occlusion box; prints the share of saliency inside the box."""
    from occsim.store import read_store
    from reid.distance import resolve_device
    from reid.engine.features import input_size_from_extra
    from reid.engine.runs import find_latest_checkpoint
    from reid.models.checkpoint import load_model
    from reid.saliency import (
        BOX_MASS_JSON,
        box_mass_summary,
        format_box_mass_table,
        saliency_for_queries,
        select_occluded_queries,
        write_box_mass_json,
        write_saliency_figures,
    )

    paths = list(checkpoints)
    if not paths:
        paths = [find_latest_checkpoint()]
        click.echo(f"checkpoint: {paths[0]}", err=True)
    labels = model_names(paths, names)
    pid_list = parse_ids(ids)
    store = read_store(data)
    rows = select_occluded_queries(store.splits["query"], data, occ_type, ids=pid_list, n=n, seed=seed)
    dev = resolve_device(device)
    models = []
    for label, path in zip(labels, paths):
        model, checkpoint = load_model(path, device=dev)
        if checkpoint.dataset_fingerprint != store.fingerprint:
            logger.warning("%s was trained on data with another fingerprint than %s: the splits may differ", path, data)
        models.append((label, model, input_size_from_extra(checkpoint.extra)))
    result = saliency_for_queries(models, data, rows, target=target, device=dev, batch_size=batch_size)
    figures = write_saliency_figures(result, out, scale=scale)
    summary = box_mass_summary(
        result,
        extra={
            "data": str(data),
            "data_fingerprint": store.fingerprint,
            "checkpoints": {label: str(path) for label, path in zip(labels, paths)},
            "input_size": {label: list(size) for label, _, size in models},
        },
    )
    json_path = write_box_mass_json(summary, out / BOX_MASS_JSON)
    click.echo(f"share of Grad-CAM mass inside the occlusion box ({len(rows)} occluded:{occ_type} queries, target {target}):")
    click.echo(format_box_mass_table(summary))
    click.echo(f"wrote {len(figures) - 1} identity figures, {figures[-1]} and {json_path}", err=True)
