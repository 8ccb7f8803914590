"""The ``dicom-send`` command line: one module per command, shared options, progress.

``main`` builds the parser and dispatches; each command's module (``send``,
``echo``, ``find``, ``move``, ``retrieve``, ``listen``, ``demo``) adds its options
and runs it; ``options`` holds the option groups commands share and turns parsed
options into settings; ``progress`` and ``outcome`` show what happens.
"""

PROG = "dicom-send"
"""The program's name, as usage lines and messages start."""
