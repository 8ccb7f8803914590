"""One BLAS thread: imported first by the entry points, for its side effect.

pydicom imports numpy whenever it is installed, and numpy's OpenBLAS then starts a
thread per core that spins for a while: at every start of ``dicom-send`` or the
gear, some 0.1 CPU-seconds and 50 ms on this project's 2-core benchmark machine,
for linear algebra that dicom-send never does. A value already set in the
environment is kept.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
