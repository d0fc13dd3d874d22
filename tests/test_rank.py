"""`reid rank`: the protocol's top-k, border colours, and the command end to end."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli.reid_rank import rank_command
from reid.metrics.protocol import evaluate
from reid.rank import MATCH_COLOUR, MISS_COLOUR, QUERY_COLOUR, protocol_topk, rank_figure
from common.sheets import write_png

# ----------------------------------------------------------------------------- protocol_topk


def test_protocol_topk_hand_made() -> None:
    #            0     1     2     3     4     5
    dist = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    g_pids = np.array([7, 7, -1, 0, 7, 9])
    g_cams = np.array([1, 2, 3, 2, 3, 1])
    # Query pid 7, camera 1: row 0 (same pid, same camera) and row 2 (junk) are removed;
    # row 3 is a distractor (a miss), rows 1 and 4 are matches, row 5 another identity.
    idx, match = protocol_topk(dist, 7, 1, g_pids, g_cams, k=10)
    assert idx.tolist() == [1, 3, 4, 5]
    assert match.tolist() == [True, False, True, False]
    idx, match = protocol_topk(dist, 7, 1, g_pids, g_cams, k=2)
    assert idx.tolist() == [1, 3] and match.tolist() == [True, False]


def test_protocol_topk_breaks_ties_by_gallery_row() -> None:
    dist = np.array([1.0, 0.5, 0.5, 0.5])
    idx, match = protocol_topk(dist, 3, 1, np.array([3, 4, 3, 5]), np.array([2, 2, 2, 2]), k=4)
    assert idx.tolist() == [1, 2, 3, 0]
    assert match.tolist() == [False, True, False, True]


def test_protocol_topk_agrees_with_evaluate() -> None:
    rng = np.random.default_rng(0)
    num_g = 40
    g_pids = rng.integers(-1, 6, size=num_g)  # -1 junk and 0 distractors included
    g_cams = rng.integers(1, 4, size=num_g)
    checked = 0
    for q in range(30):
        q_pid, q_cam = int(rng.integers(1, 6)), int(rng.integers(1, 4))
        # Integer distances: many exact ties, which both must break by gallery row.
        dist = rng.integers(0, 8, size=num_g).astype(np.float32)
        idx, match = protocol_topk(dist, q_pid, q_cam, g_pids, g_cams, k=num_g)
        assert not np.any((g_pids[idx] == q_pid) & (g_cams[idx] == q_cam))
        assert not np.any(g_pids[idx] == -1)
        if not match.any():
            continue
        result = evaluate(dist[None, :], np.array([q_pid]), g_pids, np.array([q_cam]), g_cams, max_rank=num_g)
        first = int(np.argmax(match)) + 1  # 1-based rank of the first green tile
        assert int(np.argmax(result.cmc >= 1.0)) + 1 == first
        ranks = np.flatnonzero(match) + 1
        ap = float(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        assert result.mAP == pytest.approx(ap)
        checked += 1
    assert checked >= 10


# ----------------------------------------------------------------------------- figure


def _bottom_row_runs(image: np.ndarray) -> list[tuple[int, int, int]]:
    """Colours of the runs of equal pixels along the figure's last row (borders live there)."""
    row = image[-1]
    runs = [tuple(int(v) for v in row[0])]
    for pixel in row[1:]:
        colour = tuple(int(v) for v in pixel)
        if colour != runs[-1]:
            runs.append(colour)
    return runs


def test_rank_figure_border_colours(tmp_path: Path) -> None:
    grey = np.full((8, 4, 3), 128, dtype=np.uint8)
    dist = np.array([0.3, 0.1, 0.2])
    idx, match = protocol_topk(dist, 5, 1, np.array([5, 9, 5]), np.array([2, 2, 1]), k=10)
    assert match.tolist() == [False, True]  # row 1 (pid 9) a miss, row 0 (pid 5, cam 2) a match
    figure = rank_figure(grey, np.stack([grey] * len(idx)), match, scale=2)
    path = write_png(tmp_path / "rank.png", figure)
    read = cv2.imread(str(path))  # BGR, as written
    white = (255, 255, 255)
    assert _bottom_row_runs(read) == [QUERY_COLOUR, white, MISS_COLOUR, white, MATCH_COLOUR]
    assert MATCH_COLOUR == (0, 255, 0) and MISS_COLOUR == (0, 0, 255)  # green and red in BGR


def test_rank_figure_rejects_mismatched_flags() -> None:
    grey = np.zeros((8, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="2 gallery images but 1 match flags"):
        rank_figure(grey, np.stack([grey] * 2), [True])


# ----------------------------------------------------------------------------- CLI


def test_cli_rank_end_to_end(tiny_store: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "rank"
    args = ["--data", str(tiny_store), "--checkpoint", str(checkpoint), "--query", "occluded:mean",
            "--n", "3", "--seed", "1", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(rank_command, args)
    assert result.exit_code == 0, result.output
    pngs = sorted(out.glob("rank_q*.png"))
    assert len(pngs) == 3 and (out / "rank_sheet.png").is_file()
    for png in pngs:
        runs = _bottom_row_runs(cv2.imread(str(png)))
        tiles = [c for c in runs if c in (MATCH_COLOUR, MISS_COLOUR)]
        # The tiny gallery: 2 images of each query identity (cameras 3 and 4, never the query's),
        # 6 of other identities, 1 distractor (pid 0) and 1 junk (pid -1). After the junk is
        # removed 9 remain: whatever the model, 2 green tiles and 7 red ones.
        assert len(tiles) == 9
        assert tiles.count(MATCH_COLOUR) == 2


def test_cli_rank_unknown_id_exits_2(tiny_store: Path, checkpoint: Path, tmp_path: Path) -> None:
    args = ["--data", str(tiny_store), "--checkpoint", str(checkpoint), "--ids", "555", "--device", "cpu",
            "--out", str(tmp_path / "x")]
    result = CliRunner().invoke(rank_command, args)
    assert result.exit_code == 2
    assert "error:" in result.output and "tiny.h5" in result.output and "555" in result.output


def test_cli_rank_unknown_query_set_exits_2(tiny_store: Path, checkpoint: Path, tmp_path: Path) -> None:
    args = ["--data", str(tiny_store), "--checkpoint", str(checkpoint), "--query", "occluded:black",
            "--device", "cpu", "--out", str(tmp_path / "x")]
    result = CliRunner().invoke(rank_command, args)
    assert result.exit_code == 2 and "black" in result.output
