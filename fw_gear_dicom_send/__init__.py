"""dicom-send: push DICOM files, folders and archives to a PACS over C-STORE.

The engine tags every instance with a private provenance element, streams it to the
receiver over one or more associations and accounts for every input file in a report.
It runs as the ``dicom-send`` command line and as a Flywheel gear.
"""

import importlib.metadata
import logging

try:
    __version__ = importlib.metadata.version("fw-gear-dicom-send")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())
