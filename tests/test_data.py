"""The data layer: labels of both releases, protocols, validation, download and extraction."""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

import utils
from fbp import dataset, environment, errors, synthetic

# --- labels --------------------------------------------------------------------------


def test_real_label_lines_read_in_both_namings():
    old = dataset._read_labels(FIXTURES / "labels_2018_sample.txt")
    new = dataset._read_labels(FIXTURES / "labels_current_sample.txt")
    assert old[["file", "score", "group"]].equals(new[["file", "score", "group"]])
    assert old.loc[0, "file"] == "CF437.jpg" and old.loc[0, "original_name"] == "ftw437.jpg"
    assert old.loc[0, "score"] == pytest.approx(2.883333)
    assert list(old["group"]) == ["CF", "AM", "AM", "AM", "CF", "AF", "AM", "AM"]


def test_the_real_label_list_has_the_published_statistics():
    labels = dataset._read_labels(FIXTURES / "labels_2018_all.txt")
    assert len(labels) == 5500 and labels["file"].is_unique
    assert labels["group"].value_counts().to_dict() == {"AF": 2000, "AM": 2000, "CF": 750, "CM": 750}
    assert labels["score"].mean() == pytest.approx(2.991, abs=5e-4)
    assert labels["score"].median() == pytest.approx(2.833, abs=5e-4)
    assert labels["score"].std() == pytest.approx(0.688, abs=5e-4)


@pytest.mark.parametrize(("score", "share"), [(2.85, 50.2), (3.15, 64.9), (3.7, 79.5)])
def test_percentiles_on_the_real_labels(score, share):
    scores = dataset._read_labels(FIXTURES / "labels_2018_all.txt")["score"]
    assert utils.percentile_of(score, scores) == pytest.approx(share, abs=0.05)


def test_percentile_counts_strictly_lower_scores():
    assert utils.percentile_of(2.0, [1.0, 2.0, 3.0, 4.0]) == 25.0
    assert utils.percentile_of(9.0, [1.0, 2.0]) == 100.0


@pytest.mark.parametrize("line", ["AF1.jpg", "AF1.jpg three", "AF1.jpg 2.5 extra", "XY1.jpg 2.5",
                                  "AF1.png 2.5"])
def test_a_malformed_label_line_names_the_file_and_line(tmp_path, line):
    path = tmp_path / "train.txt"
    path.write_text(f"AF2.jpg 3.1\n\n{line}\n")
    with pytest.raises(errors.LabelFormatError, match=r"train\.txt, line 3"):
        dataset._read_labels(path)


@pytest.mark.parametrize("score", ["0.9", "5.01", "nan"])
def test_a_score_outside_the_scale_is_refused(tmp_path, score):
    path = tmp_path / "test.txt"
    path.write_text(f"AF2.jpg 3.1\nCM7.jpg {score}\n")
    with pytest.raises((errors.ScoreRangeError, errors.LabelFormatError), match="line 2"):
        dataset._read_labels(path)


def test_an_empty_label_file_is_refused(tmp_path):
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(errors.LabelFormatError, match="no labels"):
        dataset._read_labels(tmp_path / "empty.txt")


def test_names_and_groups():
    assert dataset._canonical_name("mtw750.jpg") == "CM750.jpg"
    assert dataset._old_name("AM12.jpg") == "mty12.jpg"
    with pytest.raises(ValueError, match="not a SCUT-FBP5500 image name"):
        dataset._canonical_name("selfie.jpg")


# --- layout and protocols --------------------------------------------------------------


def test_dataset_root_is_found_in_or_below_a_folder(synthetic_root):
    assert dataset._find_dataset_root(synthetic_root) == synthetic_root
    assert dataset._find_dataset_root(synthetic_root.parent) == synthetic_root


