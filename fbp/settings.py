"""A run's settings (Config, checked as they are made), the backbones the recipe offers (the
ImageNet CNNs and the keras-hub presets), and the recipe's version."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace

from fbp import dataset, environment
from fbp.errors import SettingError

# The backbones the recipe knows, by their keras.applications constructor, each with the module
# whose preprocess_input the model applies.
BACKBONES = {"ResNet50": "resnet50", "ConvNeXtTiny": "convnext", "EfficientNetV2S": "efficientnet_v2"}


@dataclass(frozen=True)
class _Foundation:
    """A keras-hub preset offered as a backbone: its encoder and converter classes, its converter's
    size and normalisation (written here so that smoke runs build the same classes offline), the
    feature the heads take, a small network of the same class, and whether notebook 03 fine-tunes it."""

    encoder: str                # the keras_hub.models class of its image encoder
    converter: str              # the keras_hub.layers class of its image converter
    image_size: int             # the converter's size: the preset's own image_shape
    mean: tuple[float, ...]     # the converter's normalisation, of pixels in 0-1
    std: tuple[float, ...]
    resizing: dict              # the converter's interpolation settings
    feature: str                # what the heads take, and whose convention it is
    small: dict                 # a small network of the same class, for smoke runs and tests
    fine_tunes: bool            # whether a fine-tune fits a T4 at a usable batch
    bench: str                  # the estimate behind it (tests/bench_backbones.py)


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# The presets' converters and sizes as keras-hub's conversion scripts made them
# (tools/checkpoint_conversion/convert_dinov2_checkpoints.py and convert_siglip_checkpoints.py):
# DINOv2 at its Hugging Face config's 518 px, ImageNet's mean and spread, bicubic; SigLIP 2 at 224 px,
# mean and spread 0.5, bicubic with antialiasing, stretched rather than cropped.
FOUNDATIONS = {
    "dinov2_base": _Foundation(
        encoder="DINOV2Backbone", converter="DINOV2ImageConverter", image_size=518,
        mean=_IMAGENET_MEAN, std=_IMAGENET_STD, resizing={"interpolation": "bicubic"},
        feature="the class token after the final layer norm (768 numbers): DINOv2's own output for an "
                "image (x_norm_clstoken in facebookresearch/dinov2), which its linear evaluation reads, "
                "there optionally beside the mean of the patch tokens, left out here",
        small={"patch_size": 14, "num_layers": 2, "hidden_dim": 32, "num_heads": 2,
               "intermediate_dim": 64, "position_embedding_shape": (518, 518)},
        fine_tunes=False,
        bench="at 518 px (1,370 tokens) a fine-tune should keep about 1.5 GB of activations per face: "
              "est. peak 17.8 GB at batch 8, beyond a T4's 14 GB"),
    "siglip2_base_patch16_224": _Foundation(
        encoder="SigLIPVisionEncoder", converter="SigLIPImageConverter", image_size=224,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        resizing={"interpolation": "bicubic", "antialias": True, "crop_to_aspect_ratio": False},
        feature="the attention-pooled image embedding (768 numbers): the output of SigLIP's MAP head, "
                "its image tower's embedding (keras-hub's SigLIPVisionEncoder, Hugging Face's "
                "pooler_output), which SigLIP's authors compare with text and probe",
        small={"patch_size": 16, "num_layers": 2, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64},
        fine_tunes=True,
        bench="at 224 px (196 tokens), batch 32: est. peak 5.9 GB of a T4's 14 GB"),
}


def fine_tunes(backbone: str) -> bool:
    """Whether notebook 03 fine-tunes this backbone: every ImageNet CNN, and the presets a T4 can."""
    return backbone not in FOUNDATIONS or FOUNDATIONS[backbone].fine_tunes


RECIPE_VERSION = 6  # bump whenever a change to the training code changes what a run's model means

# The seed that carves every run's validation faces from its fold's training part, whatever the run's
# own seed: two runs that differ only in seed see the same validation faces. (A run made before this
# carved them with its own seed; with seed 0 that is the same split.)
VALIDATION_SEED = 0


def _whole(value: object, low: int, high: float = math.inf) -> bool:
    """Whether value is a whole number (not a bool) from low to high."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _real(value: object) -> bool:
    """Whether value is a finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _listed(choices: tuple) -> str:
    """The choices as a user would type them, e.g. 'fold1', 'fold2'."""
    return ", ".join(map(repr, choices))


_MIN_IMAGE_SIZE = 32  # keras.applications' ResNet50, ConvNeXtTiny and EfficientNetV2S refuse smaller
# np.random.seed (in keras.utils.set_random_seed) takes 0 to 2**32 - 1, and the ablation also runs seed + 1.
_MAX_SEED = 2**32 - 2

_EPOCHS = (lambda v: _whole(v, 1), "a whole number of epochs, at least 1")
_POSITIVE = (lambda v: _real(v) and v > 0, "a number above 0")

# Each setting's check and what it allows, in words, for Config.__post_init__.
_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "protocol": (lambda v: isinstance(v, str) and v in dataset.PROTOCOLS,
                 f"one of {_listed(dataset.PROTOCOLS)}"),
    "backbone": (lambda v: isinstance(v, str) and v in (*BACKBONES, *FOUNDATIONS),
                 f"one of {_listed((*BACKBONES, *FOUNDATIONS))}"),
    "image_size": (lambda v: v is None or _whole(v, _MIN_IMAGE_SIZE),
                   f"None (the backbone's own size) or a whole number of pixels, at least {_MIN_IMAGE_SIZE}"),
    "weights": (lambda v: v is None or isinstance(v, str) and v == "imagenet",
                "'imagenet' (pretrained; a preset's own) or None (untrained, for smoke runs and tests)"),
    "val_fraction": (lambda v: _real(v) and 0 < v < 1, "a fraction above 0 and below 1"),
    "batch_size": (lambda v: v is None or _whole(v, 1), "None (32) or a whole number, at least 1"),
    "label_distribution": (lambda v: isinstance(v, bool), "True or False"),
    "distribution_weight": _POSITIVE,
    "head_lr": _POSITIVE,
    "head_epochs": _EPOCHS,
    "head_patience": _EPOCHS,
    "finetune_lr": _POSITIVE,
    "finetune_epochs": _EPOCHS,
    "weight_decay": (lambda v: _real(v) and v >= 0, "a number from 0 up (0: no decay)"),
    "seed": (lambda v: _whole(v, 0, _MAX_SEED), f"a whole number from 0 to {_MAX_SEED}"),
}


def _check(name: str, value: object) -> None:
    """Raise a SettingError naming the setting, its value and what it allows, unless the value fits."""
    fits, allowed = _RULES[name]
    if not fits(value):
        raise SettingError(f"{name}={value!r} is not a setting the recipe can use: it takes {allowed}. "
                           "Nothing was saved; change it in notebook 02's parameters cell.")


@dataclass(frozen=True)
class Config:
    """Everything a user may want to change about a run."""

    protocol: str = "fold1"            # "fold1".."fold5" (each the blog's 80/20) or "60/40"
    backbone: str = "ResNet50"         # one of BACKBONES (keras.applications) or FOUNDATIONS (keras-hub)
    image_size: int | None = None      # None: 350, the blog's and the dataset's; a preset's converter's size
    weights: str | None = "imagenet"   # None only for smoke runs and tests; with a preset, the preset's own
    val_fraction: float = 0.1          # carved from the training part for model choice
    # A fine-tune at 350 px in batches of 32 should peak on a T4 at 8.5 GB with ResNet50, 6.8 with
    # ConvNeXtTiny and 9.4 with EfficientNetV2S, of about 15 (tests/bench_backbones.py; README,
    # "Backbones"): each could take more, and all keep the blog's 32, so that the ablation compares
    # backbones, not batch sizes.
    batch_size: int | None = None      # None: 32
    label_distribution: bool = False   # also learn the share of the 60 raters giving 1-5 (a second head)
    distribution_weight: float = 1.0   # its loss's weight beside the score's squared error
    head_lr: float = 1e-3
    head_epochs: int = 200             # an upper bound: early stopping ends it in seconds
    head_patience: int = 15
    finetune_lr: float = 5e-5          # peak of a cosine schedule with one epoch of warm-up
    finetune_epochs: int = 30          # the blog's count
    # AdamW's decoupled decay, not the paper's SGD L2 penalty: each step shrinks a weight by lr x decay.
    # Over a fold's fine-tune (about 124 steps an epoch, 30 epochs, cosine from 5e-5) that compounds to
    # about 0.46 % (0.35 % on 60/40), which 03 prints: a light touch. The guards against overfitting are
    # the epoch chosen on validation faces, the low rate and the augmentation.
    weight_decay: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        """Check every setting before anything uses it (a run's folder included), then fill in the sizes."""
        for field in fields(self):
            _check(field.name, getattr(self, field.name))
        preset = FOUNDATIONS.get(self.backbone)
        if self.image_size is None:  # frozen: set once, so that the run's record names the size
            object.__setattr__(self, "image_size", preset.image_size if preset else 350)
        if preset and self.weights is not None and self.image_size != preset.image_size:
            raise SettingError(f"{self.backbone} takes {preset.image_size} px images, its image converter's "
                               f"size, and image_size={self.image_size} asks for another: leave image_size "
                               "out of the settings for it. Nothing was saved.")
        if self.batch_size is None:  # frozen: set once, so that the run's record names the batch
            object.__setattr__(self, "batch_size", 32)

    def smoke(self) -> Config:
        """The same settings shrunk to a run of a minute on a CPU, with untrained weights."""
        return replace(self, image_size=64, weights=None, batch_size=16, head_epochs=60, finetune_epochs=2,
                       finetune_lr=1e-5)

    def for_environment(self) -> Config:
        """The settings a protocol runner passed in FBP_CONFIG, else these (shrunk when FBP_SMOKE=1);
        says so when they replace these."""
        if environment.one_fold_of_a_protocol():
            print("Notebook 06's runner is running this notebook for one fold: its settings "
                  "(FBP_CONFIG) replace this notebook's.")
            return Config(**json.loads(os.environ["FBP_CONFIG"]))
        if not environment.smoke_mode():
            return self
        smoke, own = self.smoke(), asdict(self)
        changed = [f"{name} {value!r}" for name, value in asdict(smoke).items() if value != own[name]]
        if changed:
            print(f"Smoke mode (FBP_SMOKE=1): {', '.join(changed)} replace your settings, for a run "
                  "of a minute on a CPU.")
        return smoke
