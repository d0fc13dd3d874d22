"""Which rows an evaluation compares: the query sets named on the command line, expanded
against what the file holds, and the gallery rows.

Query sets are row selections of the ``query`` split: ``clean``, ``occluded:<type>``, plus two
shorthands: ``occluded`` (one set per occluder type present in the file) and ``all``
(``clean`` then every occluded type: the shape of the paper's Table 1; a real occluded
benchmark without clean queries gets its occluded types alone). The gallery is ``clean`` (the
clean rows of the ``gallery`` split, the standard setting) or ``all`` (every gallery row,
which differs only when the file was generated with ``--occlude-gallery``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from common.errors import BadInputError
from common.options import option_of
from occsim.schema import OCCLUSION_KINDS
from occsim.store import StoreInfo
from reid.engine.eval_config import EvalConfig


def expand_queries(queries: Sequence[str], store: StoreInfo) -> list[str]:
    """Expand query-set names against what the file holds, keeping order, without repeats.

    "clean" -> ["clean"]; "occluded" -> ["occluded:<t>" for each type t present in the
    query split]; "occluded:<t>" -> itself when present; "all" -> "clean" then each type.

    Raises:
        BadInputError: an unknown name, a type absent from the file, or an empty selection.
    """
    manifest = store.splits["query"]
    present = manifest.occ_types_present()
    present_text = ", ".join(present) if present else "none"
    out: list[str] = []
    for raw in queries:
        name = raw.strip().lower()
        if name == "clean":
            expanded = ["clean"]
        elif name == "occluded":
            if not present:
                raise BadInputError(
                    f"{store.path}: --query occluded, but the file has no occluded queries; "
                    "use --query clean or generate occluded copies with `occsim generate`"
                )
            expanded = [f"occluded:{t}" for t in present]
        elif name == "all":
            # A real occluded benchmark (Occluded-REID, Occluded-Duke) has no clean query.
            has_clean = len(manifest.rows("clean")) > 0
            expanded = (["clean"] if has_clean or not present else []) + [f"occluded:{t}" for t in present]
        elif name.startswith("occluded:"):
            kind = name.split(":", 1)[1]
            if kind not in OCCLUSION_KINDS:
                raise BadInputError(
                    f"--query {raw}: unknown occluder type {kind!r}; known types: {', '.join(OCCLUSION_KINDS)} "
                    f"(present in {store.path}: {present_text})"
                )
            if kind not in present:
                raise BadInputError(
                    f"{store.path}: has no '{kind}' occluded queries (occluder types present: {present_text}); "
                    "pick one of those or regenerate the file with that occluder"
                )
            expanded = [name]
        else:
            raise BadInputError(
                f"--query {raw!r}: unknown query set; use clean, occluded, occluded:TYPE or all"
            )
        out.extend(e for e in expanded if e not in out)
    if not out:
        raise BadInputError("--query: no query set given; use clean, occluded, occluded:TYPE or all")
    for name in out:
        if len(manifest.rows(name)) == 0:
            raise BadInputError(f"{store.path}: the query split has no {name} rows; pick another --query")
    return out


def gallery_rows(store: StoreInfo, gallery: str) -> np.ndarray:
    """Rows of the gallery split for ``gallery`` ("clean" or "all"), shape [n] int64."""
    option_of(EvalConfig, "gallery").check("gallery", gallery)
    rows = store.splits["gallery"].rows(gallery)
    if len(rows) == 0:
        raise BadInputError(f"{store.path}: the gallery split has no {gallery} rows; regenerate the file")
    return rows
