"""The built-in synthetic pedestrian set, written in the exact Market-1501 folder layout.

Each image is a standing person drawn with cv2 on a camera-specific background. An identity
is a *combination* of attributes spread over the whole body (skin, hair colour and style,
upper garment colour and pattern, sleeve length, lower garment kind and colour, shoes, bag),
each drawn from a small palette, so many identities share any single attribute and only the
combination identifies: a patch that hides one region removes some of the evidence, never
all of it. Cameras differ in background, lighting, scale, position and the views (front,
back, side) they tend to see; each image adds its own pose, jitter, blur and noise.

Determinism: the plan (pids, splits, file names) comes from one generator seeded with
``[seed, stream]``; every pixel of an image comes from generators seeded with ``(seed,
stream, pid, image index)`` or ``(seed, stream, camera)``, so the bytes written do not depend
on how the images are split between worker processes.

The configuration is :mod:`occsim.synth_config` (OpenCV-free, for ``occsim synth --help``); the
work is split in four modules: :mod:`~occsim.synth.plan` (pids, splits and file names),
:mod:`~occsim.synth.looks` (palettes, people, cameras), :mod:`~occsim.synth.draw` (pixels of
one image) and :mod:`~occsim.synth.write` (workers, JPEG files, atomic output).

Layout written (Market-1501, 2015 release)::

    out_dir/bounding_box_train/0002_c1s1_000451_03.jpg   train identities
    out_dir/bounding_box_test/0001_c2s3_012345_01.jpg    test identities (gallery),
    out_dir/bounding_box_test/-1_c3s1_000123_02.jpg      junk (ignored by the protocol),
    out_dir/bounding_box_test/0000_c1s1_000999_01.jpg    distractors (negatives),
    out_dir/bounding_box_test/Thumbs.db                  the stray file the real download has
    out_dir/query/0001_c1s2_004567_01.jpg                one image per test identity per camera
"""

from occsim.synth.plan import DISTRACTOR_PID, GALLERY_DIR, JUNK_PID, QUERY_DIR, TRAIN_DIR
from occsim.synth.write import JPEG_QUALITY, SynthSummary, synthesize_market
from occsim.synth_config import SynthConfig

__all__ = [
    "DISTRACTOR_PID",
    "GALLERY_DIR",
    "JUNK_PID",
    "QUERY_DIR",
    "TRAIN_DIR",
    "SynthConfig",
    "JPEG_QUALITY",
    "SynthSummary",
    "synthesize_market",
]
