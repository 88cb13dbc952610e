"""The model's own Keras layers (registered, so saved models load), keras-hub presets, precision,
the feature cache of a frozen backbone, predicting scores and contribution maps."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import keras
import keras_hub  # registers its models for loading a saved one; about 0.5 s after Keras
import numpy as np
import pandas as pd
import tensorflow as tf

from fbp import dataset, environment, settings
from fbp.errors import FrozenOnlyError, RunMismatchError


@keras.saving.register_keras_serializable(package="fbp")
class ImageNetPreprocess(keras.layers.Layer):
    """The backbone's own preprocess_input, on uint8 images: for ResNet50 "caffe" mode (RGB->BGR,
    minus the ImageNet mean); for ConvNeXt and EfficientNetV2 nothing, as their models rescale and
    normalise their 0-255 input themselves (Keras' include_preprocessing)."""

    def __init__(self, backbone: str = "ResNet50", **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, images):
        module = getattr(keras.applications, settings.BACKBONES[self.backbone])
        return module.preprocess_input(keras.ops.cast(images, "float32"))

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


@keras.saving.register_keras_serializable(package="fbp")
class InferenceBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization that always normalises with its stored (ImageNet) statistics, even while
    training (keras-team/keras#20285: fit's training=True overrides a call with training=False)."""

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False, mask=mask)


def with_inference_batchnorm(model: keras.Model) -> keras.Model:
    """A copy of a model, weights included, with InferenceBatchNormalization for BatchNormalization;
    a keras-hub encoder, which has none (its LayerNormalization keeps no batch statistics), as it is."""
    if isinstance(model, keras_hub.models.Backbone):
        return model

    def swap(layer):
        batchnorm = isinstance(layer, keras.layers.BatchNormalization)
        kind = InferenceBatchNormalization if batchnorm else type(layer)
        return kind.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=swap)
    copy.set_weights(model.get_weights())
    return copy


@keras.saving.register_keras_serializable(package="fbp")
class RatingShares(keras.layers.Layer):
    """The share of raters who would give each rating 1-5: each rater's impression of the face is
    taken as normal around a centre with a spread, both learned from the features (one Dense(2),
    zero at the start: centre 3, spread 0.74), and rounded to the scale (an ordinal probit)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.centre_and_spread = keras.layers.Dense(2, kernel_initializer="zeros", dtype="float32")

    def build(self, input_shape):
        self.centre_and_spread.build(input_shape)

    def call(self, features):
        both = self.centre_and_spread(keras.ops.cast(features, "float32"))
        centre, spread = 3.0 + both[:, :1], keras.ops.softplus(both[:, 1:]) + 0.05
        cuts = keras.ops.convert_to_tensor([[1.5, 2.5, 3.5, 4.5]], dtype="float32")  # between ratings
        below = 0.5 * (1 + keras.ops.erf((cuts - centre) / (spread * np.sqrt(2))))
        ends = keras.ops.concatenate([keras.ops.zeros_like(centre), below, keras.ops.ones_like(centre)],
                                     axis=1)  # the normal's mass below each cut, 0 and 1 at the ends
        return ends[:, 1:] - ends[:, :-1]


@keras.saving.register_keras_serializable(package="fbp")
class ClassToken(keras.layers.Layer):
    """A ViT's class token: the first of the tokens it outputs (DINOv2's, after its final layer norm)."""

    def call(self, tokens):
        return tokens[:, 0]


def small_foundation(cfg: settings.Config) -> tuple[keras.layers.Layer, keras.Model]:
    """For smoke runs and tests, offline: the preset's image converter (the layer "preprocess") with its
    normalisation, and a small randomly initialised network of its encoder's class, at the run's size."""
    spec, size = settings.FOUNDATIONS[cfg.backbone], cfg.image_size
    converter = getattr(keras_hub.layers, spec.converter)(
        image_size=(size, size), scale=[1 / 255 / s for s in spec.std],
        offset=[-m / s for m, s in zip(spec.mean, spec.std, strict=True)], name="preprocess", **spec.resizing)
    return converter, getattr(keras_hub.models, spec.encoder)(**spec.small, image_shape=(size, size, 3))


def check_fine_tunes(cfg: settings.Config) -> None:
    """Stop notebook 03, before it loads or writes anything, when the run's backbone is frozen-only."""
    if not settings.fine_tunes(cfg.backbone):
        raise FrozenOnlyError(
            f"{cfg.backbone} is a frozen-only backbone: {settings.FOUNDATIONS[cfg.backbone].bench} "
            "(tests/bench_backbones.py). Its run stays at stage 1: notebooks 04 and 05 use the model "
            "notebook 02 saved. Nothing was trained or written here.")


