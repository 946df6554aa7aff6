"""Reading a sensitivity table: tolerated sparsity per group and the one-sentence ranking."""

from __future__ import annotations

import math
import re

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from prunelib.families.contract import Metric
from prunelib.results.sensitivity import sensitivity_summary, tolerated_sparsity

ACC = Metric("accuracy", True)
WER = Metric("wer", False, high=math.inf)
LEVELS = [0.0, 0.25, 0.5, 0.75]


def frame(metric: str, values: dict[str, list[float]], levels: list[float] = LEVELS) -> pd.DataFrame:
    rows = [(g, s, v) for g, vs in values.items() for s, v in zip(levels, vs)]
    return pd.DataFrame(rows, columns=["group", "sparsity", metric])


# Accuracy: "conv" is hurt most on average, "fc" least; "attn" in between.
ACC_VALUES = {
    "fc": [0.90, 0.90, 0.895, 0.885],  # mean loss 0.005
    "conv": [0.90, 0.80, 0.60, 0.30],  # mean loss 0.25
    "attn": [0.90, 0.89625, 0.85, 0.70],  # mean loss ~0.063
}
# WER goes up when worse: the same story with WER = 1 - accuracy.
WER_VALUES = {g: [1.0 - v for v in vs] for g, vs in ACC_VALUES.items()}


def order_in(text: str) -> list[str]:
    return re.findall(r"`([^`]+)` \(mean loss", text)


def test_tolerated_sparsity_higher_is_better() -> None:
    tol = tolerated_sparsity(frame("accuracy", ACC_VALUES), ACC, tolerance=0.02)
    assert tol.name == "tolerated_sparsity"
    assert tol.to_dict() == {"fc": 0.75, "conv": 0.0, "attn": 0.25}
    assert list(tol.index) == ["fc", "conv", "attn"]  # groups in the frame's order


def test_tolerated_sparsity_lower_is_better() -> None:
    tol = tolerated_sparsity(frame("wer", WER_VALUES), WER, tolerance=0.02)
    assert tol.to_dict() == {"fc": 0.75, "conv": 0.0, "attn": 0.25}


def test_getting_better_is_always_tolerated() -> None:
    acc = tolerated_sparsity(frame("accuracy", {"g": [0.5, 0.9, 0.95, 0.99]}), ACC, tolerance=0.0)
    wer = tolerated_sparsity(frame("wer", {"g": [3.0, 2.0, 1.5, 0.1]}), WER, tolerance=0.0)
    assert acc.to_dict() == wer.to_dict() == {"g": 0.75}
    # and the direction matters: the same numbers read as WER are all worse than dense
    assert tolerated_sparsity(frame("wer", {"g": [0.5, 0.9, 0.95, 0.99]}), WER, tolerance=0.0).to_dict() == {"g": 0.0}


def test_the_highest_tolerated_level_counts_even_after_a_dip() -> None:
    tol = tolerated_sparsity(frame("accuracy", {"g": [0.9, 0.7, 0.9, 0.5]}), ACC, tolerance=0.01)
    assert tol.to_dict() == {"g": 0.5}


def test_dense_is_the_lowest_sparsity_whatever_the_row_order() -> None:
    shuffled = frame("accuracy", ACC_VALUES).sample(frac=1.0, random_state=3)
    assert tolerated_sparsity(shuffled, ACC, 0.02).to_dict() == {"fc": 0.75, "conv": 0.0, "attn": 0.25}


def test_nan_levels_are_not_tolerated() -> None:
    tol = tolerated_sparsity(frame("accuracy", {"g": [0.9, 0.9, math.nan, math.nan]}), ACC, 0.01)
    assert tol.to_dict() == {"g": 0.25}


def test_wer_above_one_is_fine_with_an_infinite_high() -> None:
    tol = tolerated_sparsity(frame("wer", {"g": [1.2, 1.205, 1.5, 3.0]}), WER, tolerance=0.01)
    assert tol.to_dict() == {"g": 0.25}


def test_a_loss_of_exactly_the_tolerance_is_tolerated() -> None:
    tol = tolerated_sparsity(frame("accuracy", {"g": [0.95, 0.94, 0.5, 0.5]}), ACC, tolerance=0.01)
    assert tol.to_dict() == {"g": 0.25}


