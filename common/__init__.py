"""What both packages stand on: errors, atomic writing, device resolution, image sheets, decoding.

``occsim`` (making the dataset) and ``reid`` (learning and measuring) each import from here, so
``reid`` needs ``occsim`` only for the HDF5 store and its schema. The modules are small and
import nothing heavy at package import: :mod:`common.device` is the only one that needs torch.

* :mod:`common.errors` — :class:`~common.errors.BadInputError`, the one-line ``error:`` of exit 2.
* :mod:`common.atomic` — atomic writes (one helper family), output checks, leftovers of killed runs.
* :mod:`common.device` — ``--device auto|cpu|cuda...`` to a ``torch.device``.
* :mod:`common.sheets` — tiles, labels and grids of the PNG figures (saliency, rank, preview).
* :mod:`common.decoding` — one image file to RGB pixels, strict about damaged JPEGs.
* :mod:`common.workers` — worker counts capped at the usable CPUs.

:data:`__version__` is the project's one version: ``occsim``, ``reid``, both tools' ``--version``
and setup.cfg read it here.
"""

__version__ = "0.1.0"
