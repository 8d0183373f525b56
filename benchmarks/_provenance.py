"""Where a benchmark row came from, and how rows are recorded.

`git_commit()`: the commit of the code that produced a row (None outside a git checkout).
`SKILLSCALE_COMMIT` overrides it: the GPU machine runs a copy of the working tree whose git metadata can
lag behind (it read an older HEAD for a whole session), so device commands pass the commit explicitly. A
checkout whose tracked files differ from HEAD reports `<commit>-dirty`.

`environment(device)`: the GPU's name (or "cpu"), torch and triton versions, the commit and the date, for a
trainer benchmark's rows.

`append_rows(path, rows)`: adds JSON lines to a results file through `skillscale.atomic`, so a crash while
writing leaves the earlier rows whole, never a torn line.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path

from skillscale.atomic import atomic_write_text


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


def environment(device) -> dict:
    """GPU name, versions, commit and date for every row of a benchmark that trains on `device` (a torch.device)."""
    import torch

    env = {"gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "commit": git_commit(),
           "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    return env


def append_rows(path: str | os.PathLike, rows: list[dict]) -> None:
    """Append `rows` as JSON lines to `path` (created with its folder if missing), atomically."""
    path = Path(path)  # skillscale.atomic creates the folder
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(path, old + "".join(json.dumps(row) + "\n" for row in rows))
