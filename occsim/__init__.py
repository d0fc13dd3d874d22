"""occsim: materialise an Occluded Market-1501 (frozen splits + occlusion manifest) as HDF5."""

__version__ = "0.1.0"
