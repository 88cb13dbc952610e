"""The model as notebook 02 builds it: the blog's parameter counts, frozen BatchNormalization,
ImageNet weights by default, saving, mixed precision, the feature cache."""

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import model_from_notebook, run_cells

import utils
from fbp import dataset, errors, network, runs

SIZE = 64


@pytest.fixture(scope="module")
def model():
    return model_from_notebook(SIZE)


def trainable(model) -> int:
    """Number of trainable parameters."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_frozen_it_has_the_blogs_2049_trainable_parameters(model):
    assert trainable(model) == 2049
    assert model.count_params() == 23_589_761
    assert [layer.name for layer in model.layers] == ["image", "preprocess", "resnet50", "score"]


def test_unfrozen_everything_trains_and_batchnorm_keeps_its_statistics():
    model = model_from_notebook(SIZE)
    reference = keras.applications.ResNet50(include_top=False, pooling="avg", weights=None,
                                            input_shape=(SIZE, SIZE, 3))
    model.get_layer("resnet50").trainable = True  # as notebook 03 unfreezes it
    # every weight that can learn does: ResNet50's 23,534,592 and the head's 2,049
    assert trainable(model) == trainable(reference) + 2049 == 23_536_641
    batchnorm = [layer for layer in model.get_layer("resnet50").layers
                 if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(batchnorm) == 53 and all(isinstance(b, utils.InferenceBatchNormalization) for b in batchnorm)
    images = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(model(images, training=True)["score"], model(images, training=False)["score"],
                               rtol=1e-6)
    statistics = [keras.ops.convert_to_numpy(w) for b in batchnorm for w in b.non_trainable_weights]
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(images, {"score": np.full((4, 1), 3.0)})
    after = [keras.ops.convert_to_numpy(w) for b in batchnorm for w in b.non_trainable_weights]
    assert all(np.array_equal(a, b) for a, b in zip(statistics, after, strict=True))


def recording_resnet50(made: list):
    """A stand-in for keras.applications.ResNet50 that records its arguments and its model,
    built with weights=None (ImageNet's cannot be downloaded here)."""
    def resnet50(**kwargs):
        made.append((kwargs, keras.applications.resnet50.ResNet50(**{**kwargs, "weights": None})))
        return made[-1][1]
    return resnet50


def test_the_backbone_carries_the_loaded_resnet50s_weights(monkeypatch):
    made = []
    monkeypatch.setattr(keras.applications, "ResNet50", recording_resnet50(made))
    backbone = model_from_notebook(SIZE).get_layer("resnet50")
    original = made[0][1]
    assert original.get_config()["name"] == backbone.name
    for before, copy in zip(original.weights, backbone.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(before), keras.ops.convert_to_numpy(copy))


def test_the_default_weights_are_imagenets(monkeypatch):
    made = []
    monkeypatch.setattr(keras.applications, "ResNet50", recording_resnet50(made))
    run_cells("02_frozen_head", "model", utils=utils, keras=keras, cfg=utils.Config(image_size=32))
    assert made[0][0]["weights"] == "imagenet" and made[0][0]["include_top"] is False
    assert made[0][0]["pooling"] == "avg" and utils.Config().smoke().weights is None


def test_the_preprocessing_layer_is_resnet50s_own():
    images = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype("uint8")
    expected = keras.applications.resnet50.preprocess_input(images.astype("float32"))
    np.testing.assert_allclose(utils.ImageNetPreprocess()(images), expected, rtol=1e-6)


def test_a_saved_model_reloads_in_safe_mode_and_predicts_the_same(model, tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(images, verbose=0)["score"],
                               model.predict(images, verbose=0)["score"], rtol=1e-5, atol=1e-5)


def test_mixed_precision_computes_in_float16_but_scores_in_float32(tmp_path):
    model = model_from_notebook(32)
    assert utils.precision_policy() == "float32"  # no GPU here
    utils.use_precision(model, "mixed_float16")
    conv = model.get_layer("resnet50").get_layer("conv1_conv")
    assert conv.compute_dtype == "float16" and conv.variable_dtype == "float32"
    assert model.get_layer("score").compute_dtype == "float32"
    assert model(np.zeros((1, 32, 32, 3), "uint8"))["score"].dtype == "float32"
    model.compile(optimizer=keras.optimizers.AdamW(1e-5), loss="mse")  # as notebook 03 compiles it
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # small gradients survive
    utils.use_precision(model, "float32")
    assert conv.compute_dtype == "float32"


def test_cached_features_equal_the_frozen_networks(model, synthetic_root, tmp_path, monkeypatch):
    frame = dataset.all_labels(synthetic_root).head(20)
    features = utils.cached_features(model, frame, SIZE, tmp_path, batch_size=8)
    assert features.shape == (20, 2048) and list(features.index) == list(frame["file"])
    assert len(list(tmp_path.glob("features-*.npy"))) == 1
    images = np.concatenate([x.numpy() for x, _ in utils.make_dataset(frame, SIZE, 8)])
    np.testing.assert_allclose(features, network.feature_extractor(model).predict(images, verbose=0),
                               rtol=1e-4, atol=1e-4)
    # notebook 02's head on cached features is the model's own head: the same scores as the network
    head = keras.Sequential([keras.Input((2048,)), model.get_layer("score")])
    np.testing.assert_allclose(head.predict(features.to_numpy(), verbose=0),
                               model.predict(images, verbose=0)["score"], rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(network, "feature_extractor", lambda m: pytest.fail("computed again"))
    np.testing.assert_array_equal(utils.cached_features(model, frame, SIZE, tmp_path), features)


def test_a_changed_setting_invalidates_the_feature_cache(model, synthetic_root, tmp_path):
    frame = dataset.all_labels(synthetic_root).head(8)
    utils.cached_features(model, frame, SIZE, tmp_path)
    smaller = model_from_notebook(48)
    smaller.set_weights(model.get_weights())
    assert network._weights_fingerprint(smaller) == network._weights_fingerprint(model)
    utils.cached_features(smaller, frame, 48, tmp_path)               # image size
    utils.cached_features(model, frame.head(7), SIZE, tmp_path)       # images
    other = model_from_notebook(SIZE, seed=1)                         # weights
    assert network._weights_fingerprint(other) != network._weights_fingerprint(model)
    utils.cached_features(other, frame, SIZE, tmp_path)
    assert len(list(tmp_path.glob("features-*.npy"))) == 4


def test_a_changed_score_invalidates_the_feature_cache_key(synthetic_root):
    frame = dataset.all_labels(synthetic_root).head(5)
    changed = frame.assign(score=frame["score"] + 0.1)
    assert utils.dataset_fingerprint(frame) != utils.dataset_fingerprint(changed)


def test_predictions_keep_the_order_and_mirror_on_request(model, synthetic_root):
    frame = dataset.all_labels(synthetic_root).head(6)
    images = np.concatenate([x.numpy() for x, _ in utils.make_dataset(frame, SIZE, 4)])
    np.testing.assert_allclose(utils.predict_scores(model, frame, SIZE, batch_size=4),
                               model.predict(images, verbose=0)["score"].ravel(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(utils.predict_scores(model, frame, SIZE, batch_size=4, mirror=True),
                               model.predict(images[:, :, ::-1], verbose=0)["score"].ravel(),
                               rtol=1e-5, atol=1e-5)


MODERN = ["ConvNeXtTiny", "EfficientNetV2S"]


@pytest.mark.parametrize("backbone", MODERN)
def test_a_modern_backbone_is_built_with_its_own_preprocessing_once_and_a_head_of_its_width(backbone):
    model = model_from_notebook(SIZE, backbone=backbone)
    inside = utils.backbone_of(model)
    width = inside.output.shape[-1]
    assert [layer.name for layer in model.layers] == ["image", "preprocess", inside.name, "score"]
    assert model.get_layer("score").kernel.shape == (width, 1) and trainable(model) == width + 1
    # Keras' ConvNeXt and EfficientNetV2 rescale and normalise 0-255 pixels themselves: the
    # model's preprocessing layer passes them through, so they are preprocessed exactly once
    images = np.random.default_rng(3).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    np.testing.assert_array_equal(model.get_layer("preprocess")(images), images.astype("float32"))
    own = [layer for layer in inside.layers
           if isinstance(layer, keras.layers.Normalization | keras.layers.Rescaling)]
    assert len(own) == 1 and inside.layers.index(own[0]) == 1  # its first layer after the input
    np.testing.assert_allclose(network.feature_extractor(model).predict(images, verbose=0),
                               inside.predict(images.astype("float32"), verbose=0), rtol=1e-5, atol=1e-5)


def test_batchnormalization_is_kept_where_a_backbone_has_it():
    efficientnet = utils.backbone_of(model_from_notebook(SIZE, backbone="EfficientNetV2S"))
    batchnorm = [layer for layer in efficientnet.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batchnorm and all(isinstance(layer, utils.InferenceBatchNormalization) for layer in batchnorm)
    convnext = utils.backbone_of(model_from_notebook(SIZE, backbone="ConvNeXtTiny"))
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in convnext._flatten_layers())


@pytest.mark.parametrize("backbone", MODERN)
def test_a_modern_backbones_model_saves_reloads_and_computes_mixed_precision(backbone, tmp_path):
    model = model_from_notebook(32, backbone=backbone, label_distribution=True)
    images = np.random.default_rng(4).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    for head in network._HEADS:
        np.testing.assert_allclose(again.predict(images, verbose=0)[head],
                                   model.predict(images, verbose=0)[head], rtol=1e-5, atol=1e-5)
    utils.use_precision(model, "mixed_float16")
    outputs = model(images)
    assert outputs["score"].dtype == outputs["distribution"].dtype == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs["distribution"]).sum(axis=1), 1, rtol=1e-5)


def test_the_backbone_names_its_feature_cache_and_its_runs(synthetic_root, tmp_path):
    frame = dataset.all_labels(synthetic_root).head(4)
    for backbone in utils.BACKBONES:
        utils.cached_features(model_from_notebook(32, backbone=backbone), frame, 32, tmp_path)
    names = sorted(p.name for p in tmp_path.glob("features-*.npy"))
    assert len(names) == 3 and any("-convnext_tiny-" in n for n in names)
    names = {runs._run_dir(utils.Config(backbone=backbone), "data").name for backbone in utils.BACKBONES}
    assert len(names) == 3


def test_every_backbone_trains_in_batches_of_32_unless_set_and_an_unknown_one_is_named():
    for backbone in utils.BACKBONES:
        assert utils.Config(backbone=backbone).batch_size == 32  # the blog's batch
        assert utils.Config(backbone=backbone, batch_size=8).batch_size == 8
    with pytest.raises(errors.SettingError, match="'ResNet50', 'ConvNeXtTiny', 'EfficientNetV2S'"):
        utils.Config(backbone="VGG16")


def test_settings_are_described_by_their_backbone_and_what_differs_from_the_defaults():
    assert runs.describe_settings(asdict(utils.Config())) == "ResNet50"
    assert runs.describe_settings(asdict(utils.Config(protocol="60/40", backbone="EfficientNetV2S"))) == \
        "EfficientNetV2S"  # the protocol is in the run's name
    changed = utils.Config(backbone="ConvNeXtTiny", label_distribution=True, head_lr=3e-3)
    assert runs.describe_settings(asdict(changed)) == "ConvNeXtTiny + distribution (head_lr 0.003)"


def test_running_out_of_gpu_memory_names_a_batch_size_to_try():
    cfg = utils.Config(backbone="ConvNeXtTiny")
    with pytest.raises(errors.GPUMemoryError, match=rf"batches of 32\..*batch_size={cfg.batch_size // 2} "):
        with utils.plain_out_of_memory(cfg):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    with pytest.raises(tf.errors.InternalError):  # other errors pass unchanged
        with utils.plain_out_of_memory(cfg):
            raise tf.errors.InternalError(None, None, "a bug")


def test_a_model_saved_before_the_package_split_loads_and_predicts_alike():
    """tests/fixtures/model_7088e35.keras was saved by the single-file utils.py of commit 7088e35, in
    Colab's Keras, with every layer of ours (its make_model_7088e35.py): users' Drives hold such files."""
    fixtures = Path(__file__).parent / "fixtures"
    model = network.load_model(fixtures / "model_7088e35.keras")
    assert {type(layer).__module__ for layer in model.layers} >= {"fbp.network"}
    with np.load(fixtures / "model_7088e35.npz") as saved:
        predicted = model.predict(saved["images"], verbose=0)
        for name in ("score", "distribution"):
            np.testing.assert_allclose(predicted[name], saved[name], rtol=1e-5, atol=1e-6)


# tensorflow/tensorflow#117700's example: a rank-4 by rank-2 product that oneDNN's kernel corrupts the heap on
_HEAP_CORRUPTING_PRODUCT = """
import fbp
import numpy as np
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port

a = np.random.default_rng(0).normal(size=(13, 1, 3, 4)).astype("float32")
w = np.random.default_rng(1).normal(size=(4, 16)).astype("float32")
for _ in range(20):
    product = tf.matmul(a, w).numpy()
print(_pywrap_util_port.IsMklEnabled(), float(np.abs(product - a @ w).max()))
"""


def test_importing_the_package_first_keeps_tensorflow_off_the_onednn_kernels_that_corrupt_the_heap():
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}  # as a user's kernel starts
    done = subprocess.run([sys.executable, "-c", _HEAP_CORRUPTING_PRODUCT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # oneDNN's kernel: SIGABRT or SIGSEGV (both versions)
    onednn, error = done.stdout.split()
    assert onednn == "False" and float(error) < 1e-5
