"""Each option declared once: config fields carry default, help, range and choices; the Click
options of every command built on a configuration class are derived from them; --help loads
no torch."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.options import values_from_cli
from cli.reid_study import study_command
from cli.reid_train import train_command
from common.errors import BadInputError
from common.options import Option, options_of
from occsim.occluders import OccluderParams
from reid.engine.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]

# Every option `reid train` had before its options were derived from TrainConfig: none may go.
TRAIN_FLAGS = {
    "--data", "--out", "--name", "--alpha", "--train-on", "--train-occluders", "--arch", "--pretrained", "--epochs",
    "--batch-p", "--batch-k", "--optimizer", "--lr", "--weight-decay", "--warmup-epochs", "--schedule",
    "--milestones", "--margin", "--label-smoothing", "--size", "--last-stride", "--stripes", "--random-erasing",
    "--occlusion-p", "--occlusion-ramp-epochs", "--retrieval-feature", "--exclude-twin-positive",
    "--clean-anchors-only", "--visibility-weight", "--device", "--amp", "--workers", "--seed",
    "--max-steps-per-epoch", "--eval-every", "--eval-queries", "--resume", "--force",
}


def _derived(command: click.Command, config_cls: type) -> dict[str, click.Option]:
    declared = {name for name, option in options_of(config_cls) if option.cli != ""}
    return {p.name: p for p in command.params if isinstance(p, click.Option) and p.name in declared}


def test_train_options_are_the_config_fields_with_their_defaults_and_choices() -> None:
    flags = {opt for p in train_command.params for opt in p.opts}
    assert TRAIN_FLAGS <= flags
    params = _derived(train_command, TrainConfig)
    declared = dict(options_of(TrainConfig))
    assert set(params) == {name for name, o in declared.items() if o.cli != ""}
    # Click's defaults, read back as the config reads them, are the dataclass defaults.
    raw = {name: p.default for name, p in params.items()}
    values = values_from_cli(TrainConfig, list(params), raw)
    defaults = TrainConfig()
    for name, value in values.items():
        assert value == getattr(defaults, name), name
    for name, p in params.items():
        if declared[name].choices is not None:
            assert tuple(p.type.choices) == tuple(str(c) for c in declared[name].choices), name
        assert p.help == declared[name].help, name
    assert params["batch_p"].type.min == 2 and params["alpha"].type.max == 1.0
    assert params["amp"].default is None and params["amp"].secondary_opts == ["--no-amp"]


def test_study_shares_the_training_options_and_overrides_only_the_alpha_help() -> None:
    study, train = _derived(study_command, TrainConfig), _derived(train_command, TrainConfig)
    assert set(train) - set(study) == {"train_on", "train_occluders", "eval_every", "eval_queries", "resume", "force"}
    assert study["alpha"].default == train["alpha"].default == TrainConfig.alpha
    assert study["alpha"].help.startswith("occluders grid")


def test_study_grid_options_come_from_study_config() -> None:
    from reid.study_config import StudyConfig

    params = _derived(study_command, StudyConfig)
    assert set(params) == {"seeds", "alphas", "val_fraction", "saliency", "saliency_queries", "cells", "distance",
                           "metric", "flip", "skip_busy", "reuse_from"}
    values = values_from_cli(StudyConfig, list(params), {name: p.default for name, p in params.items()})
    assert values == {name: getattr(StudyConfig, name) for name in params}
    assert params["alphas"].default == "1,0.9,0.8,0.6,0.4" and params["saliency"].secondary_opts == ["--no-saliency"]
    config = StudyConfig(grid="alpha", data=Path("d.h5"), out=Path("o"), base=TrainConfig())
    with pytest.raises(BadInputError, match=r"^--val-fraction 1.0: must be in \(0, 1\)"):
        dataclasses.replace(config, val_fraction=1.0)
    with pytest.raises(BadInputError, match=r"^--distance 'near': use one of global, local, global\+local"):
        dataclasses.replace(config, distance="near")


def test_generate_occluder_options_come_from_occluder_params() -> None:
    from cli.occsim_cli import generate

    params = _derived(generate, OccluderParams)
    assert set(params) == {"patch", "area_min", "area_max", "ratio_min", "ratio_max"}
    for name, p in params.items():
        assert p.default == getattr(OccluderParams(), name), name
    with pytest.raises(BadInputError, match=r"^--area-max 1.5: must be a fraction of the image in \(0, 1\]"):
        OccluderParams(area_max=1.5).validate()


def test_alpha_is_declared_once_and_checked_the_same_by_both_configs() -> None:
    from reid.losses import LossConfig

    # One declaration (bounds, message); the defaults differ on purpose: the loss keeps the
    # paper's 0.8, training defaults to the recipe grid's winner, which has no OBC term.
    assert (LossConfig.alpha, TrainConfig.alpha) == (0.8, 1.0)
    for make in (lambda: TrainConfig(alpha=1.5), lambda: LossConfig(alpha=1.5)):
        with pytest.raises(BadInputError, match=r"^--alpha 1.5: must be between 0 and 1 \(1 = plain AlignedReID\)$"):
            make()
    result = CliRunner().invoke(train_command, ["--alpha", "1.5"])
    assert result.exit_code == 2 and "0.0<=x<=1.0" in result.output


# Every option `occsim generate` had before its options were derived from GenerateConfig: none may go.
GENERATE_FLAGS = {
    "--src", "--layout", "--variant", "--split-seed", "--out", "--type", "--patch", "--area-min", "--area-max",
    "--ratio-min", "--ratio-max", "--seed", "--workers", "--occlude", "--occlude-gallery", "--size", "--force",
    "--skip-bad",
}


def test_generate_options_are_the_config_fields_with_their_defaults_and_choices() -> None:
    from cli.occsim_cli import generate
    from occsim.generate_config import GenerateConfig

    flags = {opt for p in generate.params for opt in p.opts}
    assert flags == GENERATE_FLAGS
    params = _derived(generate, GenerateConfig)
    declared = dict(options_of(GenerateConfig))
    assert set(params) == {name for name, o in declared.items() if o.cli != ""}
    values = values_from_cli(GenerateConfig, list(params), {name: p.default for name, p in params.items()})
    defaults = GenerateConfig()
    for name, value in values.items():
        assert value == getattr(defaults, name), name
        assert params[name].help == declared[name].help, name
    assert values["types"] == ("mean",) and values["image_size"] == (128, 64) and values["src"] is None
    assert params["types"].multiple and tuple(params["variant"].type.choices) == ("detected", "labeled")
    assert params["workers"].type.min == 0 and params["occlude"].default == "train,query"
    # Repeated and comma-separated --type values are one tuple; an empty --occlude is no split.
    raw = {"types": ("mean", "black,random"), "occlude": ""}
    assert values_from_cli(GenerateConfig, ["types", "occlude"], raw) == {"types": ("mean", "black", "random"),
                                                                         "occlude": ()}


@pytest.mark.parametrize("changes, message", [
    ({"types": ("mean", "blur")}, r"^--type 'blur': unknown; use one or more of mean, black, random, pedestrian$"),
    ({"occlude": ("train", "test")}, r"^--occlude 'test': unknown; use one or more of train, query, gallery$"),
    ({"workers": -1}, r"^--workers -1: must be 0 \(all cores\) or a positive integer$"),
    ({"seed": True}, r"^--seed True: must be a whole number$"),
    ({"split_seed": -2}, r"^--split-seed -2: must be a non-negative integer$"),
    ({"variant": "raw"}, r"^--variant 'raw': use one of detected, labeled$"),
    ({"chunk_size": 0}, r"^chunk_size 0: must be positive$"),
])
def test_generate_config_validates_from_its_fields(changes: dict, message: str) -> None:
    from occsim.generate_config import GenerateConfig

    GenerateConfig().validate()
    with pytest.raises(BadInputError, match=message):
        dataclasses.replace(GenerateConfig(), **changes).validate()


@pytest.mark.parametrize("option, value, message", [
    (Option(1, low=1), 0, "--x 0: must be at least 1"),
    (Option(0, low=0), -1, "--x -1: must be >= 0"),
    (Option(0.3, low=0.0, low_open=True), 0.0, "--x 0.0: must be > 0"),
    (Option(0.1, low=0.0, high=1.0, high_open=True), 1.0, r"--x 1.0: must be in \[0, 1\)"),
    (Option(0.1, low=0.0, high=1.0, low_open=True), float("nan"), r"--x nan: must be in \(0, 1\]"),
    (Option("a", choices=("a", "b")), "c", "--x 'c': use one of a, b"),
    (Option(1, choices=(1, 2), cli="--stride"), 3, "--stride 3: use one of 1, 2"),
    (Option(1.0, cli="", low=0.0), -1.0, "^x -1.0: must be >= 0"),
])
def test_option_checks_name_the_option_and_the_range(option: Option, value: object, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        option.check("x", value)
    option.check("x", option.default)


def _load(target: str) -> object:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


# Every command built on configuration classes: the classes whose fields are its options, the
# options that are no field of them (outputs, run naming), and the fields whose help it rewords.
CONFIG_COMMANDS = [
    ("cli.reid_train:train_command", ["reid.engine.config:TrainConfig"],
     {"recipes", "config_file", "data", "out", "name"}, set()),
    ("cli.reid_study:study_command", ["reid.study_config:StudyConfig", "reid.engine.config:TrainConfig"],
     {"grid", "data", "out", "test_data"}, {"alpha"}),
    ("cli.occsim_cli:generate", ["occsim.generate_config:GenerateConfig", "occsim.occluders:OccluderParams"],
     set(), set()),
    ("cli.occsim_cli:synth", ["occsim.synth_config:SynthConfig"], {"out", "workers", "force"}, set()),
    ("cli.reid_eval:eval_command", ["reid.engine.eval_config:EvalConfig"], {"out", "force"}, set()),
    ("cli.reid_search:search_command", ["reid.inference.config:SearchConfig"], set(), set()),
    ("cli.reid_export:export_command", ["reid.inference.config:ExportConfig"], set(), set()),
    ("cli.reid_embed:embed_command", ["reid.inference.embed_config:EmbedConfig"], set(), set()),
]
#: Configuration classes the commands build whose options are still written by hand.
HAND_WRITTEN: set[str] = set()


@pytest.mark.parametrize("command, classes, extra, reworded", CONFIG_COMMANDS, ids=[c[0] for c in CONFIG_COMMANDS])
def test_every_config_option_of_a_command_is_derived_from_its_field(command: str, classes: list[str], extra: set,
                                                                    reworded: set) -> None:
    cmd = _load(command)
    configs = [_load(c) for c in classes]
    for param in cmd.params:
        if param.name in extra:
            continue
        owner = next((c for c in configs if any(n == param.name and o.cli != "" for n, o in options_of(c))), None)
        assert owner is not None, f"{command}: {param.opts} is no declared option of {classes}"
        option = dict(options_of(owner))[param.name]
        assert option.flag_name(param.name) in param.opts, param.name
        assert param.name in reworded or param.help == option.help, param.name
        assert param.required == option.required, param.name
        if not option.required:  # Click's default, read as the config reads it, is the field's default
            value = values_from_cli(owner, [param.name], {param.name: param.default})[param.name]
            assert value == getattr(owner, param.name), (param.name, value)
        if option.flag and not option.default and not option.tristate:  # off by default: a plain --flag
            assert not param.secondary_opts, param.name


def test_every_config_a_command_builds_is_covered() -> None:
    built = set()
    for module in (REPO / "cli").glob("*.py"):
        built |= set(re.findall(r"\b([A-Z]\w*(?:Config|Params))\b", module.read_text()))
    covered = {c.split(":")[1] for _, classes, _, _ in CONFIG_COMMANDS for c in classes}
    assert built - covered == HAND_WRITTEN


def test_synth_run_options_are_declared_once() -> None:
    from cli.occsim_cli import generate, synth
    from common.options import FORCE
    from common.workers import PROCESS_WORKERS
    from occsim.generate import DEFAULT_SYNTHETIC
    from occsim.synth_config import SYNTH_OUT

    params = {p.name: p for p in synth.params}
    assert params["out"].default == str(SYNTH_OUT.default) == str(DEFAULT_SYNTHETIC)
    assert params["workers"].help == PROCESS_WORKERS.help and params["force"].is_flag and not FORCE.default
    # One --workers of process pools: the same help, range and default (0 = all cores) as generate's.
    generate_workers = next(p for p in generate.params if p.name == "workers")
    assert (params["workers"].default, params["workers"].type.min) == (generate_workers.default, 0) == (0, 0)
    with pytest.raises(BadInputError, match=r"^n_ids \(--ids\) = 1: must be in \[2, 9998\]"):
        _load("occsim.synth_config:SynthConfig")(n_ids=1)


def test_data_loader_workers_are_declared_once_per_default() -> None:
    from cli.reid_eval import eval_command
    from reid.engine.eval_config import EvalConfig
    from reid.engine.evaluator import evaluate_model

    defaults = {name: next(p.default for p in cmd.params if p.name == "workers")
                for name, cmd in (("train", train_command), ("study", study_command), ("eval", eval_command))}
    # Training (and every cell of a study) forks 4 loader processes; an evaluation reads in its own
    # process unless asked, on the command line and in the library alike.
    assert defaults == {"train": TrainConfig.workers, "study": TrainConfig.workers, "eval": EvalConfig.workers}
    assert (TrainConfig.workers, EvalConfig.workers) == (4, 0)
    assert inspect.signature(evaluate_model).parameters["workers"].default == EvalConfig.workers


def test_eval_checks_its_options_once_for_the_command_and_the_library(tmp_path: Path) -> None:
    from reid.engine.eval_config import EvalConfig

    with pytest.raises(BadInputError, match=r"^--max-rank 0: must be at least 1$"):
        EvalConfig(max_rank=0)
    with pytest.raises(BadInputError, match=r"^--metric 'manhattan': use one of euclidean, cosine$"):
        EvalConfig(metric="manhattan")
    with pytest.raises(BadInputError, match=r"^--shortlist: only applies to --distance global\+local"):
        EvalConfig(shortlist=5)
    result = CliRunner().invoke(_load("cli.reid_eval:eval_command"), ["--shortlist", "5", "--data", str(tmp_path)])
    assert result.exit_code == 2 and "--shortlist: only applies to --distance global+local" in result.output


def test_search_and_export_check_their_options() -> None:
    from reid.inference.config import ExportConfig, SearchConfig

    with pytest.raises(BadInputError, match=r"^--top 0: must be at least 1$"):
        SearchConfig(gallery=Path("g.h5"), query=Path("q.h5"), top=0)
    with pytest.raises(BadInputError, match=r"^--distance 'local': use one of global, global\+local$"):
        SearchConfig(gallery=Path("g.h5"), query=Path("q.h5"), distance="local")
    with pytest.raises(BadInputError, match=r"^--opset 12: must be at least 13$"):
        ExportConfig(out=Path("m.onnx"), opset=12)
    with pytest.raises(BadInputError, match=r"^--format 'tflite': use one of onnx, torchscript$"):
        ExportConfig(out=Path("m.onnx"), format="tflite")
    result = CliRunner().invoke(_load("cli.reid_search:search_command"), ["--query", "q.h5"])
    assert result.exit_code == 2 and "Missing option '--gallery'" in result.output


# `occsim` loads only numpy to name its occluders and splits: not torch, OpenCV, h5py, nor the
# generator's machinery (joblib, the spool, the HDF5 writer).
@pytest.mark.parametrize("cli, argv, heavy_modules", [
    ("reid", ["--help"], ("torch", "torchvision", "numpy", "h5py")),
    ("reid", ["train", "--help"], ("torch", "torchvision", "numpy", "h5py")),
    ("reid", ["study", "--help"], ("torch", "torchvision", "numpy", "h5py")),
    ("reid", ["eval", "--help"], ("torch", "torchvision", "numpy", "h5py")),
    ("reid", ["search", "--help"], ("torch", "torchvision", "numpy", "h5py")),
    ("reid", ["export", "--help"], ("torch", "torchvision", "numpy", "h5py")),
    ("reid", ["curves", "--help"], ("torch", "torchvision", "numpy", "h5py", "matplotlib")),
    ("occsim", ["--help"], ("torch", "torchvision", "cv2", "h5py", "joblib", "occsim.generate", "occsim.store")),
    ("occsim", ["generate", "--help"], ("torch", "torchvision", "cv2", "h5py", "joblib", "occsim.generate",
                                        "occsim.store")),
    ("occsim", ["synth", "--help"], ("torch", "torchvision", "cv2", "h5py", "joblib", "occsim.synth",
                                     "occsim.generate")),
])
def test_help_loads_no_torch(cli: str, argv: list[str], heavy_modules: tuple[str, ...]) -> None:
    code = (f"import sys\nfrom cli.{cli}_cli import main\n"
            f"try:\n    main({argv!r}, prog_name={cli!r})\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"heavy = sorted(m for m in {heavy_modules!r} if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout and f"Usage: {cli}" in proc.stdout


def test_the_schema_string_dtype_is_h5pys_without_importing_it() -> None:
    import h5py

    from occsim.schema import STRING_DTYPE

    assert STRING_DTYPE == h5py.string_dtype("utf-8")
    assert h5py.check_string_dtype(STRING_DTYPE) == h5py.check_string_dtype(h5py.string_dtype("utf-8"))
