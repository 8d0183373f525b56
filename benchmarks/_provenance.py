"""Where a benchmark row came from: the commit of the code that produced it (None outside a git checkout).

`SKILLSCALE_COMMIT` overrides it: the GPU machine runs a copy of the working tree whose git metadata can
lag behind (it read an older HEAD for a whole session), so device commands pass the commit explicitly. A
checkout whose tracked files differ from HEAD reports `<commit>-dirty`.
"""

from __future__ import annotations

import os
import subprocess


def git_commit() -> str | None:
    if os.environ.get("SKILLSCALE_COMMIT"):
        return os.environ["SKILLSCALE_COMMIT"]
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here).stdout.strip()
    except OSError:
        return None
    return (f"{head}-dirty" if dirty else head) or None
