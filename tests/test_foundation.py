"""The keras-hub presets as backbones (settings.FOUNDATIONS): the settings, the real path by name stopping
short of the network, smoke runs through 02, 03 and 05, a saved model in safe mode, the runners."""

import json
import subprocess
import sys
from dataclasses import replace

import keras
import keras_hub
import numpy as np
import pytest
from conftest import ROOT, model_from_notebook, run_cells, train

import utils
from fbp import dataset, errors, experiments, network, runs, settings

DINO, SIGLIP = "dinov2_base", "siglip2_base_patch16_224"
SMALL_TEXT = {"vocabulary_size": 16, "embedding_dim": 8, "hidden_dim": 8, "num_layers": 1, "num_heads": 1,
              "intermediate_dim": 8, "max_sequence_length": 4}


def test_the_presets_are_named_in_this_keras_hub():
    for name in settings.FOUNDATIONS:
        assert name in keras_hub.models.Backbone.presets, name


def test_a_preset_takes_its_converters_size_and_a_bad_name_lists_every_choice():
    assert (utils.Config().image_size, utils.Config(image_size=224).image_size) == (350, 224)
    assert utils.Config(backbone=DINO).image_size == 518 and utils.Config(backbone=SIGLIP).image_size == 224
    assert utils.Config(backbone=DINO).smoke().image_size == 64  # a small random network: any size
    with pytest.raises(errors.SettingError, match="takes 518 px images, its image converter's size"):
        utils.Config(backbone=DINO, image_size=350)
    with pytest.raises(errors.SettingError, match="'ResNet50'.*'dinov2_base', 'siglip2_base_patch16_224'"):
        utils.Config(backbone="dinov2")


@pytest.mark.parametrize("name", [DINO, SIGLIP])
def test_02_loads_the_preset_and_its_converter_by_name(name, monkeypatch):
    """The real path, stopping short of the network: from_preset gets the preset's name, and what it
    returns (here small networks of the same classes, at the preset's size) is what the model holds."""
    cfg = utils.Config(backbone=name)
    converter, encoder = utils.small_foundation(replace(cfg, weights=None))
    whole = keras_hub.models.SigLIPBackbone(encoder, keras_hub.models.SigLIPTextEncoder(**SMALL_TEXT)) \
        if name == SIGLIP else encoder
    calls = []
    monkeypatch.setattr(keras_hub.layers.ImageConverter, "from_preset",
                        lambda preset, **kw: calls.append(("converter", preset, kw)) or converter)
    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset",
                        lambda preset, **kw: calls.append(("backbone", preset, kw)) or whole)
    model = run_cells("02_frozen_head", "model", utils=utils, keras=keras, cfg=cfg)["model"]
    assert calls == [("converter", name, {"name": "preprocess"}), ("backbone", name, {})]
    assert model.get_layer("preprocess") is converter
    assert utils.backbone_of(model) is encoder  # for SigLIP, its image tower alone
    assert model.input_shape == (None, cfg.image_size, cfg.image_size, 3)


def test_the_heads_take_the_feature_the_authors_probe():
    """DINOv2: the class token of its output, which ends in its final layer norm; SigLIP 2: its
    image encoder's output, the attention-pooled (MAP head) embedding. Neither has a map."""
    faces = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype="uint8")
    for name, last in [(DINO, "LayerNormalization"), (SIGLIP, "SigLIPMultiHeadAttentionPooling")]:
        model = model_from_notebook(64, backbone=name)
        encoder = utils.backbone_of(model)
        assert type(encoder.layers[-1]).__name__ == last and not network.has_contribution_map(model)
        tokens = encoder.predict_on_batch({"images": model.get_layer("preprocess")(faces)})
        features = network.feature_extractor(model).predict_on_batch(faces)
        np.testing.assert_allclose(features, tokens[:, 0] if name == DINO else tokens, rtol=1e-5, atol=1e-6)
        assert features.shape == (2, 32)
    assert network.has_contribution_map(model_from_notebook(64))


def test_a_saved_foundation_model_loads_in_safe_mode_in_a_fresh_process(tmp_path):
    faces = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype="uint8")
    np.save(tmp_path / "faces.npy", faces)
    expected = {}
    for name in settings.FOUNDATIONS:
        model = model_from_notebook(64, backbone=name, label_distribution=True)
        model.save(tmp_path / f"{name}.keras")
        expected[name] = model.predict_on_batch(faces)["score"].ravel().tolist()
    script = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); import numpy as np, keras, utils\n"
              f"faces = np.load({str(tmp_path / 'faces.npy')!r})\n"
              f"print(json.dumps({{name: keras.models.load_model({str(tmp_path)!r} + f'/{{name}}.keras', "
              "safe_mode=True).predict_on_batch(faces)['score'].ravel().tolist() "
              f"for name in {list(settings.FOUNDATIONS)!r}}}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    for name in settings.FOUNDATIONS:
        np.testing.assert_allclose(loaded[name], expected[name], rtol=1e-5)


@pytest.fixture
def smoke_run(synthetic_root, work, monkeypatch):
    """Smoke mode on the synthetic dataset, in a private work folder."""
    monkeypatch.setenv("FBP_SMOKE", "1")
    monkeypatch.setenv("FBP_DATA_DIR", str(synthetic_root))
    monkeypatch.delenv("FBP_CONFIG", raising=False)
    return work


