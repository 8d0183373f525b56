"""Custom metrics for the Ray dashboard (Metrics view / Prometheus): a StudyStatus as gauges.

    skillscale_runs_in_flight, skillscale_runs_done, skillscale_flops_spent, skillscale_flops_cap,
    skillscale_target_n_star{target}, skillscale_target_rel_halfwidth{target}

The gauge class is handed in (the controller passes ray.util.metrics.Gauge), so this module does not import
Ray. The gauges are exported by the Ray node the controller runs on; Grafana/Prometheus setup is Ray's.
"""

from __future__ import annotations

from scheduler.config import StudyConfig
from scheduler.preflight import metric_tag
from scheduler.study import StudyStatus


class StudyMetrics:
    def __init__(self, cfg: StudyConfig, gauge):
        """`gauge(name, description, tag_keys=...)` makes a gauge with `.set(value, tags=...)`."""
        tags = {"study": metric_tag(cfg.name)}  # Ray's recorder takes ASCII tag values only
        self._tags = tags
        keys = ("study",)
        self.in_flight = gauge("skillscale_runs_in_flight", "runs training now", tag_keys=keys)
        self.done = gauge("skillscale_runs_done", "runs finished (ok, diverged or failed)", tag_keys=keys)
        self.flops = gauge("skillscale_flops_spent", "training FLOPs of finished runs (C = 6ND)", tag_keys=keys)
        self.cap = gauge("skillscale_flops_cap", "the study's compute cap (FLOPs)", tag_keys=keys)
        self.n_star = gauge("skillscale_target_n_star", "current N*(C_target) estimate", tag_keys=keys + ("target",))
        self.halfwidth = gauge("skillscale_target_rel_halfwidth", "relative 95% CI half-width of N*(C_target)",
                               tag_keys=keys + ("target",))
        self.cap.set(cfg.compute_cap, tags=tags)

    def publish(self, status: StudyStatus) -> None:
        tags = self._tags
        self.in_flight.set(status.n_in_flight, tags=tags)
        self.done.set(status.n_runs, tags=tags)
        self.flops.set(status.flops_spent, tags=tags)
        for t in status.targets:
            self.n_star.set(t.n_params, tags={**tags, "target": metric_tag(t.name)})
            self.halfwidth.set(t.rel_halfwidth, tags={**tags, "target": metric_tag(t.name)})
