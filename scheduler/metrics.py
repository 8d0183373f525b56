"""Custom Ray metrics for the dashboard (Metrics view / Prometheus): the study's state as gauges.

    skillscale_runs_in_flight, skillscale_runs_done, skillscale_flops_spent, skillscale_flops_cap,
    skillscale_target_n_star{target}, skillscale_target_rel_halfwidth{target}

They are exported by the Ray node the controller runs on; Grafana/Prometheus setup is Ray's.
"""

from __future__ import annotations

from ray.util.metrics import Gauge

from scheduler.config import StudyConfig


class StudyMetrics:
    def __init__(self, cfg: StudyConfig):
        tags = {"study": cfg.name}
        self._tags = tags
        keys = ("study",)
        self.in_flight = Gauge("skillscale_runs_in_flight", "runs training now", tag_keys=keys)
        self.done = Gauge("skillscale_runs_done", "runs finished (ok, diverged or failed)", tag_keys=keys)
        self.flops = Gauge("skillscale_flops_spent", "training FLOPs of finished runs (C = 6ND)", tag_keys=keys)
        self.cap = Gauge("skillscale_flops_cap", "the study's compute cap (FLOPs)", tag_keys=keys)
        self.n_star = Gauge("skillscale_target_n_star", "current N*(C_target) estimate", tag_keys=keys + ("target",))
        self.halfwidth = Gauge("skillscale_target_rel_halfwidth", "relative 95% CI half-width of N*(C_target)",
                               tag_keys=keys + ("target",))
        self.cap.set(cfg.compute_cap, tags=tags)

    def publish(self, controller) -> None:
        tags = self._tags
        self.in_flight.set(len(controller.in_flight), tags=tags)
        self.done.set(len(controller.ledger), tags=tags)
        self.flops.set(controller.ledger.flops_spent(), tags=tags)
        if controller.estimates is not None:
            for t in controller.estimates.targets:
                self.n_star.set(t.n_params, tags={**tags, "target": t.name})
                self.halfwidth.set(t.rel_halfwidth, tags={**tags, "target": t.name})