def test_smoke_dinov2_trains_stage_one_stays_there_and_04_and_05_use_it(smoke_run, synthetic_root, tmp_path,
                                                                       monkeypatch, capsys):
    from PIL import Image
    from skimage import data

    stage_one = run_cells("02_frozen_head", edits={'utils.Config(protocol="fold1")':
                                                   f'utils.Config(protocol="fold1", backbone="{DINO}")'})
    run, record = stage_one["RUN"].folder, stage_one["RUN"].record
    assert stage_one["cfg"].backbone == DINO and type(utils.backbone_of(stage_one["model"])).__name__ == \
        "DINOV2Backbone"
    assert record["frozen"]["seconds_per_epoch"] > 0 and record["frozen"]["ridge_val"]
    assert utils.read_json(run / "reference-frozen.json")["map_scale"] is None
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(errors.FrozenOnlyError, match=f"{DINO} is a frozen-only backbone: at 518 px"):
        run_cells("03_finetune")
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written
    assert runs.Run.at(run).model_path().name == "frozen.keras"
    experiments._run_notebook("03_finetune", stage_one["cfg"], synthetic_root, run, "dinov2")  # as runners do
    assert f"dinov2: notebook 03_finetune: {DINO} is a frozen-only backbone" in capsys.readouterr().out

    evaluated = run_cells("04_evaluation")  # stage 1 is the run's model, evaluated and bundled
    assert runs.Run.at(run).evaluation()["model"] == "frozen" and evaluated["BUNDLE"].is_file()
    assert runs.Run.at(run).stage == "evaluated" and runs.Run.at(run).final == "frozen"
    Image.fromarray(data.astronaut()).save(tmp_path / "me.jpg")
    monkeypatch.setenv("FBP_PHOTO", str(tmp_path / "me.jpg"))
    monkeypatch.setenv("FBP_RUN", str(evaluated["BUNDLE"]))
    capsys.readouterr()
    scored = run_cells("05_score_your_face")
    printed = capsys.readouterr().out
    assert f"{DINO} is frozen-only (notebook 03 says why): stage 1 is this run's model." in printed
    assert f"No map for this run: {utils.NO_MAP}" in printed
    assert [face.label for face in scored["scored"]] == ["me.jpg, face 1"] and scored["RUN"].name == run.name
    [result] = scored["results"]
    assert result.map is None and result.map_scale is None and 1 <= result.score <= 5
    assert result.crop_score == pytest.approx(result.scores[0, 0], abs=1e-5)


def test_smoke_siglip2_fine_tunes_in_03_sparing_its_embeddings_from_decay(synthetic_root, work, monkeypatch):
    cfg = utils.Config(backbone=SIGLIP).smoke()
    tuned = train(cfg, synthetic_root, monkeypatch)
    assert tuned["RUN"].record["finished"] and tuned["RUN"].model_path().name == "finetuned.keras"
    weights = utils.backbone_of(tuned["model"]).trainable_weights

    def decayed(path: str) -> bool:
        [weight] = [w for w in weights if w.path.endswith(path)]
        return tuned["optimizer"]._use_weight_decay(weight)

    assert not decayed("position_embedding/embeddings") and not decayed("post_layer_norm/gamma")
    assert decayed("patch_embedding/kernel") and decayed("encoder_block_0/mlp/fc1/kernel")


def test_the_ablation_trains_the_presets_to_stage_1_only(synthetic_root, work, monkeypatch):
    recipes = experiments._ablation_recipes(utils.Config(backbone=DINO))
    frozen = {name: recipe for name, recipe in recipes.items() if recipe.backbone in settings.FOUNDATIONS}
    assert list(frozen) == [f"{name} (stage 1 only)" for name in settings.FOUNDATIONS]
    assert [r.image_size for r in frozen.values()] == [518, 224]
    assert {r.image_size for name, r in recipes.items() if name not in frozen} == {350}
    assert not any(r.label_distribution for r in frozen.values())

    ran = []

    def run_notebook(name, cfg, data_root, folder, label=None):
        ran.append((name, label))
        if name == "02_frozen_head":
            utils.save_json(folder / "run.json", {"frozen": {}})

    monkeypatch.setattr(experiments, "_run_notebook", run_notebook)
    monkeypatch.setattr(experiments, "check_space", lambda folders, what: None)
    monkeypatch.setattr(runs.Run, "evaluation", lambda run: {})
    configs = {"ResNet50": utils.Config(), "SigLIP, stage 1": utils.Config(backbone=SIGLIP),
            "DINOv2": utils.Config(backbone=DINO)}
    for folder in [runs._run_dir(cfg, utils.dataset_fingerprint(dataset.all_labels(synthetic_root)))
                   for cfg in configs.values()]:
        folder.mkdir(parents=True)
    experiments._train_and_evaluate(configs, synthetic_root, "a test", stage_one_only=["SigLIP, stage 1"])
    assert ran == [("02_frozen_head", "ResNet50"), ("03_finetune", "ResNet50"),
                   ("02_frozen_head", "SigLIP, stage 1"), ("02_frozen_head", "DINOv2")]


def test_a_table_row_kept_at_stage_1_says_so_with_its_head_time():
    assert runs.stage_words("finetuned", 12.0) == "fine-tuned"
    assert runs.stage_words("frozen", 0.0123) == \
        "frozen head (stage 1 only), 0.012 s per epoch on cached features"
    assert runs.stage_words("frozen") == "frozen head (stage 1 only)"