def has_contribution_map(model: keras.Model) -> bool:
    """Whether the model's pooled features are the average of its last feature map's cells (the
    keras.applications CNNs), so that a contribution map splits its score exactly."""
    return not isinstance(backbone_of(model), keras_hub.models.Backbone)


_HEADS = ("score", "distribution")  # the model's outputs; the second with label_distribution only


def backbone_of(model: keras.Model) -> keras.Model:
    """The model's backbone (ResNet50, ConvNeXtTiny, ...): the one model among its layers."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def load_model(path: Path) -> keras.Model:
    """A saved model, loaded with safe_mode=True (nothing in the file runs as code); one that does
    not load says so plainly."""
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as error:  # a damaged file, or one from other code: its message, not a traceback
        if "safe_mode" in str(error):  # e.g. a Lambda layer: its Python code would run as the file loads
            raise RunMismatchError(
                f"The model {Path(path).name} of run {Path(path).parent.name} was refused: it holds Python "
                "code (such as a Lambda layer) that would run as it loads, which no model of this project "
                "has. Do not open it; score with a bundle made by notebook 04 that you trust.") from None
        raise RunMismatchError(
            f"The model {Path(path).name} of run {Path(path).parent.name} does not load with Keras "
            f"{keras.__version__} ({type(error).__name__}: {str(error)[:300]}). It is damaged, or was made "
            "by another version of this project or of Keras (its run.json names both). Train the run "
            "again, or use a bundle made with this version.") from None


def feature_extractor(model: keras.Model) -> keras.Model:
    """The model up to the backbone's pooled features (the heads' input)."""
    return keras.Model(model.inputs, model.get_layer("score").input, name="features")


def head_model(model: keras.Model) -> keras.Model:
    """The model's heads alone, sharing its layers: from the pooled features (feature_extractor's
    output) to its outputs."""
    features = keras.Input(model.get_layer("score").input.shape[1:], name="features")
    names = [layer.name for layer in model.layers if layer.name in _HEADS]
    return keras.Model(features, {name: model.get_layer(name)(features) for name in names}, name="heads")


def heads_over(first: keras.Model, other: Path) -> dict[str, list] | None:
    """The heads' weights of the model saved in `other` when it is `first` but for its heads (two folds'
    frozen-head models share their frozen backbone), as lists; else None."""
    second = load_model(other)
    if [layer.name for layer in first.layers] != [layer.name for layer in second.layers]:
        return None
    for a, b in zip(first.layers, second.layers, strict=True):
        if a.name not in _HEADS and not all(np.array_equal(x, y) for x, y in
                                            zip(a.get_weights(), b.get_weights(), strict=True)):
            return None
    return {layer.name: [w.tolist() for w in layer.get_weights()] for layer in second.layers
            if layer.name in _HEADS}


def _weights_fingerprint(model: keras.Model) -> str:
    """A hash of the backbone's weights: equal hashes give equal features."""
    digest = hashlib.sha1()
    for weight in backbone_of(model).weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()[:16]


def precision_policy() -> str:
    """mixed_float16 on a GPU with tensor cores (a T4 and newer), else float32."""
    gpus = tf.config.list_physical_devices("GPU")
    details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
    capability = details.get("compute_capability")
    return "mixed_float16" if capability and capability >= (7, 0) else "float32"


def use_precision(model: keras.Model, policy: str) -> None:
    """Make every layer compute under a dtype policy, nested ones included (a keras-hub encoder's
    blocks hold their dense and attention layers), except the preprocessing and the heads with what
    they hold (kept in float32 for a stable loss); the weights stay float32 either way."""
    def layers(parent):
        for layer in parent._flatten_layers(include_self=False, recursive=False):
            if layer.name not in ("preprocess", *_HEADS) and not isinstance(layer, keras.layers.InputLayer):
                yield layer
                yield from layers(layer)

    model.dtype_policy = policy
    for layer in layers(model):
        layer.dtype_policy = policy


def compile_arguments(cfg: settings.Config) -> dict:
    """model.compile's loss, loss_weights and metrics, the same for the head (02) and the whole model
    (03): squared error on the score (the blog's; MAE and RMSE in score points beside it), and with
    label_distribution the KL divergence of the predicted shares from the raters', weighted."""
    arguments = {"loss": {"score": "mse"}, "loss_weights": {"score": 1.0},
                 "metrics": {"score": [keras.metrics.MeanAbsoluteError(name="mae"),
                                       keras.metrics.RootMeanSquaredError(name="rmse")]}}
    if cfg.label_distribution:
        arguments["loss"]["distribution"] = keras.losses.KLDivergence()
        arguments["loss_weights"]["distribution"] = cfg.distribution_weight
    return arguments


