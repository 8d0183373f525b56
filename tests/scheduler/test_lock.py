"""One controller per study directory (scheduler/lock.py): a second one is refused at once, naming the
holder; a lock whose holder was killed never blocks."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from scheduler.lock import StudyLock, StudyLocked
from skillscale.errors import InputError

HOLD = ("import sys; from scheduler.lock import StudyLock; lock = StudyLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); sys.stdin.read()")


def test_a_second_lock_is_refused_with_the_holder_named(tmp_path):
    with StudyLock(tmp_path / "study") as first:
        assert first.held
        with pytest.raises(StudyLocked) as err:
            StudyLock(tmp_path / "study").acquire()
        message = str(err.value)
        assert f"pid {os.getpid()} on host {socket.gethostname()} since 20" in message
        assert "another controller is running this study" in message and "\n" not in message
        assert isinstance(err.value, InputError)  # exit status 2 from the CLI
    StudyLock(tmp_path / "study").acquire().release()  # released: free again


def test_a_killed_holder_never_blocks(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(
                                os.path.dirname(os.path.abspath(__file__)))))
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(StudyLocked, match=f"pid {proc.pid} on host"):
            StudyLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lock = StudyLock(tmp_path).acquire()  # the kernel dropped the dead process's flock
    assert f'"pid": {os.getpid()}' in (tmp_path / "controller.lock").read_text()
    lock.release()


def test_an_unusable_study_dir_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"file/study: cannot use as a study directory"):
        StudyLock(tmp_path / "file" / "study").acquire()
