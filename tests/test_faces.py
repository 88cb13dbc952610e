"""Faces: reading any photo, finding faces, framing them like the dataset, contribution maps,
the percentile reference and the upload formats of ipywidgets 7, ipywidgets 8 and Colab."""

import datetime
import io
import os
import subprocess
import sys
from dataclasses import replace

import ipywidgets
import keras
import numpy as np
import pillow_heif
import pytest
from conftest import ROOT, model_from_notebook
from PIL import Image
from skimage import data

import utils
from fbp import dataset, errors, experiments, faces, runs, scoring, settings, synthetic

FRAMING = {"eye_center_x": 0.5, "eye_center_y": 0.4, "eye_distance": 0.3}


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **options)
    return buffer.getvalue()


def test_one_face_in_the_astronaut_photo(astronaut):
    found = utils.detect_faces(astronaut)
    assert len(found) == 1
    x, y, w, h = found[0].box
    left, right = faces._eyes_of(found[0])
    assert x < left[0] < right[0] < x + w and y < left[1] < y + h
    assert found[0].confidence > 0.95


def test_no_face_in_coffee():
    assert utils.detect_faces(Image.fromarray(data.coffee())) == []


def test_two_faces_side_by_side_largest_first(astronaut):
    pair = Image.fromarray(np.concatenate([data.astronaut(), data.astronaut()[:, ::-1]], axis=1))
    faces = utils.detect_faces(pair)
    assert len(faces) == 2
    centres = sorted(f.box[0] + f.box[2] / 2 for f in faces)
    assert centres[0] < 512 < centres[1]


def test_the_face_is_aligned_where_the_framing_puts_the_eyes(astronaut):
    size = 256
    aligned = utils.align_face(astronaut, utils.detect_faces(astronaut)[0], FRAMING, size)
    assert aligned.size == (size, size) and aligned.mode == "RGB"
    again = utils.detect_faces(aligned)
    assert len(again) == 1
    left, right = faces._eyes_of(again[0])
    assert abs(right[1] - left[1]) < 0.02 * size                        # eyes level
    assert np.linalg.norm(right - left) == pytest.approx(0.3 * size, rel=0.1)
    assert (left + right) / 2 == pytest.approx(np.array([0.5, 0.4]) * size, abs=0.03 * size)


