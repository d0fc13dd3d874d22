"""A person-readable description of an occluded-reid file (what ``occsim info`` prints)."""

from __future__ import annotations

import json

from occsim.schema import OCC_TYPE_NAMES
from occsim.store import SplitManifest, StoreInfo

_JUNK, _DISTRACTOR = -1, 0


def _split_line(name: str, manifest: SplitManifest) -> str:
    if not len(manifest) and name == "train":
        return f"  {name:<8}{0:>7} rows: none (a test-only benchmark: train on another file, evaluate here)"
    clean = int((~manifest.occluded).sum())
    per_type = [f"{int((manifest.occ_type == code).sum())} {OCC_TYPE_NAMES[code]}"
                for code in sorted(set(manifest.occ_type.tolist())) if code != 0]
    pids = set(manifest.pid.tolist())
    identities = len(pids - {_JUNK, _DISTRACTOR})
    cameras = sorted(set(manifest.camid.tolist()))
    extra = []
    if _JUNK in pids:
        extra.append(f"{int((manifest.pid[~manifest.occluded] == _JUNK).sum())} junk")
    if _DISTRACTOR in pids:
        extra.append(f"{int((manifest.pid[~manifest.occluded] == _DISTRACTOR).sum())} distractor")
    occluded = ", ".join(per_type) if per_type else "none"
    labels = "" if manifest.label is None else f", labels 0..{int(manifest.label.max()) if len(manifest) else -1}"
    return (f"  {name:<8}{len(manifest):>7} rows: {clean} clean"
            f"{' (incl. ' + ', '.join(extra) + ')' if extra else ''}; occluded: {occluded}\n"
            f"  {'':<8}{identities:>7} identities{labels}; cameras {', '.join(str(c) for c in cameras)}")


LIST_HEAD = 6  # items of a long list shown (a CUHK01 file records its 485 training identities)


def _short(value: object) -> str:
    """JSON of a generator argument, long lists shortened to their first items and count."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list) and len(value) > 2 * LIST_HEAD:
        head = ", ".join(json.dumps(v) for v in value[:LIST_HEAD])
        return f"[{head}, ... ({len(value)} items)]"
    return json.dumps(value)


def _pixels_line(info: StoreInfo, verified: int | None) -> str:
    if not info.pixel_checksums:
        return ("  pixels: no checksums (written before occsim stored them): damage to the pixels cannot be "
                "detected; regenerate the file to add them")
    if info.pixel_crc:
        kind = "a CRC-32 checksum per image"
    else:
        kind = ("only a Fletcher32 checksum per image (written before the CRC-32s: a 0x00 byte flipped to 0xFF "
                "can pass it; regenerate the file to add them)")
    if verified is None:
        return f"  pixels: {kind} (checked on every read; `occsim info` checks them all)"
    return f"  pixels: {kind}, all {verified} verified"


def describe(info: StoreInfo, verified: int | None = None) -> str:
    """Splits, rows, clean/occluded counts per type, identities, cameras, generator args, fingerprint.

    Args:
        info: a validated file, from :func:`occsim.store.read_store`.
        verified: how many images :func:`occsim.store.verify_pixels` checked, if it ran.
    """
    height, width = info.image_size
    lines = [
        f"{info.path}",
        f"  format_version {info.format_version}, written by occsim {info.package_version}",
        f"  source {info.source}, seed {info.seed}, images {height}x{width} RGB",
        f"  fingerprint {info.fingerprint}",
        _pixels_line(info, verified),
        "splits:",
    ]
    lines.extend(_split_line(name, manifest) for name, manifest in info.splits.items())
    lines.append("generator arguments:")
    lines.extend(f"  {key}: {_short(value)}" for key, value in sorted(info.generator_args.items()))
    return "\n".join(lines)
