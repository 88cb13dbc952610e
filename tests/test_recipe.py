"""The recipe's numbers act as stated: AdamW's weight decay, 02's ridge's leave-one-out choice."""

from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import run_cells

import utils


def finetune_optimizer(cfg, steps):
    """The schedule, AdamW and the shrinkage of a decayed weight exactly as notebook 03's cells
    make and compute them."""
    variables = run_cells("03_finetune", "optimizer", utils=utils, keras=keras, np=np, cfg=cfg,
                          train=range(steps))
    return variables["schedule"], variables["optimizer"], variables["shrink"]


def test_adamw_decay_shrinks_the_weights_by_what_the_setting_implies_and_spares_bn_and_biases():
    cfg = replace(utils.Config(), finetune_epochs=3)
    steps = 20
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(1)(keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs)))
    model = keras.Model(inputs, outputs)
    before = [w.numpy().copy() for w in model.trainable_weights]
    _, optimizer, shrink = finetune_optimizer(cfg, steps)
    for _ in range(steps * cfg.finetune_epochs):  # zero gradients: only the decay moves weights
        optimizer.apply_gradients([(np.zeros(w.shape, "float32"), w) for w in model.trainable_weights])
    factor = 1 - shrink
    assert factor < 1
    for weight, old in zip(model.trainable_weights, before, strict=True):
        if weight.name == "kernel":
            np.testing.assert_allclose(weight.numpy(), old * factor, rtol=1e-5)
        else:                                   # bias, gamma, beta
            np.testing.assert_array_equal(weight.numpy(), old)


def test_the_default_decay_acts_where_the_papers_did_not():
    steps, cfg = 124, utils.Config()            # 4,400 x 0.9 training faces in batches of 32
    assert finetune_optimizer(cfg, steps)[2] == pytest.approx(0.0046, abs=5e-5)  # Config's 0.46 %
    assert finetune_optimizer(replace(cfg, weight_decay=1e-4), steps)[2] < 2e-5  # the paper's: nothing
    assert finetune_optimizer(cfg, 93)[2] == pytest.approx(0.0035, abs=5e-5)     # 60/40: 2,970 faces


def brute_force_loo(a: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """Leave each sample out, refit ridge with its own intercept, predict the sample."""
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        mean_a, mean_y = a[keep].mean(0), y[keep].mean()
        centred = a[keep] - mean_a
        coef = np.linalg.solve(centred.T @ centred + alpha * np.eye(a.shape[1]),
                               centred.T @ (y[keep] - mean_y))
        errors.append(y[i] - mean_y - (a[i] - mean_a) @ coef)
    return float(np.mean(np.square(errors)))


@pytest.mark.parametrize("samples, features", [(40, 5), (20, 30)])  # more features than samples too
def test_02s_ridge_chooses_its_penalty_by_the_exact_leave_one_out_error(samples, features):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, features)) * rng.uniform(0.5, 3, features)
    y = x @ rng.normal(size=features) + rng.normal(0, 0.5, samples)
    held = {"x": {"train": x, "val": x[:3]}, "y": {"train": {"score": y}}}  # as notebook 02's cells hold them
    ridge = run_cells("02_frozen_head", "ridge", **held)["ridge"]
    standardised = ridge[0].transform(x)
    errors = {alpha: brute_force_loo(standardised, y, alpha) for alpha in ridge[-1].alphas}
    assert ridge[-1].alpha_ == min(errors, key=errors.get)
    assert -ridge[-1].best_score_ == pytest.approx(errors[ridge[-1].alpha_], rel=1e-6)
