"""Where a benchmark row came from: the commit of the code that produced it (None outside a git checkout)."""

from __future__ import annotations

import os
import subprocess


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
    except OSError:
        return None
