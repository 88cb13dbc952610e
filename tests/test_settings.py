"""Config's check of every setting: a wrong value is a SettingError that names the setting, the value
and what it allows, before anything is saved; every value the recipe (and an older run) uses is taken."""

import json
from dataclasses import asdict, fields

import pytest
from conftest import run_cells

from fbp import dataset, runs, settings
from fbp.errors import RunNotFoundError, SettingError

# One wrong value for each setting, a mistake a user could make, and words of what the message allows.
WRONG = [
    ("protocol", "fold6", "'fold1', 'fold2', 'fold3', 'fold4', 'fold5', '60/40'"),
    ("protocol", "5-fold", "'fold1', 'fold2', 'fold3', 'fold4', 'fold5', '60/40'"),
    ("backbone", "VGG16", "'ResNet50', 'ConvNeXtTiny', 'EfficientNetV2S', 'dinov2_base', "
                          "'siglip2_base_patch16_224'"),
    ("image_size", 16, "None (the backbone's own size) or a whole number of pixels, at least 32"),
    ("weights", "ImageNet", "'imagenet' (pretrained; a preset's own) or None"),
    ("val_fraction", 10, "above 0 and below 1"),
    ("batch_size", 0, "None (32) or a whole number, at least 1"),
    ("label_distribution", "yes", "True or False"),
    ("distribution_weight", -1.0, "a number above 0"),
    ("head_lr", 0.0, "a number above 0"),
    ("head_epochs", 0, "a whole number of epochs, at least 1"),
    ("head_patience", 7.5, "a whole number of epochs, at least 1"),
    ("finetune_lr", float("nan"), "a number above 0"),
    ("finetune_epochs", "30", "a whole number of epochs, at least 1"),
    ("weight_decay", -0.05, "a number from 0 up"),
    ("seed", True, "a whole number from 0 to 4294967294"),
]


def test_every_setting_has_a_wrong_value_tried():
    assert {name for name, _, _ in WRONG} == {field.name for field in fields(settings.Config)}


@pytest.mark.parametrize(("name", "value", "allowed"), WRONG, ids=[f"{n}={v!r}" for n, v, _ in WRONG])
def test_a_wrong_value_names_the_setting_the_value_and_what_is_allowed(name, value, allowed):
    with pytest.raises(SettingError) as raised:
        settings.Config(**{name: value})
    message = str(raised.value)
    assert f"{name}={value!r}" in message and allowed in message
    assert "Nothing was saved" in message and "notebook 02's parameters cell" in message
    assert len(message.split()) < 40, message


def test_every_protocol_and_backbone_is_taken_and_survives_a_run_record():
    made = [settings.Config(), settings.Config().smoke()]
    made += [settings.Config(protocol=protocol) for protocol in dataset.PROTOCOLS]
    made += [settings.Config(backbone=name) for name in (*settings.BACKBONES, *settings.FOUNDATIONS)]
    made += [cfg.smoke() for cfg in made]
    for cfg in made:  # as run.json keeps it, and notebooks 03-05 and the runners read it back
        assert settings.Config(**json.loads(json.dumps(asdict(cfg)))) == cfg


def test_an_older_runs_settings_still_load():
    """A run.json of recipe 4 (no backbone or label_distribution yet; the paper's decay), full and smoke."""
    full = {"protocol": "60/40", "image_size": 350, "weights": "imagenet", "val_fraction": 0.1,
            "batch_size": 32, "head_lr": 0.001, "head_epochs": 200, "head_patience": 15, "finetune_lr": 5e-05,
            "finetune_epochs": 30, "weight_decay": 0.0001, "seed": 0}
    smoke = {**full, "protocol": "fold3", "image_size": 64, "weights": None, "batch_size": 16,
             "finetune_lr": 1e-05, "finetune_epochs": 2}
    for record in (full, smoke):
        assert asdict(settings.Config(**record)).items() >= record.items()


def test_a_wrong_protocol_in_02_saves_nothing(work, small_root, monkeypatch):
    """Notebook 02's cells with protocol="fold6" stop at the parameters cell, before open_run: no run
    folder is written and no run becomes the current one (in smoke mode, so that without the check
    the cells after it would fail in seconds, with no weights to download)."""
    monkeypatch.setenv("FBP_DATA_DIR", str(small_root))
    monkeypatch.setenv("FBP_SMOKE", "1")
    with pytest.raises(SettingError, match=r"protocol='fold6'.*'fold1'.*'60/40'"):
        run_cells("02_frozen_head", edits={'utils.Config(protocol="fold1")':
                                           'utils.Config(protocol="fold6")'})
    assert not list(work.rglob("runs")) and not list(work.rglob("run.json"))
    with pytest.raises(RunNotFoundError, match="No run chosen yet"):
        runs.current_run()
