"""Fuzz the study-config loader: no input, however odd, produces anything but a config or one InputError line."""

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.config import load_study_config, parse_study_config
from skillscale.errors import InputError
from tests.conftest import SMALL_STUDY

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["1e18", "-1", "nan", "inf", "simplex", "torch"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
PATHS = [("name",), ("skills",), ("domains",), ("mix",), ("mix", "fixed"), ("mix", "space"), ("n_params",),
         ("n_tokens",), ("flops",), ("targets",), ("targets", 0), ("targets", 0, "weights"), ("targets", 0, "flops"),
         ("tolerance",), ("compute_cap",), ("max_concurrent",), ("resources",), ("backend",), ("backend", "name"),
         ("proposer",), ("seed",), ("skill_domains",)]


def _check(data):
    try:
        parse_study_config(data, "fuzz.yaml")
    except InputError as exc:
        message = str(exc)
        assert message.startswith("fuzz.yaml") and "\n" not in message, message


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=values)
def test_one_field_replaced_by_anything(path, value):
    """(Found a bug once: a key containing a newline broke the one-line error.)"""
    data = copy.deepcopy(SMALL_STUDY)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    _check(data)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(values)
def test_whole_document_is_anything(value):
    _check(value)


@settings(max_examples=50, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_arbitrary_yaml_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "study.yaml"
    path.write_text(text)
    try:
        load_study_config(path)
    except InputError as exc:  # anything else (a yaml.YAMLError, a TypeError) fails the test
        assert "\n" not in str(exc)
