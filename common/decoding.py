"""Decoding one image file for storage or inference; strict JPEG decoding: a libjpeg warning
makes the image bad instead of silently grey.

:func:`decode_image` is the one decoder of ``occsim generate`` and of ``reid embed``, so a crop
and the same crop inside a generated file are judged by the same rules.

libjpeg recovers from damaged data with a warning printed on the C ``stderr`` ("Corrupt JPEG
data: premature end of data segment" for a JPEG cut short and closed with an end marker) and
fills what it could not decode with grey; ``cv2.imdecode`` returns that image as if nothing
happened. OpenCV offers no strict mode, so :func:`imdecode_jpeg_strict` points file
descriptor 2 at a private temporary file for the duration of the call and reads back what
libjpeg wrote. Only JPEG is decoded this way: libpng and libtiff print benign warnings
(colour profiles, unknown tags) that must not reject an image.

The redirection is per process and short (one ``imdecode``); the generator decodes in
worker processes or, with one worker, in the main thread, so nothing else writes to the
descriptor meanwhile.
"""

from __future__ import annotations

import os
import tempfile
import threading

import cv2
import numpy as np

_SOI = b"\xff\xd8"  # JPEG start-of-image marker
_EOI = b"\xff\xd9"  # end-of-image; byte stuffing keeps it out of the compressed data
_EOI_TAIL = 64  # bytes at the end searched for EOI: tolerates a little padding after it
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB

_sink_fd = -1
_sink_pid = -1
_lock = threading.Lock()


def _warning_sink() -> int:
    """This process's temporary file for libjpeg's messages, as a descriptor (a forked child
    makes its own). Messages are only appended; :func:`imdecode_jpeg_strict` compares sizes."""
    global _sink_fd, _sink_pid
    if _sink_fd < 0 or _sink_pid != os.getpid():
        handle, path = tempfile.mkstemp(prefix="occsim-jpeg-")
        os.unlink(path)  # nameless: gone with the process
        _sink_fd, _sink_pid = handle, os.getpid()
    return _sink_fd


def imdecode_jpeg_strict(buffer: np.ndarray, flags: int) -> tuple[np.ndarray | None, str]:
    """``cv2.imdecode(buffer, flags)`` plus the first line libjpeg printed while decoding ("" if none).

    Args:
        buffer: the file's bytes, shape [n] uint8.
        flags: ``cv2.IMREAD_*`` flags.
    """
    with _lock:
        sink = _warning_sink()
        start = os.lseek(sink, 0, os.SEEK_END)
        saved = os.dup(2)
        try:
            os.dup2(sink, 2)
            image = cv2.imdecode(buffer, flags)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        end = os.lseek(sink, 0, os.SEEK_END)
        if end == start:
            return image, ""
        if end > 1 << 20:  # a long run of damaged files: start the sink over
            os.ftruncate(sink, 0)
        message = os.pread(sink, min(end - start, 4096), start).decode("utf-8", "replace").strip()
    return image, message.splitlines()[0] if message else ""


def decode_image(path: str, image_size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """Read one image (JPEG, PNG, TIFF, BMP; grayscale made 3-channel) as RGB uint8 at the stored size.

    Aspect: the crop is resized to exactly (H, W), stretched, neither cropped nor padded, as
    re-ID pipelines do (torchreid's and fast-reid's ``Resize((h, w))``): a person crop fills
    its box, so padding would add borders the model never sees in Market-style data, and
    cropping would cut off head or feet. CUHK01's 160x60 becomes 128x64 (a little wider
    than it was), Market's 128x64 is unchanged.

    Returns:
        (image of shape [H, W, 3], "") or (None, reason) for a file that cannot be used
        (unreadable, zero bytes, truncated JPEG, a JPEG libjpeg decodes only with a
        warning, not an image).
    """
    try:
        with open(path, "rb", buffering=0) as fh:  # unbuffered: one read of the whole file
            data = fh.read()
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    if not data:
        return None, "zero-byte file"
    if data[:2] == _SOI and _EOI not in data[-_EOI_TAIL:]:
        return None, "truncated JPEG (no end-of-image marker)"
    buffer = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_COLOR(_RGB) turns grayscale into 3 channels and drops an alpha channel (PNG,
    # TIFF, BMP and JPEG alike; 16-bit TIFF/PNG are scaled to 8 bits).
    flags = _IMREAD_RGB if _IMREAD_RGB is not None else cv2.IMREAD_COLOR
    if data[:2] == _SOI:
        image, warning = imdecode_jpeg_strict(buffer, flags)
        if image is not None and warning:
            return None, f"damaged JPEG (libjpeg: {warning})"
    else:
        image = cv2.imdecode(buffer, flags)
    if image is None:
        return None, "not a decodable image"
    if _IMREAD_RGB is None:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return resize_to(image, image_size), ""


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` [h, w, C] at exactly ``size`` = (H, W): area averaging when shrinking both
    sides, bilinear otherwise; the same array when it already has that size."""
    height, width = int(size[0]), int(size[1])
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] >= height and image.shape[1] >= width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
