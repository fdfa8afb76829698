"""One BLAS thread per worker for NumPy, as torch gets one (``torch.set_num_threads(1)``).

A request's matrices are small; letting OpenBLAS spread a product over every core only makes the workers of one
machine fight over the same cores (measured: 4x slower requests on a busy 2-core machine). The environment variable
``OPENBLAS_NUM_THREADS=1`` does this when set before NumPy is imported (the Dockerfile and app.json set it); this
module does it afterwards through the bundled OpenBLAS' own call, best effort: it changes nothing when the library
or the call is not found.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

log = logging.getLogger("electives.web")

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def limit_blas_threads(n: int = 1) -> bool:
    """Set NumPy's OpenBLAS thread count to ``n``; True when done."""
    import numpy

    libs = Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("*openblas*")) if libs.is_dir() else []:
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(n))
                return True
    log.debug("no OpenBLAS thread setter found; set OPENBLAS_NUM_THREADS=1 before starting")
    return False