def selection_loss(cfg: settings.Config) -> str:
    """The figure that chooses every recipe's epoch (02's early stopping, 03's best checkpoint): the
    score's own squared error on the validation faces, which Keras logs as val_score_loss beside a
    second head's loss, and as val_loss without one."""
    return "val_score_loss" if cfg.label_distribution else "val_loss"


def cached_features(model: keras.Model, frame: pd.DataFrame, image_size: int, cache_dir: Path,
                    batch_size: int = 64) -> pd.DataFrame:
    """Pooled backbone features of every image in the frame (a row per file), computed once and
    cached on disk under a key of the images, the image size, the backbone and its weights, the recipe."""
    backbone = backbone_of(model)
    key = (f"{dataset.dataset_fingerprint(frame)}-{image_size}px-{backbone.name}-"
           f"{_weights_fingerprint(model)}"
           f"-r{settings.RECIPE_VERSION}")
    path = Path(cache_dir) / f"features-{key}.npy"
    if path.is_file():
        print(f"Features loaded from the cache {path.name}.")
        return pd.DataFrame(np.load(path), index=frame["file"])
    print(f"{backbone.name} features of every image, once (Keras' bar counts batches):")
    images = dataset.make_dataset(frame, image_size, batch_size)  # predict takes the images, not the scores
    features = feature_extractor(model).predict(images, verbose=1).astype("float32")
    environment.write_atomically(path, lambda file: np.save(file, features))
    return pd.DataFrame(features, index=frame["file"])


def predict_scores(model: keras.Model, frame: pd.DataFrame, image_size: int,
                   batch_size: int = 64, mirror: bool = False) -> np.ndarray:
    """Predicted scores of the frame's images (or of their horizontal mirrors), in its order."""
    images = dataset.make_dataset(frame, image_size, batch_size)  # predict takes the images, not the scores
    if mirror:
        images = images.map(lambda x, y: (tf.reverse(x, axis=[2]), y))
    return model.predict(images, verbose=0)["score"].ravel()


@functools.lru_cache(maxsize=4)
def _feature_maps(model: keras.Model) -> tuple[keras.Model, list]:
    """The model's backbone up to its last feature map (the input of its average pooling), kept so
    that its compiled graph is reused; and the layers after the pooling (ConvNeXt: a LayerNormalization)."""
    backbone = backbone_of(model)
    pooling = next(layer for layer in reversed(backbone.layers)  # the last: EfficientNet's blocks pool too
                   if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    after = backbone.layers[backbone.layers.index(pooling) + 1:]
    if not all(isinstance(layer, keras.layers.LayerNormalization) for layer in after):
        raise ValueError(f"{backbone.name}: after its pooling come {[type(x).__name__ for x in after]}, "
                         "which contribution_maps cannot spread over the cells")
    return keras.Model(backbone.inputs, pooling.input), after


def _cell_features(model: keras.Model, faces: np.ndarray) -> np.ndarray:
    """Per cell of the backbone's last feature map, features that average over the cells to exactly
    the pooled features the heads see: the map itself, or under the LayerNormalization that ConvNeXt
    applies after pooling, taken with the pooled features' own mean and spread (a per-face affine map)."""
    extractor, after = _feature_maps(model)
    maps = np.asarray(extractor.predict_on_batch(model.get_layer("preprocess")(faces)), dtype=float)
    for norm in after:
        pooled = maps.mean(axis=(1, 2), keepdims=True)
        scale = 1 / np.sqrt(pooled.var(axis=-1, keepdims=True) + norm.epsilon)
        gamma, beta = (keras.ops.convert_to_numpy(w).astype(float) for w in norm.weights)
        maps = (maps - pooled.mean(axis=-1, keepdims=True)) * scale * gamma + beta
    return maps


def contribution_maps(model: keras.Model, faces: np.ndarray,
                      mean_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of uint8 faces and their signed maps: per cell, (features - mean) times the head's weights."""
    maps = _cell_features(model, faces)
    kernel, bias = (keras.ops.convert_to_numpy(w).astype(float) for w in model.get_layer("score").weights)
    scores = maps.mean(axis=(1, 2)) @ kernel[:, 0] + bias[0]  # the backbone's average pooling, then the head
    return scores, (maps - mean_features) @ kernel[:, 0]
