"""Scaling laws for skillscale: law forms, robust fits, bootstrap ensembles, optima, what-ifs, plots.

Never imports Ray. See docs/design.md "Fitting", docs/laws.md and each module's docstring for the math.
"""

from fitting.averaging import AveragedFit, bootstrap_average, fit_average, mixture_interval, prediction_interval
from fitting.conventions import Conventions, conventions_dict, training_flops
from fitting.families import FAMILIES, LawFamily, get_family
from fitting.forecast import Forecast, forecast_to_tolerance
from fitting.isoflop import IsoflopFit, bootstrap_isoflop, fit_isoflop, group_budgets
from fitting.law import LawEnsemble, ParametricLaw, interval
from fitting.mixture import MixtureFit, fit_mixture
from fitting.noise import NoiseModel, estimate_noise
from fitting.optimum import composition_exponent, composition_optimum, composition_whatif
from fitting.parametric import ParametricFit, bootstrap_parametric, fit_parametric
from fitting.report import fit_report, loss_interval
from fitting.table import RunsTable, bootstrap_skills, fit_skills, load_runs
from fitting.truths import CrossTermLaw, RepeatedDataLaw

__all__ = [
    "FAMILIES", "AveragedFit", "LawFamily", "bootstrap_average", "fit_average", "get_family", "mixture_interval",
    "prediction_interval", "Conventions", "CrossTermLaw", "Forecast", "IsoflopFit", "LawEnsemble", "MixtureFit",
    "NoiseModel",
    "ParametricFit", "ParametricLaw", "RepeatedDataLaw", "RunsTable", "bootstrap_isoflop", "bootstrap_parametric",
    "bootstrap_skills", "composition_exponent", "composition_optimum", "composition_whatif", "conventions_dict",
    "estimate_noise", "fit_isoflop", "fit_mixture", "fit_parametric", "fit_report", "fit_skills",
    "forecast_to_tolerance", "group_budgets", "interval", "load_runs", "loss_interval", "training_flops",
]
