"""Named pause points, so tests can SIGKILL the pipeline at its most delicate moments.

With ``PIPELINE_PAUSE_AT=<name>`` in the environment, the process prints ``paused at <name>``
when it reaches that point and sleeps until it is killed. Unset, a pause point does nothing.

    dbt           dbt has created its first table of an invocation (orchestration/dbt.py)
    train         the model is fitted and exported; the stage has not finished (stages.py)
    bundle_write  a bundle's files are written to a temporary folder, not yet renamed into place
    promote       the registry's new champion pointer is written, not yet swapped in
"""

from __future__ import annotations

import os
import time

ENV = "PIPELINE_PAUSE_AT"


def pause_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        print(f"paused at {name}", flush=True)
        time.sleep(3600)
