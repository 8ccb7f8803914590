"""The ``dicom-send`` command line: one module per command, shared options, progress."""