def test_summary_ranks_by_mean_loss_higher_is_better() -> None:
    text = sensitivity_summary(frame("accuracy", ACC_VALUES), ACC, tolerance=0.02)
    assert order_in(text) == ["conv", "attn", "fc"]
    assert text.startswith("Groups by accuracy lost when pruned alone")
    assert text.endswith("Most sensitive: `conv`; most tolerant: `fc`.")
    assert "`conv` (mean loss 25.0 points; within 2 up to 0 %)" in text
    assert "`fc` (mean loss 0.5 points; within 2 up to 75 %)" in text
    assert "`attn` (mean loss 6.3 points; within 2 up to 25 %)" in text


def test_summary_ranks_by_mean_loss_lower_is_better() -> None:
    text = sensitivity_summary(frame("wer", WER_VALUES), WER, tolerance=0.02)
    assert order_in(text) == ["conv", "attn", "fc"]
    assert text.startswith("Groups by wer lost")
    assert "Most sensitive: `conv`; most tolerant: `fc`." in text


def test_summary_ranks_by_the_mean_not_the_worst_level() -> None:
    # "spike" has the single worst level but a smaller mean loss than "steady".
    values = {"spike": [0.9, 0.9, 0.9, 0.5], "steady": [0.9, 0.7, 0.7, 0.7]}  # means 0.1 and 0.15
    text = sensitivity_summary(frame("accuracy", values), ACC)
    assert order_in(text) == ["steady", "spike"]


def test_summary_of_an_empty_frame() -> None:
    empty = pd.DataFrame({"group": [], "sparsity": [], "accuracy": []})
    assert sensitivity_summary(empty, ACC) == "_No sensitivity rows._"
    assert tolerated_sparsity(empty, ACC).empty


def test_summary_of_one_group() -> None:
    text = sensitivity_summary(frame("accuracy", {"only": [0.9, 0.85, 0.8, 0.7]}), ACC)
    assert "Most sensitive: `only`; most tolerant: `only`." in text


# ---------------------------------------------------------------- properties
# Dyadic values (k / 64) keep every difference exact, so mirrored frames agree to the bit.
dyadic = st.integers(0, 64).map(lambda k: k / 64)
groups = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]), st.lists(dyadic, min_size=4, max_size=4), min_size=1, max_size=5
)


@settings(max_examples=60, deadline=None)
@given(values=groups, tol_k=st.integers(0, 16))
def test_tolerated_level_is_within_tolerance_and_every_level_above_is_not_less_bad(values, tol_k) -> None:
    tolerance = tol_k / 64
    tol = tolerated_sparsity(frame("accuracy", values), ACC, tolerance)
    assert set(tol.index) == set(values)
    for g, vs in values.items():
        level = tol[g]
        assert level in LEVELS
        i = LEVELS.index(level)
        assert vs[0] - vs[i] <= tolerance
        assert all(vs[0] - v > tolerance for v in vs[i + 1 :])


@settings(max_examples=60, deadline=None)
@given(values=groups, tol_k=st.integers(0, 16))
def test_wer_mirror_of_accuracy_reads_the_same(values, tol_k) -> None:
    """WER = 1 - accuracy loses exactly what accuracy loses: same tolerance, same ranking."""
    tolerance = tol_k / 64
    acc = frame("accuracy", values)
    wer = frame("wer", {g: [1.0 - v for v in vs] for g, vs in values.items()})
    assert tolerated_sparsity(acc, ACC, tolerance).to_dict() == tolerated_sparsity(wer, WER, tolerance).to_dict()
    acc_text, wer_text = sensitivity_summary(acc, ACC, tolerance), sensitivity_summary(wer, WER, tolerance)
    assert order_in(acc_text) == order_in(wer_text)
    assert acc_text.replace("accuracy", "wer") == wer_text


@settings(max_examples=60, deadline=None)
@given(values=groups)
def test_ranking_is_by_descending_mean_loss(values) -> None:
    text = sensitivity_summary(frame("accuracy", values), ACC)
    order = order_in(text)
    assert sorted(order) == sorted(values)
    means = [sum(values[g][0] - v for v in values[g]) / 4 for g in order]
    assert means == sorted(means, reverse=True)
