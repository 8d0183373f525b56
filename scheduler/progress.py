"""What a researcher watching `skillscale run` sees: one line per finished run, a heartbeat while
runs train, and a table of the estimates at the end. Line-based (not a live display) so logs from
an unattended cluster job read the same as a terminal."""

from __future__ import annotations

import contextlib
import io
import math
import re
import sys
import time

from rich.console import Console
from rich.table import Table

from scheduler.estimates import precision_text
from scheduler.study import StudyStatus

MAX_TARGETS_IN_LINE = 6  # more targets than this are summarised in a progress line (the table has them all)
MAX_LINE = 200  # characters of a progress line, its timestamp included: longer ones are summarised


def price_text(status) -> str:
    """' | runs bind: a run priced at 7.5e17 FLOPs' while the shadow price is raised (Study.run_price); '' else."""
    if status.run_price is None or status.overhead_flops is None or status.run_price <= status.overhead_flops:
        return ""
    return f" | runs bind: a run priced at {status.run_price:.2g} FLOPs"


MAX_RUNS_SHOWN = 1000  # a forecast beyond this many runs reads "> 1000 runs": the count itself means nothing


def forecast_text(forecast: dict | None) -> str:
    """' | to tol: ~3e+20 FLOPs, ~900 runs (out of reach)' from StudyStatus.forecast; '' before there is one.
    Early fits forecast absurd counts (billions of runs): past MAX_RUNS_SHOWN it reads '> 1000 runs'."""
    if not forecast or forecast.get("flops_needed") is None:
        return ""
    flops, runs = float(forecast["flops_needed"]), forecast.get("runs_needed")
    reach = "" if forecast.get("reachable", True) else " (out of reach: cap or max_runs)"
    if not math.isfinite(flops):
        return " | to tol: out of reach (no finite forecast yet)"
    if runs is None or not math.isfinite(float(runs)) or runs > MAX_RUNS_SHOWN:
        runs_text = f"> {MAX_RUNS_SHOWN} runs"
    else:
        runs_text = f"~{runs:.0f} runs"
    return f" | to tol: ~{flops:.2g} FLOPs, {runs_text}{reach}"


def repeated_text(result) -> str:
    """' | repeats general 9.7x' for a run that read a domain past REPEATED_DATA_EPOCHS times over; '' else."""
    repeated = result.repeated_domains
    return f" | repeats {', '.join(f'{d} {e:.1f}x' for d, e in repeated.items())}" if repeated else ""


def _fmt_targets(status: StudyStatus, max_in_line: int = MAX_TARGETS_IN_LINE, widest: bool = True) -> str:
    if not status.targets:
        return "laws not yet identifiable"
    one = lambda t: f"{t.name} N*={t.n_params:.3g} {precision_text(t.rel_halfwidth, t.degenerate, 0, t.unresolved)}"  # noqa: E731
    if len(status.targets) <= max_in_line:
        return "  ".join(one(t) for t in status.targets)
    identifiable = [t for t in status.targets if math.isfinite(t.rel_halfwidth)]
    summary = f"{len(status.targets)} targets, {len(identifiable)} identifiable"
    if identifiable:
        within = sum(t.rel_halfwidth <= status.tolerance for t in identifiable)
        summary += f", {within} within tolerance"
        if widest:
            summary += f", widest {one(max(identifiable, key=lambda t: t.rel_halfwidth))}"
    return summary


def fit_line(head: str, middles: list[str], tail: str, limit: int) -> str:
    """head + the first of `middles` (most detailed first) + tail that fits in `limit` characters; if none does,
    the last middle is cut short (head and tail, the run and the forecast, are kept whole where they fit)."""
    for middle in middles:
        if len(head) + len(middle) + len(tail) <= limit:
            return head + middle + tail
    room = limit - len(head) - len(tail)
    if room >= 8:
        return head + middles[-1][: room - 3] + "..." + tail
    return (head + middles[-1] + tail)[: limit - 3] + "..."


