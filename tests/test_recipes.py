"""Named recipes and config files (reid.recipes): what each name sets, composition, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import BadInputError
from reid.engine.config import TrainConfig
from reid.recipes import apply_recipes, describe_recipes, read_config_file, recipe_names
from reid.study_config import DEFAULT_RECIPE, RECIPE_CELLS, recipe_cell


def test_every_grid_row_is_a_recipe_and_trains_as_the_study_does() -> None:
    names = recipe_names()
    assert {c.name for c in RECIPE_CELLS} <= set(names) and {"cpu", "cpu-imagenet"} <= set(names)
    base = apply_recipes(TrainConfig(), ("cpu",))
    for cell in RECIPE_CELLS:
        assert apply_recipes(TrainConfig(), ("cpu", cell.name)) == cell.train_config(base)


def test_the_default_recipe_is_the_defaults_and_paper_obc_is_the_papers() -> None:
    assert apply_recipes(TrainConfig(), (DEFAULT_RECIPE,)) == TrainConfig()
    paper = apply_recipes(TrainConfig(), ("cpu", "paper-obc"))
    assert (paper.train_on, paper.alpha, paper.random_erasing, paper.arch) == ("both", 0.8, False, "resnet18")
    assert paper.epochs == 29  # the cpu sizing's 58 epochs, halved: pairs show two images per item


def test_sizings_set_what_they_say() -> None:
    cpu = apply_recipes(TrainConfig(), ("cpu",))
    assert (cpu.arch, cpu.pretrained, cpu.input_size, cpu.last_stride, cpu.device) == (
        "resnet18", None, (128, 64), 2, "cpu")
    imagenet = apply_recipes(TrainConfig(), ("cpu-imagenet",))
    assert (imagenet.arch, imagenet.pretrained, imagenet.input_size, imagenet.last_stride) == (
        "mobilenet_v2", "imagenet", (256, 128), 2)


def test_unknown_recipe_lists_the_known_ones() -> None:
    with pytest.raises(BadInputError, match=r"--recipe 'papr': unknown; use one or more of cpu, cpu-imagenet, "):
        apply_recipes(TrainConfig(), ("papr",))


def test_describe_names_every_recipe_and_its_settings() -> None:
    rows = {name: sets for name, _, sets in describe_recipes()}
    assert set(rows) == set(recipe_names())
    assert "alpha=0.8" in rows["paper-obc"] and "train_on=both" in rows["paper-obc"]
    assert "erasing_labels=True" in rows["erasing-obc"]
    assert rows[DEFAULT_RECIPE] == "the defaults"


def test_config_file_json_yaml_and_a_runs_config_json(tmp_path: Path) -> None:
    plain = tmp_path / "options.json"
    plain.write_text(json.dumps({"arch": "resnet18", "input_size": [64, 32], "force": True}))
    assert read_config_file(plain) == {"arch": "resnet18", "input_size": [64, 32]}  # force is the command line's
    yaml_file = tmp_path / "options.yaml"
    yaml_file.write_text("arch: resnet34\nlr: 0.001\nmilestones: [10, 20]\n")
    assert read_config_file(yaml_file) == {"arch": "resnet34", "lr": 0.001, "milestones": [10, 20]}
    config = recipe_cell("erasing-obc").train_config(TrainConfig(arch="resnet18"))
    run = tmp_path / "config.json"
    run.write_text(json.dumps({"train": config.to_dict(), "model": {}, "dataset_fingerprint": "x"}))
    assert TrainConfig(**read_config_file(run)) == config


@pytest.mark.parametrize("content, message", [
    ("{not json", r"cannot be read"),
    ("[1, 2]", r"expected a mapping of training options, got list"),
    ('{"arhc": "resnet18"}', r"unknown options \['arhc'\]"),
])
def test_bad_config_files_get_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BadInputError, match=message) as info:
        read_config_file(path)
    assert "\n" not in str(info.value) and "bad.json" in str(info.value)
    with pytest.raises(BadInputError, match="no such file"):
        read_config_file(tmp_path / "missing.json")


def test_layers_defaults_recipes_file_then_command_line(tmp_path: Path) -> None:
    from reid.recipes import layered_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"train": {"lr": 0.002, "epochs": 7, "out": "runs/old", "data": "a.h5"}}))
    config = layered_config(("cpu", "paper-obc"), path, {"epochs": 3, "out": "runs/new"})
    assert (config.arch, config.alpha, config.lr, config.epochs, config.out, config.data) == (
        "resnet18", 0.8, 0.002, 3, "runs/new", "a.h5")
    assert layered_config((), None, {}) == TrainConfig()


def test_recipe_and_config_file_reproduce_the_long_flags_run(tiny_store: Path, tmp_path: Path) -> None:
    """`--recipe cpu,paper-obc` and `--config RUN/config.json` train exactly the run the long flags do."""
    import torch
    from click.testing import CliRunner

    from cli.reid_train import train_command
    from reid.models import load_checkpoint

    tiny = ["--size", "64x32", "--batch-p", "2", "--batch-k", "2", "--max-steps-per-epoch", "2", "--eval-every", "0"]
    long_flags = ["--arch", "resnet18", "--pretrained", "none", "--last-stride", "2", "--stripes", "4",
                  "--epochs", "2", "--warmup-epochs", "1", "--lr", "1e-3", "--schedule", "cosine",
                  "--retrieval-feature", "bn", "--workers", "0", "--device", "cpu",
                  "--alpha", "0.8", "--train-on", "both", "--no-random-erasing", "--milestones", "20,35"]
    runs = {
        "long": long_flags,
        "recipe": ["--recipe", "cpu,paper-obc", "--epochs", "2"],
        "config": ["--config", str(tmp_path / "long" / "config.json")],
    }
    for name, args in runs.items():
        result = CliRunner().invoke(train_command, ["--data", str(tiny_store), "--out", str(tmp_path / name),
                                                    *args, *tiny])
        assert result.exit_code == 0, result.output
    checkpoints = {name: load_checkpoint(tmp_path / name / "last.pt") for name in runs}
    reference = checkpoints["long"]
    for name in ("recipe", "config"):
        other = checkpoints[name]
        assert other.state_dict.keys() == reference.state_dict.keys()
        assert all(torch.equal(other.state_dict[k], reference.state_dict[k]) for k in reference.state_dict), name
        mine = {k: v for k, v in other.extra["config"].items() if k != "out"}
        assert mine == {k: v for k, v in reference.extra["config"].items() if k != "out"}, name


def test_recipes_command_and_a_bad_recipe_name(tiny_store: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.reid_cli import main
    from tests.conftest import one_error_line

    listing = CliRunner().invoke(main, ["recipes"])
    assert listing.exit_code == 0 and "paper-obc" in listing.output and "sets: " in listing.output
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_store), "--out", str(tmp_path / "r"),
                                       "--recipe", "cpu,nope"])
    one_error_line(result, "--recipe 'nope': unknown")
    assert not (tmp_path / "r").exists()


def test_schedule_cut_short_by_the_epochs_is_said() -> None:
    from reid.engine.config import config_warnings

    assert config_warnings(TrainConfig()) == []  # 120 epochs, 10 warm-up, milestones 40, 70
    short = config_warnings(TrainConfig(epochs=2, schedule="cosine"))
    assert len(short) == 1 and "--warmup-epochs 10 is not shorter than --epochs 2" in short[0]
    steps = config_warnings(TrainConfig(epochs=50, schedule="step"))
    assert len(steps) == 1 and "--milestones 70 fall at or after --epochs 50" in steps[0]
    assert config_warnings(apply_recipes(TrainConfig(), ("cpu",))) == []


def test_a_huge_size_is_refused_before_any_work_and_too_many_stripes_are_said() -> None:
    from reid.engine.config import config_warnings

    with pytest.raises(BadInputError, match=r"--size 100000x100000: each side must be 1 to 4096 pixels"):
        TrainConfig(input_size=(100000, 100000))
    warnings = config_warnings(TrainConfig(input_size=(64, 32), num_stripes=99, schedule="cosine", epochs=20))
    assert len(warnings) == 1 and "--stripes 99: the last feature map of a 64-pixel-high input has 4 rows" in warnings[0]
    assert config_warnings(TrainConfig(input_size=(128, 64), last_stride=2, num_stripes=4, schedule="cosine",
                                         epochs=20)) == []
