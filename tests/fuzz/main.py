"""Run the fuzzer: ``python tests/fuzz/main.py [libFuzzer options]`` (see fuzzing.py).

Coverage feedback comes from the code under test and the archive modules of the
standard library it drives; pydicom and the rest run uninstrumented, so that the
fuzzer starts in seconds.
"""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(
    include=["fw_gear_dicom_send", "zipfile", "tarfile", "gzip", "bz2", "lzma"]
):
    import fuzzing

fuzzing.main()
