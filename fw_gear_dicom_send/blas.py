"""One BLAS thread: imported first by the entry points, for its side effect.

pydicom imports numpy whenever it is installed, and numpy's OpenBLAS then starts a
thread per core that spins for a while at every start of a sending process, for
linear algebra that dicom-send never does (``docs/performance.md`` has the
measurement). A value already set in the environment is kept.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
