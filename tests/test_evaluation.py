"""Evaluation: metrics against hand-worked values and scipy, intervals, groups, folds."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import utils


def test_metrics_against_values_worked_out_by_hand():
    true, pred = [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 5.0]
    metrics = utils.regression_metrics(true, pred)
    assert metrics["mae"] == pytest.approx((0.5 + 0 + 0.5 + 1) / 4)
    assert metrics["rmse"] == pytest.approx(np.sqrt((0.25 + 0 + 0.25 + 1) / 4))
    # Pearson by hand: deviations from the means 2.5 and 2.75 are (-1.5, -.5, .5, 1.5) and
    # (-1.25, -.75, -.25, 2.25): products sum to 5.5, squares to 5 and 7.25
    assert metrics["pc"] == pytest.approx(5.5 / np.sqrt(5 * 7.25))
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(true, pred)[0]) and metrics["n"] == 4


def test_metrics_agree_with_scipy():
    rng = np.random.default_rng(0)
    true = rng.uniform(1, 5, 500)
    pred = true + rng.normal(0, 0.4, 500)
    metrics = utils.regression_metrics(true, pred)
    assert metrics["pc"] == pytest.approx(stats.pearsonr(true, pred)[0])
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(true, pred)[0])


def test_a_perfect_prediction():
    metrics = utils.regression_metrics([1, 2, 3.5], [1, 2, 3.5])
    assert metrics["pc"] == pytest.approx(1) and metrics["mae"] == 0 and metrics["rmse"] == 0


def test_a_constant_prediction_gets_a_message_not_nan():
    with pytest.raises(utils.ConstantPredictionError, match="predicts 3.000 for every face"):
        utils.regression_metrics([1, 2, 3], [3, 3, 3])


def test_bootstrap_intervals_contain_the_point_and_shrink_with_more_faces():
    rng = np.random.default_rng(1)
    true = rng.uniform(1, 5, 2000)
    pred = true + rng.normal(0, 0.5, 2000)
    small = utils.bootstrap_metrics(true[:200], pred[:200], samples=500)
    large = utils.bootstrap_metrics(true, pred, samples=500)
    for name in ("pc", "mae", "rmse", "spearman"):
        value, low, high = large[name]
        assert low <= value <= high
        assert high - low < small[name][2] - small[name][1]
    assert large["mae"][1] < 0.4 < large["mae"][2]  # the noise's true MAE is 0.5 * sqrt(2/pi)


def test_published_results_follow_the_protocol():
    assert set(utils.published_results("fold3")["protocol"]) == {"5-fold CV, mean"}
    sixty = utils.published_results("60/40").set_index("model")
    assert sixty.loc["ResNeXt-50", "PC"] == 0.8777 and len(sixty) == 4


def predictions(errors: dict[str, float], n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = []
    for group, error in errors.items():
        true = rng.uniform(1.5, 4.5, n)
        rows.append(pd.DataFrame({"group": group, "score": true,
                                  "finetuned": true + rng.normal(0, error, n)}))
    return pd.concat(rows, ignore_index=True)


def test_group_metrics_and_a_group_served_worse_is_named():
    table = utils.group_metrics(predictions({"AF": 0.2, "AM": 0.2, "CF": 0.2, "CM": 0.5}))
    assert list(table.index) == ["AF", "AM", "CF", "CM"] and (table["N"] == 120).all()
    note = utils.group_gap_note(table)
    assert note.startswith("Caucasian male faces (CM, n=120) are served worse")
    assert "AF" not in note


def test_no_group_named_when_they_are_served_alike():
    table = utils.group_metrics(predictions({"AF": 0.3, "AM": 0.3, "CF": 0.3, "CM": 0.3}, n=2000))
    assert utils.group_gap_note(table).startswith("No group is served markedly worse")


def test_aggregation_over_folds():
    reports = [{"protocol": f"fold{k}", "pc": pc, "mae": mae, "rmse": mae + 0.1, "n": 1100}
               for k, (pc, mae) in enumerate([(0.90, 0.22), (0.92, 0.20), (0.88, 0.24),
                                               (0.91, 0.21), (0.89, 0.23)], start=1)]
    table = utils.aggregate_folds(reports)
    assert table.loc["mean", "PC"] == pytest.approx(0.90)
    assert table.loc["SD", "PC"] == pytest.approx(np.std([0.90, 0.92, 0.88, 0.91, 0.89], ddof=1))
    assert table.loc["mean", "MAE"] == pytest.approx(0.22)
    assert table.loc["fold2", "N"] == 1100


def test_human_comparison_needs_the_raters():
    assert utils.human_comparison({"pc": 0.9, "human": None}) is None
    human = {"mean_rater_vs_others_pc": 0.6, "split_half_pc": 0.9, "full_panel_reliability": 0.95}
    table = utils.human_comparison({"pc": 0.91, "human": human})
    assert table["PC"].tolist() == [0.91, 0.6, 0.9, 0.95]
