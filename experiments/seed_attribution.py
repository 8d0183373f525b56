"""Which part of the initialisation carries a run's seed-to-seed loss deviation: the input embedding, the
transformer blocks or the output head. A CPU proxy: it says where to look on the GPU, not what the GPU trainer
does.

    PYTHONPATH=. python3 experiments/seed_attribution.py --device cpu --seq-len 128 --eval-samples 4096 \
        --mix knowledge=0.5,code=0.3,general=0.2 --set code_source=stdlib --set general_source=stdlib \
        --rows experiments/results/seed_attribution_cpu.jsonl                   # ~123k params, 6 seeds, 2 cores
    PYTHONPATH=. python3 experiments/seed_attribution.py --device cpu --point 7e4@2e11 --seq-len 64 \
        --eval-samples 16 --seeds 0,1 --rows /tmp/attr_smoke.jsonl                                  # smoke

In the study's data order every seed reads the same windows in the same order (trainers/data.py), so the seed
draws only the initialisation. For a group of parameters ("embed": embed.weight; "blocks": every parameter of
blocks.*; "head": head.weight and final_norm) a run takes that group's tensors from its own seed's draw and every
other tensor from the draw of BASE_SEED; "all" is the normal run, every tensor from the run's seed. The spread
over seeds of a group's runs is the part of the seed noise that group's draw causes on its own. If the parts act
independently and additively, var(embed) + var(blocks) + var(head) is near var(all).

Every (group, seed) run is appended to --rows at once; a rerun with the same --rows trains only what is missing.
Seed BASE_SEED is the same run in every group: it is trained once and recorded under each group (`reused`).
Rows: group, seed, n_params, n_tokens, shape, losses, domain_losses, final_train_loss, wall_s, settings
fingerprint, gpu, torch, commit, date. The printout: per loss, the relative sample std (std / mean, ddof = 1)
over seeds of each group, the additivity check, and the per-seed knowledge and code losses.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))  # _provenance, _trainer_flags
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the repository root

from _provenance import append_rows, environment  # noqa: E402  (experiments/ and benchmarks/ are on sys.path)
from _trainer_runs import (  # noqa: E402
    add_backend_args,
    curve_summary,
    loss_items,
    make_backend,
    parse_points,
    parse_seeds,
    settings_fingerprint,
    tokens_for_budget,
    training_settings,
)

from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402
from trainers.cli import parse_pairs  # noqa: E402
from trainers.shapes import count_params  # noqa: E402
from trainers.spec import RunSpec  # noqa: E402
from trainers.torch_backend import TorchBackend  # noqa: E402

GROUPS = ("all", "embed", "blocks", "head")
BASE_SEED = 0  # the draw every tensor outside the chosen group takes
RUN_FIELDS = ("status", "n_params", "n_tokens", "shape", "losses", "domain_losses", "loss_errors", "final_train_loss",
              "wall_s")  # what `train` returns, the same for every group's base-seed run


def group_parameters(model, group: str) -> dict[str, torch.Tensor]:
    """The named parameters of a group of trainers/model.py's Transformer ("all": every one)."""
    def member(name: str) -> bool:
        if group == "embed":
            return name == "embed.weight"
        if group == "blocks":
            return name.startswith("blocks.")
        if group == "head":
            return name in ("head.weight", "final_norm")
        return group == "all"

    return {name: p for name, p in model.named_parameters() if member(name)}


@torch.no_grad()
def redraw_group(model, group: str, seed: int, base_seed: int, init_std: float, scheme: str) -> None:
    """Initialise `model` so that the tensors of `group` are seed's draw and every other tensor base_seed's."""
    torch.manual_seed(seed)
    model.init_weights(init_std, scheme)
    if group == "all":
        return
    kept = {name: p.clone() for name, p in group_parameters(model, group).items()}
    torch.manual_seed(base_seed)
    model.init_weights(init_std, scheme)
    for name, p in group_parameters(model, group).items():
        p.copy_(kept[name])


class GroupDrawBackend(TorchBackend):
    """TorchBackend whose fresh runs draw only `group`'s tensors from the run's seed (redraw_group)."""

    def __init__(self, group: str, **kwargs):
        super().__init__(**kwargs)
        self.group = group

    def _resume(self, plan, run_dir, began=None):
        state = super()._resume(plan, run_dir, began)
        if self.group != "all" and state.step == 0:
            redraw_group(state.model, self.group, plan.spec.seed, BASE_SEED, plan.hp.init_std, plan.hp.init_scheme)
        return state


def train(backend: GroupDrawBackend, spec: RunSpec) -> dict:
    """One run in a temporary directory: its result and final training loss as row fields."""
    cfg, _, _ = backend.plan(spec)
    with tempfile.TemporaryDirectory(prefix="skillscale-seed-attribution-") as tmp:
        start = time.perf_counter()
        result = backend.run(spec, Path(tmp) / "run")
        wall = time.perf_counter() - start
        curve = curve_summary(Path(tmp) / "run" / "loss_curve.parquet")
    return {"status": result.status, "n_params": count_params(cfg), "n_tokens": int(spec.n_tokens),
            "shape": f"{cfg.d_model}x{cfg.n_layers}", "losses": result.losses, "domain_losses": result.domain_losses,
            "loss_errors": result.loss_errors, "final_train_loss": curve.get("final_train_loss"), "wall_s": wall}


