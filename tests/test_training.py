"""Training with notebooks 02 and 03's own cells: it does not learn shuffled labels (the smoke
series shows it learns real ones, tests/test_notebooks.py), it records what 05 needs, a fine-tune
needs stage 1, modern backbones train, the distribution head learns. Run identity and resumption
are in test_runs.py; a finished fine-tune kept, not trained again, in test_notebook_use.py."""

import shutil
from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import train

import utils
from fbp import dataset, errors, runs, settings, synthetic

SMOKE = utils.Config().smoke()


def held_out_pc(root, monkeypatch, cfg=SMOKE) -> float:
    """Both stages in smoke mode, then PC on the protocol's test part."""
    train(cfg, root, monkeypatch)
    folder = runs._run_dir(cfg, utils.dataset_fingerprint(dataset.all_labels(root)))
    model = keras.models.load_model(runs.Run.at(folder).model_path())
    test = utils.load_protocol(root, cfg.protocol)["test"]
    return utils.regression_metrics(test["score"], utils.predict_scores(model, test, cfg.image_size))["PC"]


def shuffled_copy(root, destination):
    """The same dataset with the scores shuffled across images in every label file."""
    copy = shutil.copytree(root, destination / dataset._DATASET_DIRNAME)
    labels = dataset.all_labels(copy)
    shuffled = dict(zip(labels["file"], np.random.default_rng(0).permutation(labels["score"]),
                        strict=True))
    for path in (copy / "train_test_files").rglob("*.txt"):
        lines = [line.split() for line in path.read_text().splitlines() if line]
        path.write_text("".join(f"{n} {shuffled[n]:.6f}\n" for n, _ in lines))
    return copy


def test_the_two_stages_do_not_learn_shuffled_labels(synthetic_root, work, tmp_path, monkeypatch):
    assert held_out_pc(shuffled_copy(synthetic_root, tmp_path), monkeypatch) < 0.5


def test_the_run_record_holds_what_05_needs(small_root, work, monkeypatch):
    cfg = replace(SMOKE, protocol="60/40", finetune_epochs=1)
    record = train(cfg, small_root, monkeypatch, ["02_frozen_head"])["record"]
    assert runs._run_dir(cfg, record["dataset"]).name == f"60-40-{record['fingerprint']}"
    assert record["config"]["protocol"] == "60/40" and record["config"]["image_size"] == 64
    assert record["dataset"] == utils.dataset_fingerprint(dataset.all_labels(small_root))
    assert record["recipe"] == settings.RECIPE_VERSION
    assert record["framing"] == synthetic.SYNTHETIC_FRAMING and record["smoke"] is False
    folder = runs._run_dir(cfg, record["dataset"])
    reference = runs.Run.at(folder).reference()  # the percentile's reference: stage 1's test predictions
    test = utils.load_protocol(small_root, "60/40")["test"]
    model = keras.models.load_model(runs.Run.at(folder).model_path())
    predicted = utils.predict_scores(model, test, cfg.image_size)
    np.testing.assert_allclose(reference.predicted, predicted, atol=1e-3)
    np.testing.assert_allclose(reference.true, test["score"], atol=1e-4)
    assert reference.map_scale > 0
    assert "frozen head model's predictions for the 24 test faces" in reference.source
    assert set(record["versions"]) >= {"tensorflow", "keras", "python"}
    assert record["sizes"] == {"train": 33, "val": 3, "test": 24}  # 10 % of each group, rounded


def test_fine_tune_needs_stage_one(small_root, work, monkeypatch):
    with pytest.raises(errors.RunNotFoundError, match="run notebook 02"):
        train(SMOKE, small_root, monkeypatch, ["03_finetune"])


@pytest.mark.parametrize("backbone", ["ConvNeXtTiny", "EfficientNetV2S"])
def test_a_modern_backbone_trains_both_stages_and_records_its_cost(backbone, small_root, work, monkeypatch):
    cfg = replace(SMOKE, backbone=backbone, finetune_epochs=1)
    train(cfg, small_root, monkeypatch)
    folder = runs._run_dir(cfg, utils.dataset_fingerprint(dataset.all_labels(small_root)))
    record = utils.read_json(folder / "run.json")
    assert record["finished"] and record["config"]["backbone"] == backbone
    tuned = record["finetune"]
    assert tuned["runtime"] == "CPU" and tuned["peak_gpu_gb"] is None and tuned["seconds_per_epoch"] > 0
    model = keras.models.load_model(runs.Run.at(folder).model_path())
    names = {"ConvNeXtTiny": "convnext_tiny", "EfficientNetV2S": "efficientnetv2-s"}
    assert utils.backbone_of(model).name == names[backbone]
    test = utils.load_protocol(small_root, "fold1")["test"]
    assert np.isfinite(utils.predict_scores(model, test, cfg.image_size)).all()


def predicted_spread(shares: np.ndarray) -> np.ndarray:
    """The SD of the ratings that shares of raters per rating (1-5) describe."""
    ratings = np.array(utils.RATINGS, float)
    mean = shares @ ratings
    return np.sqrt(np.clip(shares @ ratings**2 - mean**2, 0, None))


def test_the_distribution_head_learns_how_much_the_raters_disagree(tmp_path, work, monkeypatch):
    from scipy import stats

    # 1,000 faces whose mouths show how much their raters disagree (data/synthetic.py); the head
    # learns on the frozen (untrained) backbone's features, as notebook 02 does; at 3e-4 for 60 epochs,
    # as at the default 1e-3 it diverges on these features (tests/README.md, "Distribution head")
    root = synthetic.make_synthetic_dataset(tmp_path / "spread", n=1000)
    cfg = replace(SMOKE, label_distribution=True, head_lr=3e-4, head_epochs=60)
    shown = train(cfg, root, monkeypatch, ["02_frozen_head"])
    test = shown["parts"]["test"]
    predicted = shown["head"].predict(shown["x"]["test"], verbose=0)
    np.testing.assert_allclose(predicted["distribution"].sum(axis=1), 1, rtol=1e-5)
    true_spread = predicted_spread(test[dataset._SHARES].to_numpy())
    assert stats.spearmanr(predicted_spread(predicted["distribution"]), true_spread)[0] > 0.4
    # the distribution's centre follows the score, and the score head still learns the score
    assert stats.pearsonr(predicted["distribution"] @ np.array(utils.RATINGS), test["score"])[0] > 0.8
    assert stats.pearsonr(predicted["score"].ravel(), test["score"])[0] > 0.8
    # and the saved model carries both heads
    folder = runs._run_dir(cfg, utils.dataset_fingerprint(dataset.all_labels(root)))
    model = keras.models.load_model(runs.Run.at(folder).model_path())
    assert set(model.output) == {"score", "distribution"}
