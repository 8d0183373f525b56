"""The FLOPs/runs-to-tolerance forecast (fitting/forecast.py) on half-width histories of known shape."""

import numpy as np
import pytest

from fitting.forecast import RATE_PRIOR, forecast_to_tolerance


def test_inverse_square_root_history_is_extrapolated_to_the_tolerance():
    flops = np.geomspace(1e18, 1e19, 20)
    runs = np.linspace(20, 200, 20)
    hw = 0.4 * (flops / 1e18) ** -0.5  # 0.126 at 1e19: tolerance 0.10 needs (0.126/0.1)^2 = 1.6x more
    f = forecast_to_tolerance(flops, runs, hw, 0.10)
    assert f.rate == pytest.approx(0.5, abs=0.02)
    assert f.flops_needed == pytest.approx(1e19 * (hw[-1] / 0.10) ** 2, rel=0.05)
    assert f.runs_needed > 200
    assert f.reachable(3e19, 500) and not f.reachable(1.2e19, 500) and not f.reachable(3e19, 250)


def test_a_stalled_history_forecasts_far_beyond_the_spend_and_reached_is_the_spend():
    flops = np.geomspace(1e18, 1e20, 30)
    hw = 0.3 * (flops / 1e18) ** -0.05  # barely moving: the clipped rate (0.2) makes the forecast huge
    f = forecast_to_tolerance(flops, np.arange(1, 31), hw, 0.10)
    assert f.rate == pytest.approx(0.2, abs=0.05)
    assert f.flops_needed > 1e21
    done = forecast_to_tolerance([1e18, 2e18], [10, 20], [0.2, 0.08], 0.10)
    assert done.flops_needed == 2e18 and done.runs_needed == 20


def test_one_reading_uses_the_prior_rate_and_an_unidentified_target_is_infinite():
    f = forecast_to_tolerance([1e19], [50], [0.2], 0.10)
    assert f.rate == RATE_PRIOR and f.flops_needed == pytest.approx(4e19)
    g = forecast_to_tolerance([1e18, 1e19], [10, 50], [0.3, float("inf")], 0.10)
    assert g.flops_needed == float("inf") and g.to_dict()["flops_needed"] is None
    with pytest.raises(ValueError, match="lengths"):
        forecast_to_tolerance([1e18], [1, 2], [0.1], 0.1)