def recorded_rows(path: str) -> list[dict]:
    """This script's rows in --rows (they carry no `key`, unlike _trainer_runs.read_rows' run rows)."""
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def run_all(args, groups: list[str], seeds: list[int]) -> list[dict]:
    """Train every (group, seed) not yet in --rows; returns this point's rows (recorded and new)."""
    mix = parse_pairs(args.mix, "--mix")
    (target_n, budget), = parse_points(args.point, "--point")
    base = make_backend(args)
    backends = {g: GroupDrawBackend(g, trainer=base.trainer, data=base.data, cache=base.cache) for g in groups}
    n_tokens = tokens_for_budget(base, target_n, budget, mix)
    fingerprint = settings_fingerprint(base)
    n_params = count_params(base.plan(RunSpec(n_params=int(target_n), n_tokens=n_tokens, mix=mix))[0])
    same_point = {"n_params": n_params, "n_tokens": n_tokens, "fingerprint": fingerprint, "mix": mix}
    rows = [r for r in recorded_rows(args.rows) if all(r.get(k) == v for k, v in same_point.items())]
    done = {(r["group"], r["seed"]) for r in rows}
    trained_once = {k: v for k, v in next((r for r in rows if r["seed"] == BASE_SEED), {}).items()
                    if k in RUN_FIELDS} or None
    env = environment(base.device)
    t0 = time.perf_counter()
    for seed in seeds:
        todo = [g for g in groups if (g, seed) not in done]
        if not todo:
            continue
        spec = RunSpec(n_params=int(target_n), n_tokens=n_tokens, mix=mix, seed=seed, hparams={})
        shared = trained_once if seed == BASE_SEED else None
        for group in todo:
            fields = shared if shared is not None else train(backends[group], spec)
            row = {"group": group, "seed": seed, **fields, "reused": shared is not None, "target_n": target_n,
                   "budget": budget, "mix": mix, "run_id": spec.run_id, "base_seed": BASE_SEED,
                   "fingerprint": fingerprint, "settings": training_settings(base), **env,
                   "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
            append_rows(args.rows, [row])
            rows.append(row)
            if seed == BASE_SEED:
                shared = fields  # every group's base-seed run is this one
            losses = " ".join(f"{k}={v:.4f}" for k, v in sorted(fields["losses"].items()))
            print(f"{group} seed={seed} {fields['shape']} N={n_params:,} D={n_tokens:,}: {fields['status']} {losses} "
                  f"{fields['wall_s']:.0f} s{' (reused)' if row['reused'] else ''}, t={time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    return rows


def report(rows: list[dict], groups: list[str], seeds: list[int]) -> None:
    """Relative std per group and loss, the additivity of the parts' variances, per-seed skill losses."""
    values: dict[str, dict[int, dict[str, float]]] = {g: {} for g in groups}
    for r in rows:
        if r["group"] in values and r["seed"] in seeds and r["status"] == "ok":
            values[r["group"]][r["seed"]] = loss_items(r)
    names = sorted(set.intersection(*(set(v) for by_seed in values.values() for v in by_seed.values())))

    def column(group: str, name: str) -> list[float]:
        return [values[group][s][name] for s in sorted(values[group])]

    print("relative sample std over seeds (std / mean)")
    print(f"{'loss':>18} " + " ".join(f"{g + ' (' + str(len(values[g])) + ')':>12}" for g in groups))
    for name in names:
        cells = []
        for g in groups:
            v = column(g, name)
            cells.append(f"{statistics.stdev(v) / statistics.fmean(v):12.2%}" if len(v) >= 2 else f"{'-':>12}")
        print(f"{name:>18} " + " ".join(cells))
    parts = [g for g in ("embed", "blocks", "head") if g in groups]
    if "all" in groups and parts:
        common = sorted(set.intersection(*(set(values[g]) for g in ["all", *parts])))
        print(f"\nadditivity over seeds {common}: var({' + '.join(parts)}) against var(all)")
        print(f"{'loss':>18} {'sum of parts':>12} {'var(all)':>12} {'ratio':>7}")
        for name in names if len(common) >= 2 else []:
            var = {g: statistics.variance([values[g][s][name] for s in common]) for g in ["all", *parts]}
            total = sum(var[g] for g in parts)
            ratio = f"{total / var['all']:7.2f}" if var["all"] else f"{'-':>7}"
            print(f"{name:>18} {total:12.3e} {var['all']:12.3e} {ratio}")
    for name in [n for n in ("knowledge", "code") if n in names]:
        print(f"\n{name} per seed")
        print(f"{'group':>8} " + " ".join(f"{'seed ' + str(s):>8}" for s in seeds))
        for g in groups:
            print(f"{g:>8} " + " ".join(f"{values[g][s][name]:8.4f}" if s in values[g] else f"{'-':>8}"
                                        for s in seeds))


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--point", default="1.2e5@1.8e12", help="one N@C: target N and the budget C = 6 N D")
    p.add_argument("--seeds", default="0,1,2,3,4,5")
    p.add_argument("--groups", default=",".join(GROUPS), help=f"comma separated, of {', '.join(GROUPS)}")
    p.add_argument("--rows", required=True, help="JSON-lines file of run rows: read to resume, appended to")
    add_backend_args(p)
    args = p.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
        if len(seeds) < 2 or len(set(seeds)) != len(seeds):
            raise InputError(f"--seeds: need at least two distinct seeds for a standard deviation, got {args.seeds!r}")
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        if not groups or not set(groups) <= set(GROUPS) or len(set(groups)) != len(groups):
            raise InputError(f"--groups: expected distinct names of {', '.join(GROUPS)}, got {args.groups!r}")
        if len(parse_points(args.point, "--point")) != 1:
            raise InputError(f"--point: expected one N@C point, got {args.point!r}")
        rows = run_all(args, groups, seeds)
    except InputError as exc:
        print(f"seed_attribution: {exc}", file=sys.stderr)
        return 2
    report(rows, groups, seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
