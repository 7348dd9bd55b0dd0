"""Where the lab keeps the learner's files: progress, and the engine host's logs.

``data_dir()`` is ``$INFERENCE_LAB_DATA`` if set, else the platform's user data directory for
inference-lab (``platformdirs.user_data_dir``). Logs go to ``$INFERENCE_LAB_LOGS`` if set, else to
``logs/`` inside the data directory. Nothing here creates a directory: callers do, when they write.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "INFERENCE_LAB_DATA"
LOGS_ENV = "INFERENCE_LAB_LOGS"


def data_dir() -> Path:
    """``$INFERENCE_LAB_DATA`` if set, else the platform's user data dir for inference-lab."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("inference-lab"))


def log_dir() -> Path:
    """``$INFERENCE_LAB_LOGS`` if set, else ``<data dir>/logs``."""
    env = os.environ.get(LOGS_ENV)
    return Path(env) if env else data_dir() / "logs"