def test_a_tilted_face_is_levelled(astronaut):
    tilted = astronaut.rotate(20, resample=Image.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    aligned = utils.align_face(tilted, utils.detect_faces(tilted)[0], FRAMING, 256)
    left, right = faces._eyes_of(utils.detect_faces(aligned)[0])
    assert abs(right[1] - left[1]) < 0.03 * 256


def test_the_exif_rotation_of_a_phone_photo_is_applied(astronaut):
    sideways = astronaut.transpose(Image.Transpose.ROTATE_90)      # stored as a phone stores it
    exif = Image.Exif()
    exif[0x0112] = 6                                                  # "rotate 90° clockwise to view"
    upright = utils.read_photo(jpeg(sideways, exif=exif), "phone.jpg")
    assert upright.size == astronaut.size
    original = utils.detect_faces(astronaut)[0].box
    assert utils.detect_faces(upright)[0].box == pytest.approx(original, abs=6)


def test_a_large_photo_is_detected_on_a_small_copy_with_boxes_in_its_own_pixels(astronaut):
    large = astronaut.resize((4000, 4000))
    box = utils.detect_faces(large)[0].box
    assert np.array(box) == pytest.approx(np.array(utils.detect_faces(astronaut)[0].box) * 4000 / 512,
                                          rel=0.05, abs=20)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA"])
def test_any_colour_mode_becomes_rgb_and_its_face_is_found(astronaut, mode):
    buffer = io.BytesIO()
    astronaut.convert(mode).save(buffer, format="PNG")
    image = utils.read_photo(buffer.getvalue(), f"photo-{mode}.png")
    assert image.mode == "RGB" and image.size == astronaut.size
    assert len(utils.detect_faces(image)) == 1


def test_transparency_becomes_white(astronaut):
    clear = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    buffer = io.BytesIO()
    clear.save(buffer, format="PNG")
    assert utils.read_photo(buffer.getvalue(), "clear.png").getpixel((5, 5)) == (255, 255, 255)


def test_a_text_file_named_jpg_is_named_as_not_an_image(tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_text("not a photo")
    with pytest.raises(utils.PhotoError, match="holiday.jpg: this is not an image"):
        utils.read_photo(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(utils.PhotoError, match="gone.jpg: no such file"):
        utils.read_photo(tmp_path / "gone.jpg")


def test_a_truncated_jpeg_is_named(astronaut):
    data_ = jpeg(astronaut)
    with pytest.raises(utils.PhotoError, match="cut.jpg: the image cannot be read"):
        utils.read_photo(data_[: len(data_) // 2], "cut.jpg")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return model_from_notebook(64)


def reference_for(model) -> runs.Reference:
    """A reference whose average face is random features of the model's width; predictions over 1-5."""
    predicted = np.linspace(1, 5, 201)
    width = model.get_layer("score").input.shape[-1]
    return runs.Reference(predicted + 0.1, predicted, np.random.default_rng(1).uniform(0, 1, width),
                           0.5, "a test reference")


@pytest.fixture(scope="module")
def reference(model):
    return reference_for(model)


@pytest.mark.parametrize("backbone", list(utils.BACKBONES))
def test_contribution_maps_average_to_the_score_minus_the_average_prediction(backbone):
    keras.utils.set_random_seed(0)
    model = model_from_notebook(64, backbone=backbone)
    reference = reference_for(model)
    faces = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    scores, maps = utils.contribution_maps(model, faces, reference.mean_features)
    np.testing.assert_allclose(scores, model.predict(faces, verbose=0)["score"].ravel(), rtol=1e-4, atol=1e-4)
    kernel, bias = (w.numpy().astype(float) for w in model.get_layer("score").weights)
    average = reference.mean_features @ kernel[:, 0] + bias[0]   # the head's prediction for the average face
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), scores - average, rtol=1e-9, atol=1e-9)
    # each face's map is its own: the same face alone gives the same map
    np.testing.assert_allclose(utils.contribution_maps(model, faces[1:2], reference.mean_features)[1][0],
                               maps[1], rtol=1e-5, atol=1e-4)


def test_contribution_maps_change_sign_with_the_heads_weights(model, reference):
    faces = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    head = model.get_layer("score")
    kernel, bias = head.get_weights()
    _, maps = utils.contribution_maps(model, faces, reference.mean_features)
    try:
        head.set_weights([-kernel, bias])
        _, flipped = utils.contribution_maps(model, faces, reference.mean_features)
    finally:
        head.set_weights([kernel, bias])
    assert np.abs(maps).max() > 0
    np.testing.assert_allclose(flipped, -maps, rtol=1e-9, atol=1e-12)


def test_upload_readers_for_ipywidgets_7_ipywidgets_8_and_colab():
    v7 = {"me.jpg": {"metadata": {"name": "me.jpg", "type": "image/jpeg", "size": 3},
                     "content": b"abc"}}
    v8 = ({"name": "me.jpg", "type": "image/jpeg", "size": 3, "content": memoryview(b"abc"),
           "last_modified": 0},)
    colab = {"me.jpg": b"abc"}
    for value in (v7, v8, colab):
        assert faces._uploaded_files(value) == [("me.jpg", b"abc")]
    assert faces._uploaded_files({}) == [] and faces._uploaded_files(()) == []


def test_photos_from_env_split_on_the_os_path_separator(monkeypatch, tmp_path):
    monkeypatch.setenv("FBP_PHOTO", os.pathsep.join([str(tmp_path / "a.jpg"), "", str(tmp_path / "b.png")]))
    assert [name for name, _ in faces._photos_from_env()] == ["a.jpg", "b.png"]
    monkeypatch.delenv("FBP_PHOTO")
    assert faces._photos_from_env() == []


def test_measure_framing_on_real_faces(tmp_path):
    paths = []
    for i, shift in enumerate(range(0, 120, 10)):
        face = Image.fromarray(data.astronaut()).crop((100 + shift, 20, 350 + shift, 270)).resize((350, 350))
        face.save(tmp_path / f"AF{i + 1}.jpg")
        paths.append(str(tmp_path / f"AF{i + 1}.jpg"))
    framing = faces._measure_framing(paths)
    assert framing["faces_measured"] == 12
    assert 0.1 < framing["eye_distance"] < 0.5 and 0.2 < framing["eye_center_y"] < 0.6


def test_measure_framing_refuses_faceless_images(synthetic_root):
    with pytest.raises(errors.FramingError, match="only 0 of 20"):
        faces._measure_framing(dataset.all_labels(synthetic_root)["path"].tolist(), limit=20)


def test_the_upload_widget_puts_the_chosen_photos_into_the_list(astronaut):
    photos = []
    upload, said = faces._upload_widget(photos).children
    assert "Choose photos" in said.value
    photo = jpeg(astronaut)
    if ipywidgets.__version__.startswith("7."):  # Colab's: what the browser sends, then the count
        upload.set_trait("metadata", [{"name": "me.jpg", "type": "image/jpeg", "size": len(photo),
                                       "lastModified": 0}])
        upload.set_trait("data", [photo])
        upload.set_trait("_counter", upload._counter + 1)
    else:
        upload.value = ({"name": "me.jpg", "type": "image/jpeg", "size": len(photo),
                         "content": memoryview(photo), "last_modified": datetime.datetime.now(datetime.UTC)},)
    assert photos == [("me.jpg", photo)] and "1 photo(s) chosen" in said.value


def test_the_out_of_fold_reference_is_taken_once_5_fold_has_run(tmp_path):
    folders = []
    for k in range(1, 6):
        folder = tmp_path / f"fold{k}"
        config = {"protocol": f"fold{k}", "seed": 0, "backbone": "ResNet50"}
        record = {"config": config, "dataset": "d", "recipe": settings.RECIPE_VERSION, "smoke": False}
        utils.save_json(folder / "run.json", record)
        utils.save_json(folder / "reference-finetuned.json", {
            "set": "x", "files": [f"AF{k}.jpg"], "true": [float(k)], "predicted": [k + 0.5],
            "mean_features": [0.0], "map_scale": 1.0})
        folders.append(folder)
    (folders[0] / "frozen.keras").touch()
    with pytest.raises(errors.RunNotFoundError, match="reference-frozen.json is missing"):
        runs.Run.at(folders[0]).reference()                # no finetuned.keras: the stage-1 reference
    (folders[0] / "finetuned.keras").touch()
    assert runs.Run.at(folders[0]).reference().predicted.tolist() == [1.5]
    experiments._save_out_of_fold_reference([runs.Run.at(folder) for folder in folders])
    reference = runs.Run.at(folders[0]).reference()
    assert reference.predicted.tolist() == [1.5, 2.5, 3.5, 4.5, 5.5] and "5-fold" in reference.source
    [joined] = tmp_path.glob("reference-5fold-*.json")
    assert joined == runs.Run.at(folders[0]).out_of_fold_path()
    for folder in folders[1:]:  # one file serves every fold
        (folder / "finetuned.keras").touch()
        assert runs.Run.at(folder).reference().predicted.tolist() == [1.5, 2.5, 3.5, 4.5, 5.5]
    other_seed = folders[0].parent / "other"
    utils.save_json(other_seed / "run.json", {**record, "config": {**config, "protocol": "fold1", "seed": 1}})
    assert runs.Run.at(other_seed).out_of_fold_path() != runs.Run.at(folders[0]).out_of_fold_path()


def test_a_frozen_only_backbones_folds_join_and_use_their_stage_1_references(tmp_path):
    folders = []
    for k in range(1, 6):
        folder = tmp_path / f"fold{k}"
        utils.save_json(folder / "run.json", {"config": {"protocol": f"fold{k}", "backbone": "dinov2_base"},
                                              "dataset": "d", "recipe": settings.RECIPE_VERSION,
                                              "smoke": False})
        utils.save_json(folder / "reference-frozen.json", {
            "set": "x", "files": [f"AF{k}.jpg"], "true": [float(k)], "predicted": [k + 0.5],
            "mean_features": [0.0], "map_scale": None})
        (folder / "frozen.keras").touch()
        folders.append(folder)
    assert runs.Run.at(folders[0]).final == "frozen"
    experiments._save_out_of_fold_reference([runs.Run.at(folder) for folder in folders])
    reference = runs.Run.at(folders[2]).reference()
    assert reference.predicted.tolist() == [1.5, 2.5, 3.5, 4.5, 5.5] and reference.map_scale is None
    assert "frozen head model of the fold that held it out" in reference.source


def test_shifted_eyes_move_in_the_detectors_pixels_in_image_order():
    face = faces._Face(box=(0, 0, 100, 100), left_eye=(70.0, 40.0), right_eye=(30.0, 42.0),
                      confidence=1.0, pixel=2.0)        # the detector called the eyes the other way
    moved = utils.shifted_eyes(face, (-1.5, 1.5, 1.5, -1.5))
    left, right = faces._eyes_of(moved)
    np.testing.assert_allclose([left, right], [[27.0, 45.0], [73.0, 37.0]])


def scaled(face: faces._Face, factor: float) -> faces._Face:
    """The face as found in a copy of its photo resized by factor."""
    return replace(face, box=tuple(v * factor for v in face.box), pixel=face.pixel * factor,
                   left_eye=tuple(np.multiply(face.left_eye, factor)),
                   right_eye=tuple(np.multiply(face.right_eye, factor)))


def test_a_large_grainy_photo_is_shrunk_before_it_is_aligned(astronaut):
    # A 2048 px photo with sensor-like grain, its face 4x the crop's scale: the crop must match the
    # crop of an antialiased copy at the crop's scale (11.8 grey levels apart when the photo was
    # resampled straight into the crop, 1.3 now).
    grain = np.random.default_rng(0).normal(0, 20, (2048, 2048, 3)).astype(np.float32)
    large = Image.fromarray(np.clip(np.asarray(astronaut.resize((2048, 2048)), np.float32) + grain,
                                    0, 255).astype(np.uint8))
    face = utils.detect_faces(astronaut)[0]
    left, right = faces._eyes_of(face)
    framing = {**FRAMING, "eye_distance": np.linalg.norm(right - left) / 350}  # at 512 px: scale 1
    crop = utils.align_face(large, scaled(face, 4), framing, 350)
    reference = utils.align_face(large.resize(astronaut.size, Image.LANCZOS), face, framing, 350)
    assert np.abs(np.asarray(crop, float) - np.asarray(reference, float)).mean() < 3


@pytest.mark.parametrize("image_format", ["PNG", "TIFF"])
def test_a_16_bit_greyscale_photo_is_scaled_to_8_bits(astronaut, image_format):
    grey = np.asarray(astronaut.convert("L"))
    buffer = io.BytesIO()
    Image.fromarray(grey.astype(np.uint16) * 257).save(buffer, format=image_format)  # 0-65535
    image = utils.read_photo(buffer.getvalue(), f"scan.{image_format.lower()}")
    assert np.abs(np.asarray(image.convert("L"), float) - grey).max() <= 1
    assert len(utils.detect_faces(image)) == 1


def test_a_heic_photo_is_read(astronaut, monkeypatch):
    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    astronaut.save(buffer, format="HEIF", quality=90)                 # what an iPhone saves
    # as in a notebook's kernel, where nothing has registered the HEIF reader yet (here scikit-image's
    # imageio has, on import)
    monkeypatch.setattr(Image, "ID", [name for name in Image.ID if name != "HEIF"])
    monkeypatch.delitem(Image.OPEN, "HEIF")
    image = utils.read_photo(buffer.getvalue(), "IMG_0001.HEIC")
    assert image.mode == "RGB" and image.size == astronaut.size
    assert np.abs(np.asarray(image, float) - np.asarray(astronaut, float)).mean() < 5
    assert len(utils.detect_faces(image)) == 1


def test_a_photo_with_too_many_pixels_is_named_as_such(astronaut, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # refused: over 0.2 MP, as 200 MP over 179
    with pytest.raises(utils.PhotoError, match=r"huge.jpg: the photo has too many pixels to read "
                                               r"\(more than 0.2 million.*export it smaller"):
        utils.read_photo(jpeg(astronaut), "huge.jpg")


def test_a_tiny_face_is_found_but_named_as_too_small_to_score(astronaut):
    photo = Image.new("RGB", (400, 300), (120, 120, 120))
    photo.paste(astronaut.resize((64, 64)), (150, 100))                  # a 10 x 14 px face
    [face] = utils.detect_faces(photo)
    with pytest.raises(utils.PhotoError, match="too small to score: its eyes are 6 pixels apart in the "
                                               "photo, and the model needs at least 37 .* 12 times"):
        utils.check_face_size(face, synthetic.SYNTHETIC_FRAMING, 350)   # 0.21 x 350 / 2 = 37 px
    utils.check_face_size(scaled(face, 37 / 6), synthetic.SYNTHETIC_FRAMING, 350)  # 37 px: scored


def test_loading_the_detector_prints_no_red_text():
    # joblib leaves lz4's reader of MTCNN's weights to be cleaned up after closing the file, and
    # Python 3.13 reports that as "Exception ignored ... I/O operation on closed file" (gh-62948)
    script = ("import sys; from fbp import faces; hook = sys.unraisablehook; faces._face_detector(); "
              "assert sys.unraisablehook is hook, 'the hook is restored'")
    loaded = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert loaded.returncode == 0, loaded.stderr
    assert "Exception ignored" not in loaded.stderr and "lz4" not in loaded.stderr, loaded.stderr


# --- the crops' span and the models' disagreement, against a simulation -----------------------


def simulated_scores(rng: np.random.Generator, models: int, faces: int) -> np.ndarray:
    """Per face, a row per model of its six crops' scores: the face's score (3), each model's offset
    from the others (SD 0.05) and each crop's own noise under each model (SD 0.03)."""
    return 3 + rng.normal(0, 0.05, (faces, models, 1)) + rng.normal(0, 0.03, (faces, models, 6))


def half_span(scores: np.ndarray) -> float:
    """Half the width of a face's crops' span."""
    low, high = scoring._crops_span(scores)
    return (high - low) / 2


def test_the_crops_span_is_the_alignments_not_the_models_offsets_which_get_their_own_figure():
    rng = np.random.default_rng(0)
    five, one = simulated_scores(rng, 5, 4000), simulated_scores(rng, 1, 4000)
    spread = np.mean([half_span(face) for face in five])
    # how far alignment moves the five models' mean score: half the range of six crops whose noise
    # is averaged over five models (SD 0.03 / sqrt 5), 1.27 SD for six values: 0.017
    half_range = np.mean(np.ptp(rng.normal(0, 1, (100_000, 6)), axis=1)) / 2
    assert spread == pytest.approx(0.03 / np.sqrt(5) * half_range, rel=0.03)
    assert np.mean([np.ptp(face) / 2 for face in five]) > 0.09  # the 30 scores' half-range: 0.10
    # one model: half the range of its six crops' scores, as before (0.038 here)
    assert [scoring._crops_span(face) for face in one[:20]] == [(face.min(), face.max()) for face in one[:20]]
    alone = np.mean([half_span(face) for face in one])
    assert alone == pytest.approx(0.03 * half_range, rel=0.03)
    # the disagreement: the SD of the models' scores, each the mean of six crops (an unbiased variance)
    disagreement = np.array([scoring._models_disagreement(face) for face in five])
    assert np.sqrt(np.mean(disagreement**2)) == pytest.approx(np.hypot(0.05, 0.03 / np.sqrt(6)), rel=0.03)
    assert scoring._models_disagreement(one[0]) is None


def test_a_faces_result_carries_the_crops_span_and_the_disagreement(model, reference):
    rng = np.random.default_rng(2)
    scores = simulated_scores(rng, 5, 1)[0]
    crops = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    scorers = [scoring._Scorer(f"fold{k}", model, reference) for k in range(1, 6)]
    result = utils.score_face(None, crops, [{"score": row[:, None]} for row in scores], scorers)
    assert result.score == pytest.approx(scores.mean())
    assert result.span == scoring._crops_span(scores) and result.span[0] <= result.score <= result.span[1]
    assert half_span(scores) < np.ptp(scores) / 2  # the models' offsets stay out of it
    assert result.disagreement == scoring._models_disagreement(scores) > 0


def reference_of(size: int) -> runs.Reference:
    """A reference of size faces, for describe_references."""
    predicted = np.linspace(1, 5, size)
    return runs.Reference(predicted, predicted, np.zeros(1), 0.5, f"the {size:,} test faces of a run")


def test_the_references_are_described_as_the_scoring_uses_them():
    one = utils.describe_references([scoring._Scorer("run", None, reference_of(1100))])
    assert one.startswith("Percentiles are a score's place among the 1,100 test faces of a run, which the "
                          "model never trained on; the range beside one holds, 8 times in 10,")
    assert one.endswith("misses on the 110 of them with the nearest predictions.")
    five = utils.describe_references([scoring._Scorer(f"fold{k}", None, reference_of(1100))
                                      for k in range(5)])
    assert five.startswith("Percentiles are the mean of 5 places: each fold model's score placed among its "
                           "own fold's 1,100 test faces, which it never trained on. The range beside one "
                           "is the mean of their 5 ranges; each holds, 8 times in 10,")
    assert five.endswith("misses on the 110 of them with the nearest predictions.") and "5,500" not in five
    uneven = utils.describe_references([scoring._Scorer("a", None, reference_of(n)) for n in (1099, 1101)])
    assert "own fold's 1,099 to 1,101 test faces" in uneven and "on the 109 to 110 of them" in uneven