def test_a_wrong_folder_gets_a_clear_message(tmp_path):
    (tmp_path / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(errors.DatasetLayoutError, match="Images/ and train_test_files/.*holiday.jpg"):
        dataset._find_dataset_root(tmp_path)
    with pytest.raises(errors.DatasetLayoutError, match="does not exist"):
        dataset._find_dataset_root(tmp_path / "nowhere")


@pytest.mark.parametrize(("protocol", "sizes"), [("fold1", [216, 24, 60]), ("60/40", [162, 18, 120])])
def test_protocols_have_the_release_proportions(synthetic_root, protocol, sizes):
    parts = utils.load_protocol(synthetic_root, protocol)
    assert [len(parts[p]) for p in ("train", "val", "test")] == sizes


def test_the_five_test_folds_partition_the_dataset(synthetic_root):
    tests = [set(utils.load_protocol(synthetic_root, f"fold{k}")["test"]["file"]) for k in range(1, 6)]
    assert sum(len(t) for t in tests) == 300 and len(set().union(*tests)) == 300


def test_validation_is_carved_from_train_deterministically(synthetic_root):
    first = utils.load_protocol(synthetic_root, "fold2", seed=3)
    again = utils.load_protocol(synthetic_root, "fold2", seed=3)
    other = utils.load_protocol(synthetic_root, "fold2", seed=4)
    train_file, _ = dataset.protocol_files(synthetic_root, "fold2")
    official_train = set(dataset._read_labels(train_file)["file"])
    assert set(first["val"]["file"]) | set(first["train"]["file"]) == official_train
    assert not set(first["val"]["file"]) & set(first["test"]["file"])
    assert first["val"]["file"].tolist() == again["val"]["file"].tolist()
    assert first["val"]["file"].tolist() != other["val"]["file"].tolist()
    assert set(first["val"]["group"]) == set(dataset._GROUPS)


def test_the_2018_folder_name_of_the_60_40_split_is_found(small_root):
    split = small_root / "train_test_files"
    (split / "split_of_60%training and 40%testing").rename(split / "split_of_60%training_40%testing")
    assert len(utils.load_protocol(small_root, "60/40")["test"]) == 24


def test_unknown_protocol_and_missing_label_files(small_root):
    with pytest.raises(ValueError, match="Unknown protocol 'fold6'"):
        dataset.protocol_files(small_root, "fold6")
    shutil.rmtree(small_root / "train_test_files" / "5_folders_cross_validations_files" /
                  "cross_validation_3")
    with pytest.raises(errors.DatasetLayoutError, match="protocol fold3"):
        utils.load_protocol(small_root, "fold3")


def test_the_2018_naming_reads_like_the_current_one(tmp_path):
    old = synthetic.make_synthetic_dataset(tmp_path / "old", n=40, image_size=32, naming="2018",
                                           with_ratings=False)
    assert "fty1.jpg" in (old / "train_test_files" / "All_labels.txt").read_text()
    labels = utils.validate_dataset(old)
    assert labels["file"].str.match(r"^(AF|AM|CF|CM)\d+\.jpg$").all()
    assert all(Path(p).is_file() for p in labels["path"])


def test_images_stored_under_2018_names_are_found(small_root):
    images = small_root / "Images"
    for image in images.glob("AF*.jpg"):
        image.rename(images / dataset._old_name(image.name))
    labels = dataset.all_labels(small_root)
    assert labels.loc[labels["file"] == "AF1.jpg", "path"].item().endswith("fty1.jpg")


def test_missing_images_are_named_with_their_count(small_root):
    for name in ["AF3.jpg", "CM2.jpg"]:
        (small_root / "Images" / name).unlink()
    with pytest.raises(errors.MissingImagesError, match=r"2 image\(s\).*AF3\.jpg.*CM2\.jpg"):
        utils.validate_dataset(small_root)


def test_a_corrupt_jpeg_is_named(small_root):
    path = small_root / "Images" / "AM4.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(errors.CorruptImageError, match="AM4.jpg"):
        utils.validate_dataset(small_root)


def test_a_validated_dataset_is_not_decoded_again(small_root, monkeypatch):
    utils.validate_dataset(small_root)
    monkeypatch.setattr(dataset, "_verify_images", lambda paths: pytest.fail("decoded again"))
    assert len(utils.validate_dataset(small_root)) == 60


def test_an_image_replaced_after_validation_is_checked_again(small_root):
    utils.validate_dataset(small_root)
    (small_root / "Images" / "CF1.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(errors.CorruptImageError, match="CF1.jpg"):
        utils.validate_dataset(small_root)


def test_group_counts_follow_the_release():
    assert synthetic.group_counts(5500) == {"AF": 2000, "AM": 2000, "CF": 750, "CM": 750}
    assert sum(synthetic.group_counts(301).values()) == 301


def test_the_synthetic_dataset_stands_alone_and_names_the_release_as_utils_does():
    """utils imports data/synthetic.py for smoke runs, never the reverse."""
    import subprocess
    import sys

    code = "import sys, synthetic; assert 'utils' not in sys.modules and 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=Path(synthetic.__file__).parent, check=True)
    assert synthetic.DATASET_DIRNAME == dataset._DATASET_DIRNAME
    assert {dataset._OLD_PREFIXES[old]: old for old in dataset._OLD_PREFIXES} == synthetic.OLD_PREFIXES


# --- the raters' own ratings ---------------------------------------------------------------


def test_synthetic_ratings_are_read_whole_and_average_to_the_labels(synthetic_root):
    ratings = utils.read_ratings(synthetic_root)
    assert list(ratings.columns) == ["Rater", "file", "Rating"] and len(ratings) == 300 * 60
    means = ratings.groupby("file")["Rating"].mean()
    labels = dataset.all_labels(synthetic_root).set_index("file")["score"]
    np.testing.assert_allclose(means[labels.index], labels, atol=1e-6)


def test_no_ratings_file_means_none(small_root):
    assert utils.read_ratings(small_root) is None


def write_workbook(root, sheets: dict) -> None:
    """An All_Ratings.xlsx with the given sheets (name -> rows of Rater, Filename, Rating)."""
    import pandas as pd

    with pd.ExcelWriter(root / "All_Ratings.xlsx") as writer:
        for name, rows in sheets.items():
            pd.DataFrame(rows, columns=["Rater", "Filename", "Rating", "original Rating"]).to_excel(
                writer, sheet_name=name, index=False)


def every_rating(files, raters=range(1, 61)):
    return [(r, f, 1 + (r + i) % 5, 1 + (r + i) % 5) for i, f in enumerate(files) for r in raters]


def test_ratings_spread_over_several_sheets_are_read_whole(small_root):
    files = dataset.all_labels(small_root)["file"].tolist()
    write_workbook(small_root, {"Asian": every_rating([f for f in files if f[0] == "A"]),
                                "Caucasian": every_rating([f for f in files if f[0] == "C"])})
    ratings = utils.read_ratings(small_root)
    assert len(ratings) == 60 * 60 and set(ratings["file"]) == set(files)


def test_a_sheet_holding_all_ratings_is_taken_beside_partial_ones(small_root):
    files = dataset.all_labels(small_root)["file"].tolist()
    old_names = [dataset._old_name(f) for f in files]                     # the 2018 naming is accepted
    write_workbook(small_root, {"AF": every_rating(files[:10]), "ALL": every_rating(old_names)})
    ratings = utils.read_ratings(small_root)
    assert len(ratings) == 60 * 60 and set(ratings["file"]) == set(files)


@pytest.mark.parametrize("problem, found", [("a rater short", "59 raters"),
                                            ("an image short", "59 images"),
                                            ("other columns", "no sheet with the columns")])
def test_an_unrecognised_ratings_workbook_is_refused_with_what_was_found(small_root, problem, found):
    files = dataset.all_labels(small_root)["file"].tolist()
    rows = {"a rater short": every_rating(files, range(1, 60)),
            "an image short": every_rating(files[1:]),
            "other columns": []}[problem]
    write_workbook(small_root, {"Sheet1": rows})
    if problem == "other columns":
        import pandas as pd

        pd.DataFrame({"who": [1], "what": ["AF1.jpg"]}).to_excel(small_root / "All_Ratings.xlsx")
    expected = f"expected the dataset's 60 images x 60 raters.*{found}"
    with pytest.raises(errors.DatasetLayoutError, match=expected):
        utils.read_ratings(small_root)


# --- download and extraction ---------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_the_official_file_is_asked_for(tmp_path, monkeypatch):
    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        make_zip(Path(kwargs["output"]), {"SCUT-FBP5500_v2/Images/AF1.jpg": b"x"})

    monkeypatch.setattr("gdown.download", fake_download)
    path = dataset._download_zip(tmp_path / dataset._ZIP_NAME)
    assert calls[0]["url"] == "https://drive.google.com/uc?id=1w0TorBfTIqbquQVd6k3h_77ypnrvfGwf"
    assert calls[0]["quiet"] is False
    assert calls[0]["resume"] is True  # a cut download goes on where it stopped
    assert path.is_file() and zipfile.is_zipfile(path)


def test_gdown_itself_writes_the_zip_whole_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """The real gdown, from a server on this machine: it writes to a temporary file and moves it
    into place, so download_zip needs no temporary name of its own."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    make_zip(served / "release.zip", {"SCUT-FBP5500_v2/Images/AF1.jpg": b"x" * 100_000})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import gdown

    local, download = f"http://127.0.0.1:{server.server_port}/release.zip", gdown.download
    monkeypatch.setattr("gdown.download", lambda **kwargs: download(**{**kwargs, "url": local}))
    try:
        path = dataset._download_zip(tmp_path / "data" / dataset._ZIP_NAME)
    finally:
        server.shutdown()
    assert path.read_bytes() == (served / "release.zip").read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [dataset._ZIP_NAME]


def test_an_html_page_instead_of_the_zip_explains_the_ways_out(tmp_path, monkeypatch):
    page = b"<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>"
    monkeypatch.setattr("gdown.download", lambda **kw: Path(kw["output"]).write_bytes(page))
    with pytest.raises(errors.DownloadRefusedError) as caught:
        dataset._download_zip(tmp_path / dataset._ZIP_NAME)
    message = str(caught.value)
    assert "web page" in message and "Make a copy" in message
    assert str(environment.LOCAL_DATA_DIR) in message and "Colab" not in message  # this place's way only
    assert not list(tmp_path.iterdir())


def test_a_refusal_by_gdown_explains_the_ways_out(tmp_path, monkeypatch):
    import gdown.exceptions

    def refuse(**kwargs):
        raise gdown.exceptions.FileURLRetrievalError("Too many users have viewed or downloaded "
                                                     "this file recently.\nmore text")

    monkeypatch.setattr("gdown.download", refuse)
    with pytest.raises(errors.DownloadRefusedError, match="Too many users.*\n.*Two ways out"):
        dataset._download_zip(tmp_path / dataset._ZIP_NAME)


def test_a_broken_download_is_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr("gdown.download",
                        lambda **kw: Path(kw["output"]).write_bytes(b"PK\x03\x04 truncated"))
    with pytest.raises(errors.BadZipError, match="not a zip"):
        dataset._download_zip(tmp_path / dataset._ZIP_NAME)
    assert not list(tmp_path.iterdir())


def test_a_zip_with_a_bad_checksum_is_refused(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"a.txt": b"hello world" * 100})
    data = bytearray(path.read_bytes())
    data[data.find(b"hello")] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(errors.BadZipError, match="damaged"):
        dataset._check_zip(path)


def test_a_zip_that_climbs_out_lands_inside(tmp_path):
    """zipfile drops '..' and a leading '/' from member names: nothing lands outside the target."""
    path = make_zip(tmp_path / "evil.zip", {"ok.txt": b"fine", "../../escaped.txt": b"gotcha",
                                            "/abs.txt": b"rooted"})
    target = tmp_path / "deep" / "target"
    dataset.safe_extract(path, target)
    assert sorted(p.name for p in target.iterdir()) == ["abs.txt", "escaped.txt", "ok.txt"]
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "deep" / "escaped.txt").exists()


def test_extraction_is_complete(tmp_path, small_root):
    path = tmp_path / dataset._ZIP_NAME
    shutil.make_archive(str(path.with_suffix("")), "zip", small_root.parent, small_root.name)
    dataset.safe_extract(path, tmp_path / "data")
    extracted = dataset._extracted_dataset(tmp_path / "data")
    assert extracted == tmp_path / "data" / dataset._DATASET_DIRNAME
    assert len(utils.validate_dataset(extracted)) == 60


def test_a_half_extracted_folder_is_redone(tmp_path, capsys):
    half = tmp_path / dataset._DATASET_DIRNAME / "Images"
    half.mkdir(parents=True)
    (half / "AF1.jpg").write_bytes(b"x")
    assert dataset._extracted_dataset(tmp_path) is None
    assert "not completely extracted" in capsys.readouterr().out
    assert not (tmp_path / dataset._DATASET_DIRNAME).exists()


def test_a_complete_folder_extracted_by_hand_is_kept(tmp_path, small_root):
    shutil.copytree(small_root, tmp_path / dataset._DATASET_DIRNAME)
    assert dataset._extracted_dataset(tmp_path) == tmp_path / dataset._DATASET_DIRNAME
    assert len(dataset.all_labels(tmp_path / dataset._DATASET_DIRNAME)) == 60


def test_fetch_prefers_a_cached_zip_to_the_network(tmp_path, small_root, work, monkeypatch):
    monkeypatch.setattr(environment, "LOCAL_DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(dataset, "_download_zip", lambda *a, **k: pytest.fail("downloaded"))
    work.mkdir(parents=True)
    shutil.make_archive(str(work / dataset._ZIP_NAME[:-4]), "zip", small_root.parent, small_root.name)
    root = utils.find_or_fetch_dataset()
    assert root == tmp_path / "data" / dataset._DATASET_DIRNAME
    assert utils.find_or_fetch_dataset() == root  # second time: the extracted copy


def test_fetch_downloads_keeps_the_zip_and_extracts(tmp_path, small_root, work, monkeypatch):
    monkeypatch.setattr(environment, "LOCAL_DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(dataset, "_zip_candidates", lambda: [work / dataset._ZIP_NAME])

    def fake_download(destination):
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.make_archive(str(destination)[:-4], "zip", small_root.parent, small_root.name)
        return destination

    monkeypatch.setattr(dataset, "_download_zip", fake_download)
    root = utils.find_or_fetch_dataset()
    assert (work / dataset._ZIP_NAME).is_file()
    assert len(dataset.all_labels(root)) == 60


def test_fbp_data_dir_is_used_as_it_is(small_root, work, monkeypatch):
    monkeypatch.setenv("FBP_DATA_DIR", str(small_root.parent))
    monkeypatch.setattr(dataset, "_download_zip", lambda *a, **k: pytest.fail("downloaded"))
    assert utils.find_or_fetch_dataset() == small_root


def test_smoke_mode_makes_a_synthetic_dataset_in_the_work_folder(work, monkeypatch):
    monkeypatch.setenv("FBP_SMOKE", "1")
    root = utils.find_or_fetch_dataset()
    assert root.is_relative_to(work) and len(dataset.all_labels(root)) == 300


@pytest.mark.parametrize(("content", "html"), [(b"  <!DOCTYPE html><html>", True),
                                               (b"<html><body>quota</body></html>", True),
                                               (b"PK\x03\x04\x14\x00", False)])
def test_html_detection(tmp_path, content, html):
    (tmp_path / "f").write_bytes(content)
    assert dataset.is_html_file(tmp_path / "f") is html


# --- the tf.data pipeline -----------------------------------------------------------------


def test_evaluation_batches_keep_the_label_order(synthetic_root):
    part = utils.load_protocol(synthetic_root, "fold1")["test"]
    batches = list(utils.make_dataset(part, 40, batch_size=16))
    scores = np.concatenate([y["score"].numpy() for _, y in batches])
    np.testing.assert_allclose(scores, part["score"].to_numpy(), rtol=1e-6)
    images = batches[0][0].numpy()
    assert images.dtype == np.uint8 and images.shape == (16, 40, 40, 3)


def test_decoded_images_match_the_files(synthetic_root):
    from PIL import Image

    part = utils.load_protocol(synthetic_root, "fold1")["test"].head(3)
    images = next(iter(utils.make_dataset(part, 96, batch_size=3)))[0].numpy()
    for image, path in zip(images, part["path"], strict=True):
        expected = np.asarray(Image.open(path).convert("RGB"), dtype=int)
        assert np.abs(image.astype(int) - expected).mean() < 2


def test_training_batches_are_shuffled_and_left_as_they_are(synthetic_root):
    part = utils.load_protocol(synthetic_root, "fold1")["train"]
    plain = next(iter(utils.make_dataset(part, 48, batch_size=len(part))))
    shuffled = next(iter(utils.make_dataset(part, 48, batch_size=len(part), training=True)))
    assert shuffled[0].dtype == plain[0].dtype and shuffled[0].shape == plain[0].shape
    assert sorted(shuffled[1]["score"].numpy()) == pytest.approx(sorted(plain[1]["score"].numpy()))
    assert not np.array_equal(shuffled[1]["score"].numpy(), plain[1]["score"].numpy())
    # augmentation is the model's job (notebook 03): the pipeline keeps each image as it is
    def by_content(batch):
        return sorted(image.tobytes() for image in batch[0].numpy())

    assert by_content(shuffled) == by_content(plain)


def test_notebook_03s_augmentation_mirrors_shifts_and_zooms_within_bounds_independently():
    import tensorflow as tf
    from conftest import run_cells

    batches = tf.data.Dataset.from_tensors((np.zeros((2, 8, 8, 3), np.uint8), np.zeros(2, np.float32)))
    augment = run_cells("03_finetune", "augment", tf=tf, train_images=batches)["augment"]
    ramp = np.tile(np.arange(32, dtype=np.uint8)[None, :, None], (32, 1, 3)) * 8
    images = tf.constant(np.stack([ramp] * 400))
    out, scores = augment(images, tf.zeros(400))
    assert out.dtype == tf.uint8 and out.shape == images.shape and scores.shape == (400,)
    left_to_right = out.numpy()[:, 16, -1, 0].astype(int) - out.numpy()[:, 16, 0, 0].astype(int)
    mirrored = left_to_right < 0
    assert 0.4 < mirrored.mean() < 0.6  # about half are mirror images
    assert (np.abs(left_to_right) >= 0.85 * 248).all()  # a zoom of at most 10 %
    # the zoom does not depend on the mirror: the same spread of zooms either way
    assert abs(np.abs(left_to_right[mirrored]).mean() - np.abs(left_to_right[~mirrored]).mean()) < 3


def test_the_dataset_fingerprint_comes_from_the_labels_in_hand(small_root, monkeypatch):
    labels = utils.validate_dataset(small_root)
    image = Path(labels["path"].iloc[0])
    image.write_bytes(image.read_bytes() + b"\0")               # one image changed on disk
    changed = utils.dataset_fingerprint(dataset.all_labels(small_root))
    assert changed != utils.dataset_fingerprint(labels)
    monkeypatch.setattr(dataset, "_read_labels", lambda path: pytest.fail("label files read again"))
    monkeypatch.setattr(dataset.os.path, "getsize", lambda path: pytest.fail("an image stat-ed again"))
    assert utils.dataset_fingerprint(labels) != changed                  # from the labels alone


def test_how_much_the_raters_disagree_varies_by_face_and_shows_in_the_mouth(synthetic_root):
    """The raters' noise differs from face to face, so some faces' ratings spread more than
    others'; the red mouth, measured at the smoke runs' 64 px as the pipeline resizes, is the
    wider the more they disagree, and says nothing of the score (brightness and eye size do)."""
    import tensorflow as tf
    from scipy.stats import pearsonr, spearmanr

    labels = dataset.all_labels(synthetic_root)
    table = utils.read_ratings(synthetic_root).pivot(index="file", columns="Rater", values="Rating")
    spread = table.std(axis=1)[labels["file"]].to_numpy()
    assert spread.std() > 0.1  # a single noise SD for all faces gives 0.07 (rounding and clipping)
    paths = tf.data.Dataset.from_tensor_slices(labels["path"].astype(str).to_numpy())
    images = next(iter(paths.map(lambda p: dataset._load_image(p, 64)).batch(len(labels))))
    red, green, blue = np.moveaxis(images.numpy().astype(int), -1, 0)
    mouth = (red > 140) & (red - np.maximum(green, blue) > 70)  # no skin or background is this red
    width = mouth.any(axis=1).sum(axis=1)  # the pixel columns the mouth spans
    assert spearmanr(width, spread)[0] > 0.8
    assert abs(pearsonr(width, labels["score"])[0]) < 0.3
