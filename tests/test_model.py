"""The model: the blog's parameter counts, frozen BatchNormalization, saving, the feature cache."""

import keras
import numpy as np
import pytest

import utils

SIZE = 64


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return utils.build_model(SIZE, weights=None)


def test_frozen_it_has_the_blogs_2049_trainable_parameters(model):
    assert utils.count_trainable(model) == 2049
    assert model.count_params() == 23_589_761


def test_unfrozen_everything_trains_and_batchnorm_keeps_its_statistics():
    keras.utils.set_random_seed(0)
    model = utils.build_model(SIZE, weights=None)
    reference = keras.applications.ResNet50(include_top=False, pooling="avg", weights=None,
                                            input_shape=(SIZE, SIZE, 3))
    utils.set_backbone_trainable(model, True)
    # every weight that can learn does: ResNet50's 23,534,592 and the head's 2,049
    assert utils.count_trainable(model) == utils.count_trainable(reference) + 2049 == 23_536_641
    batchnorm = [layer for layer in model.get_layer("resnet50").layers
                 if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(batchnorm) == 53 and all(isinstance(b, utils.InferenceBatchNormalization) for b in batchnorm)
    images = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(model(images, training=True), model(images, training=False), rtol=1e-6)
    statistics = [keras.ops.convert_to_numpy(w) for b in batchnorm for w in b.non_trainable_weights]
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(images, np.full((4, 1), 3.0))
    after = [keras.ops.convert_to_numpy(w) for b in batchnorm for w in b.non_trainable_weights]
    assert all(np.array_equal(a, b) for a, b in zip(statistics, after, strict=True))
    utils.set_backbone_trainable(model, False)
    assert utils.count_trainable(model) == 2049


def test_the_backbone_carries_the_loaded_resnet50s_weights(monkeypatch):
    made = []

    def recording_resnet50(**kwargs):
        made.append(keras.applications.resnet50.ResNet50(**kwargs))
        return made[-1]

    monkeypatch.setattr(keras.applications, "ResNet50", recording_resnet50)
    backbone = utils.build_model(SIZE, weights=None).get_layer("resnet50")
    assert made[0].get_config()["name"] == backbone.name
    for original, copy in zip(made[0].weights, backbone.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(original), keras.ops.convert_to_numpy(copy))


def test_the_preprocessing_layer_is_resnet50s_own():
    images = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype("uint8")
    expected = keras.applications.resnet50.preprocess_input(images.astype("float32"))
    np.testing.assert_allclose(utils.ImageNetPreprocess()(images), expected, rtol=1e-6)


def test_a_saved_model_reloads_in_safe_mode_and_predicts_the_same(model, tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(images, verbose=0), model.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_the_default_weights_are_imagenets():
    import inspect

    assert inspect.signature(utils.build_model).parameters["weights"].default == "imagenet"
    assert utils.Config().weights == "imagenet" and utils.Config().smoke().weights is None


def test_cached_features_equal_the_frozen_networks(model, synthetic_root, tmp_path, monkeypatch):
    frame = utils.all_labels(synthetic_root).head(20)
    features = utils.cached_features(model, frame, SIZE, tmp_path, batch_size=8)
    assert features.shape == (20, 2048) and len(list(tmp_path.glob("features-*.npy"))) == 1
    images = np.concatenate([x.numpy() for x, _ in utils.make_dataset(frame, SIZE, 8)])
    np.testing.assert_allclose(features, utils.feature_extractor(model).predict(images, verbose=0),
                               rtol=1e-4, atol=1e-4)
    # the head on cached features is the model's own head: the same scores as the whole network
    head = utils.head_on_features(model)
    np.testing.assert_allclose(head.predict(features, verbose=0), model.predict(images, verbose=0),
                               rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(utils, "feature_extractor", lambda m: pytest.fail("computed again"))
    np.testing.assert_array_equal(utils.cached_features(model, frame, SIZE, tmp_path), features)


def test_a_changed_setting_invalidates_the_feature_cache(model, synthetic_root, tmp_path):
    frame = utils.all_labels(synthetic_root).head(8)
    utils.cached_features(model, frame, SIZE, tmp_path)
    smaller = utils.build_model(48, weights=None)
    smaller.set_weights(model.get_weights())
    assert utils.weights_fingerprint(smaller) == utils.weights_fingerprint(model)
    utils.cached_features(smaller, frame, 48, tmp_path)               # image size
    utils.cached_features(model, frame.head(7), SIZE, tmp_path)       # images
    other = utils.build_model(SIZE, weights=None)                     # weights
    assert utils.weights_fingerprint(other) != utils.weights_fingerprint(model)
    utils.cached_features(other, frame, SIZE, tmp_path)
    assert len(list(tmp_path.glob("features-*.npy"))) == 4


def test_a_changed_score_invalidates_the_feature_cache_key(synthetic_root):
    frame = utils.all_labels(synthetic_root).head(5)
    changed = frame.assign(score=frame["score"] + 0.1)
    assert utils.dataset_fingerprint(frame) != utils.dataset_fingerprint(changed)


def test_precision_is_float32_without_a_gpu():
    assert utils.precision_policy(utils.pick_strategy()) == "float32"
    with utils.precision("mixed_float16"):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_predictions_keep_the_order_and_mirror_on_request(model, synthetic_root):
    frame = utils.all_labels(synthetic_root).head(6)
    images = np.concatenate([x.numpy() for x, _ in utils.make_dataset(frame, SIZE, 4)])
    np.testing.assert_allclose(utils.predict_scores(model, frame, SIZE, batch_size=4),
                               model.predict(images, verbose=0).ravel(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(utils.predict_scores(model, frame, SIZE, batch_size=4, mirror=True),
                               model.predict(images[:, :, ::-1], verbose=0).ravel(), rtol=1e-5, atol=1e-5)
