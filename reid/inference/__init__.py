"""Use a trained model outside the HDF5 protocol: embed crops, search a gallery, export.

* :mod:`reid.inference.embedder` — :class:`~reid.inference.embedder.Embedder`, in-process features.
* :mod:`reid.inference.embed` — ``reid embed``: a folder / list / .h5 file into a features file.
* :mod:`reid.inference.backends` — ``reid embed --backend``: PyTorch or ONNX Runtime, and why.
* :mod:`reid.inference.features_file` — that file's format (HDF5), writer and reader.
* :mod:`reid.inference.search` — ``reid search``: exact top-k in gallery blocks, JSON + sheets.
* :mod:`reid.inference.export` — ``reid export``: ONNX / TorchScript with a parity check.
"""
