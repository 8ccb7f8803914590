"""dicom-send: push DICOM files, folders and archives to a PACS over C-STORE.

The engine tags every instance with a private provenance element, streams it to the
receiver over one or more associations and accounts for every input file in a report.
It runs as the ``dicom-send`` command line and as a Flywheel gear.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed metadata when first asked for.

    importlib.metadata costs every start some 50 ms; only ``--version`` and the
    tests need it.
    """
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib.metadata  # noqa: PLC0415

    try:
        return importlib.metadata.version("fw-gear-dicom-send")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"
