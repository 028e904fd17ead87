"""Failpoints for crash tests: a command killed at a chosen stage of a change.

``CMGIT_CRASH_AT`` is for tests only. When it names a stage, the process kills itself
with SIGKILL on reaching that stage, so no cleanup code runs, as in a power cut of the
process. Unset (always, outside tests), ``crash_point`` does nothing.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "CMGIT_CRASH_AT"


def crash_point(stage: str) -> None:
    if os.environ.get(VARIABLE) == stage:
        os.kill(os.getpid(), signal.SIGKILL)
