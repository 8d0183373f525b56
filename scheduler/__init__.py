"""The scheduler: a study's closed loop.

    from scheduler import Study, StudyConfig, run_study
    result = run_study("configs/quickstart.yaml")            # the whole study on Ray (what `skillscale run` does)
    study = Study(load_study_config("configs/quickstart.yaml"))   # the loop's decisions, in process, no Ray

Public API: StudyConfig / load_study_config / parse_study_config (scheduler/config.py), Study / StudyStatus /
read_status (scheduler/study.py), run_study and Controller (scheduler/controller.py). The last two import
Ray, so they are loaded on first use: `import scheduler` itself does not import Ray.
"""

from scheduler.config import StudyConfig, load_study_config, parse_study_config
from scheduler.study import Study, StudyStatus, read_status

__all__ = ["Controller", "Study", "StudyConfig", "StudyStatus", "load_study_config", "parse_study_config",
           "read_status", "run_study"]


def __getattr__(name: str):
    if name in ("run_study", "Controller"):
        from scheduler import controller

        return getattr(controller, name)
    raise AttributeError(f"module 'scheduler' has no attribute {name!r}")
