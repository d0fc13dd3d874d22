"""The README's commands are written as the tools parse them: every `occsim`/`reid` line of its
bash blocks names a real command, real options and valid values (Click parses it, without
running it). `scripts/check_readme.sh` runs the blocks that need no real dataset for real."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """The `occsim ...` and `reid ...` lines of README.md's bash blocks, continuations joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(("occsim ", "reid ")):
                lines.append(line)
    return lines


def test_the_readme_is_short_and_has_commands() -> None:
    assert len(README.read_text().splitlines()) <= 220
    assert len(readme_commands()) >= 5


@pytest.mark.parametrize("line", readme_commands())
def test_every_readme_command_parses(line: str) -> None:
    from cli.occsim_cli import main as occsim_main
    from cli.reid_cli import main as reid_main

    program, name, *args = shlex.split(line)
    group = {"occsim": occsim_main, "reid": reid_main}[program]
    with click.Context(group) as ctx:
        command = group.get_command(ctx, name)
        assert command is not None, f"{program} has no command {name!r}"
        command.make_context(f"{program} {name}", list(args), parent=ctx)  # raises on a bad option or value
