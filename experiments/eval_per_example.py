"""Per-example evaluation losses of seed replicates: where between seeds does a skill's loss differ?

    PYTHONPATH=. python3 experiments/eval_per_example.py --points 2.37e6@1e15 --seeds 0,1,2,3,4 --out $OUT/per_example

A diagnostic for issue #15's seed noise. For each (N@C, seed) it trains one run through TorchBackend.run (the
defaults of experiments/_trainer_runs.py) and then scores every evaluation example of every skill with the
trained model, writing `<out>/<run>.npz`: per skill the examples' summed answer NLL and answer-token counts
(`<skill>_sums`, `<skill>_counts`, one entry per example), and per held-out domain the rows' mean NLL
(`domain_<name>`). Comparing replicates example by example tells a spread carried by a few examples (a
property of the evaluation set) from one spread over all of them (a property of the training).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))  # _provenance, _trainer_flags
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the repository root

from _trainer_runs import (  # noqa: E402
    PlannedRun,
    add_backend_args,
    make_backend,
    parse_points,
    parse_seeds,
    tokens_for_budget,
)

from skillscale.atomic import atomic_open  # noqa: E402
from skillscale.errors import InputError, OneLineArgumentParser  # noqa: E402
from trainers.cli import parse_pairs  # noqa: E402
from trainers.evaluate import eval_batch_tokens, row_nll  # noqa: E402
from trainers.spec import RunSpec  # noqa: E402


def per_example(backend, model) -> dict[str, np.ndarray]:
    """Per-example sums and counts of every skill and per-row domain losses; the evaluator is the backend's
    newest (one per data settings: this script's runs share one), `model` the run's trained model."""
    evaluator = next(reversed(backend.cache.evaluators.values()))
    out = {}
    for skill, ev in sorted(evaluator.skills.items()):
        sums, counts = row_nll(model, ev.inputs, ev.targets, backend.device, eval_batch_tokens(model.cfg.vocab_size))
        n = int(ev.example.max()) + 1
        out[f"{skill}_sums"] = np.bincount(ev.example, weights=sums, minlength=n)
        out[f"{skill}_counts"] = np.bincount(ev.example, weights=counts.astype(np.float64), minlength=n)
        out[f"{skill}_weights"] = np.bincount(ev.example, weights=ev.weights, minlength=n) / np.maximum(
            np.bincount(ev.example, minlength=n), 1)
    for name, (x, y) in sorted(evaluator.domains.items()):
        sums, counts = row_nll(model, x, y, backend.device)
        out[f"domain_{name}"] = sums / np.maximum(counts, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", required=True, help="N@C pairs, comma separated")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", required=True, help="directory for the .npz files")
    p.add_argument("--hparams", default="{}", help='JSON overrides of the rule, e.g. {"min_lr_ratio": 0}; '
                   '"lr_multiplier" scales the rule\'s LR')
    add_backend_args(p)
    args = p.parse_args(argv)
    try:
        mix = parse_pairs(args.mix, "--mix")
        points, seeds = parse_points(args.points, "--points"), parse_seeds(args.seeds)
        overrides = json.loads(args.hparams)
        if not isinstance(overrides, dict):
            raise InputError(f"--hparams: expected a JSON object, got {args.hparams!r}")
        multiplier = overrides.pop("lr_multiplier", 1.0)
        if not isinstance(multiplier, int | float) or isinstance(multiplier, bool) or not multiplier > 0:
            raise InputError(f"--hparams: lr_multiplier must be a positive number, got {multiplier!r}")
        backend = make_backend(args)
    except (InputError, json.JSONDecodeError) as exc:
        print(f"eval_per_example: {exc}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="skillscale-per-example-")
    for target_n, budget in points:
        for seed in seeds:
            run = PlannedRun("per_example", target_n, tokens_for_budget(backend, target_n, budget, mix), budget,
                             seed=seed, lr_multiplier=float(multiplier), overrides=tuple(sorted(overrides.items())))
            rule_lr = backend.plan(RunSpec(n_params=int(target_n), n_tokens=run.n_tokens, mix=mix))[1].lr
            spec = run.spec(mix, rule_lr)  # overrides and LR multiplier as every measurement script applies them
            result = backend.run(spec, os.path.join(runs_dir, spec.run_id))
            model = next(reversed(backend.cache.models.values()))[0]
            arrays = per_example(backend, model)
            with atomic_open(os.path.join(args.out, f"{spec.run_id}.npz")) as f:
                np.savez_compressed(f, **arrays)
            print(f"{spec.run_id}: {result.status} {result.losses} {result.domain_losses}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