class Progress:
    """Lines for a person (or a log file); every method reads a StudyStatus (scheduler/study.py)."""

    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.t0 = time.monotonic()
        self._last_beat = 0.0

    @classmethod
    def silent(cls) -> Progress:
        """Prints nothing at all (the Python API's and the tests' default); `quiet` still prints the final table."""
        return cls(quiet=True, console=Console(quiet=True))

    def _elapsed(self) -> str:
        s = int(time.monotonic() - self.t0)
        return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"

    def _stamp(self) -> str:
        return f"[{self._elapsed()}] "

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"{self._stamp()}{message}")

    def run_finished(self, status: StudyStatus, result) -> None:
        """One line per recorded run (`result`: the RunResult as recorded), at most MAX_LINE characters: with many
        skills or targets the losses and estimates are summarised (the ledger and the table have them all)."""
        if self.quiet:
            return
        cap, spent = status.compute_cap, status.flops_spent
        head = f"run {status.n_runs:>3} {result.status:<8} N={result.n_params:.3g} D={result.n_tokens:.3g}"
        losses = " ".join(f"{k}={v:.4f}" for k, v in result.losses.items())
        short_losses = f"losses: {len(result.losses)} skills"
        flops = f" | in flight {status.n_in_flight} | FLOPs {spent:.3g}/{cap:.3g} ({100 * spent / cap:.1f}%)"
        tol = f" (tol ±{100 * status.tolerance:.0f}%)"
        tail = f"{forecast_text(status.forecast)}{price_text(status)}{repeated_text(result)}"
        middles = [f" {lo}{flops} | {targets}{tol}" for lo, targets in (
            (losses, _fmt_targets(status)),
            (losses, _fmt_targets(status, max_in_line=2)),
            (short_losses, _fmt_targets(status, max_in_line=2)),
            (short_losses, _fmt_targets(status, max_in_line=0)),
            (short_losses, _fmt_targets(status, max_in_line=0, widest=False)))]
        self.log(fit_line(head, middles, tail, MAX_LINE - len(self._stamp())))

    def heartbeat(self, status: StudyStatus, training: int | None = None, unplaced: int = 0) -> None:
        """At most every 30 s while nothing finishes: runs training (default: all in flight), and runs whose worker
        Ray has not placed on a node yet (pending: queued for resources, not training)."""
        now = time.monotonic()
        if self.quiet or now - self._last_beat < 30:
            return
        self._last_beat = now
        training = status.n_in_flight - unplaced if training is None else training
        pending = f", {unplaced} pending (no node has placed their worker yet)" if unplaced else ""
        self.log(f"waiting: {training} runs training{pending}, {status.n_runs} finished")

    def finished(self, status: StudyStatus, result: dict, study_dir=None) -> None:
        """The final table, from the result dict (result.json); printed with --quiet too (all it prints)."""
        table = Table(title=f"{status.name}: stopped ({result['stop_reason']}) after {result['n_runs']} runs, "
                            f"{result['flops_spent']:.3g} FLOPs")
        for col in ("target", "C_target", "N*", "N* 95% CI", "D*", "±rel"):
            table.add_column(col, justify="right")
        g = lambda v, spec=".3g": "n/a" if v is None else format(v, spec)  # None: not identifiable yet
        for t in result["targets"]:
            lo, hi = t["n_params_ci95"]
            rel = precision_text(t["rel_halfwidth"], t.get("degenerate", ()), unresolved=t.get("unresolved", ()))
            table.add_row(t["name"], g(t["flops"]), g(t["n_params"]), f"[{g(lo)}, {g(hi)}]", g(t["n_tokens"]), rel)
        self.console.print(table)
        for t in result["targets"]:  # an N* where no run trained is an extrapolation of the law in N: say so
            if t.get("outside_searched_n"):
                self.console.print(f"{t['name']}: N* {t['n_params']:.3g} lies {t['outside_searched_n']} the searched "
                                   "n_params range (no run there: the law's extrapolation in N)")
        where = f" Result: {study_dir}/result.json" if study_dir is not None else ""
        self.console.print(f"N counts non-embedding matmul parameters; C = 6ND.{where}")


RAY_NOTICE = re.compile(r"^(?:\x1b\[[0-9;]*m)*\((?:raylet|autoscaler|gcs)[^)]*\)")  # Ray's prefix, maybe coloured


class OneLineRayNotices(io.TextIOBase):
    """A text stream that passes everything to `stream`, except that a notice Ray's driver prints for the cluster
    ("(raylet) The node with node id ... has been marked dead because ...", several lines with tabs) becomes its
    first line, cut to MAX_LINE characters: Ray prints such notices from a thread of its own onto sys.stdout, in the
    middle of the study's progress lines."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        if RAY_NOTICE.match(text) and "\n" in text.rstrip("\n"):
            first = text.strip().splitlines()[0].replace("\t", " ").rstrip()
            end = "\n" if text.endswith("\n") else ""  # print() writes its newline apart
            text = (first if len(first) <= MAX_LINE else first[: MAX_LINE - 3] + "...") + end
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self):
        return self.stream.encoding

    def fileno(self) -> int:
        return self.stream.fileno()


@contextlib.contextmanager
def one_line_ray_notices():
    """sys.stdout and sys.stderr as OneLineRayNotices while a study runs (run_study), restored afterwards."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = OneLineRayNotices(saved[0]), OneLineRayNotices(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
