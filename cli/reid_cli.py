"""`reid`: train, evaluate and inspect AlignedReID (+ OBC) models on an occluded-reid file.

Each subcommand lives in its own module and is imported only when it runs, so that
`reid --help` answers without importing torch.
"""

from __future__ import annotations

import importlib

import click

from cli.common import OneLineErrorsGroup, setup_logging, version_option

# name -> "module:attribute" of the Click command
COMMANDS: dict[str, str] = {
    "train": "cli.reid_train:train_command",
    "eval": "cli.reid_eval:eval_command",
    "saliency": "cli.reid_saliency:saliency_command",
    "rank": "cli.reid_rank:rank_command",
    "study": "cli.reid_study:study_command",
    "curves": "cli.reid_curves:curves_command",
    "embed": "cli.reid_embed:embed_command",
    "search": "cli.reid_search:search_command",
    "export": "cli.reid_export:export_command",
    "recipes": "cli.reid_recipes:recipes_command",
}

SHORT_HELP: dict[str, str] = {
    "train": "Train AlignedReID (+ OBC loss) on the frozen splits.",
    "eval": "Evaluate a checkpoint with the Market-1501 protocol (CMC, mAP, mINP).",
    "saliency": "Grad-CAM maps on occluded queries, and the saliency mass inside the box.",
    "rank": "Top-10 gallery rows per query, green for a match, red for a miss.",
    "study": "Run a named experiment grid (table1, alpha, occluders, recipe) into a report.",
    "curves": "Validation mAP of runs against minutes of 2-core training (learning curves).",
    "embed": "Features of your own crops (folder, list or .h5) into a features file.",
    "search": "Nearest gallery images of each query: JSON ranked lists and PNG sheets.",
    "export": "Export a checkpoint to ONNX or TorchScript, checked against PyTorch.",
    "recipes": "The named recipes of `reid train --recipe` and what each sets.",
}


class LazyGroup(OneLineErrorsGroup):
    """A Click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SHORT_HELP[name]) for name in COMMANDS])


@click.group(cls=LazyGroup)
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@version_option
def main(verbose: bool) -> None:
    """Person re-identification under occlusion: AlignedReID + OBC."""
    setup_logging(verbose)


if __name__ == "__main__":
    main()
