"""How often the long-running services collect garbage.

The API, the stream processor and the sink allocate a few dozen objects per request or event,
nearly all of them dead within milliseconds, beside many long-lived ones (the libraries' objects
from start-up; the processor's visitor states; the sink's buffered records). With Python's
default threshold (700 allocations) the young generation is collected every few requests or
events, and every collection of the oldest generation walks everything that lives: in the API
that was about 35 us of the 300-odd us of CPU a request took, in the sink 13% of its CPU
(BENCHMARKS.md, "Ingest API" and "Sink").
"""

from __future__ import annotations

import gc

# Allocations between collections of the young generation, and collections between older ones
# (Python's defaults: 700, 10, 10).
THRESHOLDS = (20_000, 10, 10)


def collect_less(*, freeze: bool = True) -> None:
    """Collect the young generation every ``THRESHOLDS[0]`` allocations.

    With ``freeze``, everything that exists at this moment (modules, the app built at start-up)
    is first moved out of the collector's sight: it lives as long as the process, and full
    collections no longer walk it. Call it once, when start-up is done.
    """
    if freeze:
        gc.collect()
        gc.freeze()
    gc.set_threshold(*THRESHOLDS)
