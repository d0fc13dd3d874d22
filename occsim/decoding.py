"""Strict JPEG decoding: a libjpeg warning makes the image bad instead of silently grey.

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
