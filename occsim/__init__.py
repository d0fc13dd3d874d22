"""occsim: materialise an Occluded Market-1501 (frozen splits + occlusion manifest) as HDF5."""

from common import __version__  # noqa: F401 (the project's one version, re-exported)
