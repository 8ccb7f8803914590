"""The garbage collector around large imports: off while importing, then frozen.

Importing makes many objects and no garbage, yet the collector, counting the
allocations, runs all along (fw-gear and the Flywheel SDK make tens of thousands of
objects). Every later full collection would scan them again, in this process and in
each process forked from it; frozen, they are out of its sight for good
(``docs/performance.md`` has the measurement).
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def importing() -> Iterator[None]:
    """Collector off for the block (the imports), then what it made frozen."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
