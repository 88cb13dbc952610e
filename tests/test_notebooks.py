"""The notebooks: committed clean, one project home everywhere, and each runs top to bottom."""

import json
import os
import re

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import utils
from data import synthetic

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO_LINE = re.compile(r'^REPO = "([\w.-]+/[\w.-]+)"', re.MULTILINE)


def execute(path, timeout: int = 1200) -> nbformat.NotebookNode:
    """Run a notebook in a real kernel from the notebooks folder; raises on a failing cell."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return notebook


def test_there_are_five_numbered_notebooks():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


def test_every_setup_cell_and_badge_names_the_same_project_home():
    homes = set()
    for path in NOTEBOOKS:
        first = nbformat.read(path, as_version=4).cells[1]
        assert first.cell_type == "code" and "import utils" in first.source, path.name
        homes.update(REPO_LINE.findall(first.source))
    readme = (ROOT / "README.md").read_text()
    badges = re.findall(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/main/notebooks/"
                        r"(\w+\.ipynb)", readme)
    assert len(homes) == 1, homes
    assert {home for home, _ in badges} == homes
    assert sorted(name for _, name in badges) == [p.name for p in NOTEBOOKS]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """FBP_SMOKE=1 with a fresh work folder shared by the series, 01 to 05 in order; yields the
    smoke sub-folder the series works in."""
    work = tmp_path_factory.mktemp("series-work")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FBP_SMOKE", "1")
        patch.setenv("FBP_WORK_DIR", str(work))
        patch.delenv("FBP_DATA_DIR", raising=False)
        yield work / "smoke"


def default_run(smoke):
    """The smoke series' own run: the one notebook 02 set up (fold 1, the default settings)."""
    return smoke / "runs" / utils.read_json(smoke / "runs" / "current.json")["run"]


def photo_folder(tmp_path):
    """A face, two faces, no face, a text file, a cut-short JPEG, and one face pasted alone and
    beside a smaller one (photos of different sizes), as FBP_PHOTO would name them."""
    import numpy as np
    from PIL import Image
    from skimage import data

    astronaut = data.astronaut()
    photos = {"me.jpg": astronaut, "us.jpg": np.concatenate([astronaut, astronaut[:, ::-1]], axis=1),
              "coffee.jpg": data.coffee()}
    for name, pixels in photos.items():
        Image.fromarray(pixels).save(tmp_path / name)
    (tmp_path / "notes.jpg").write_text("not a photo")
    whole = (tmp_path / "me.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    face = Image.fromarray(astronaut).crop((80, 0, 400, 320))
    other = Image.fromarray(astronaut[:, ::-1]).crop((112, 0, 432, 320)).resize((240, 240))
    alone, beside = (Image.new("RGB", (width, 500), (120, 120, 120)) for width in (700, 1500))
    alone.paste(face, (190, 90))
    beside.paste(face, (190, 90))
    beside.paste(other, (900, 130))
    alone.save(tmp_path / "alone.jpg")
    beside.save(tmp_path / "beside.jpg")
    names = ["me.jpg", "us.jpg", "coffee.jpg", "notes.jpg", "cut.jpg", "alone.jpg", "beside.jpg"]
    return os.pathsep.join(str(tmp_path / n) for n in names)


def output_text(notebook) -> str:
    """Everything a notebook printed."""
    return "\n".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))


def test_01_runs_in_smoke_mode(smoke):
    notebook = execute(NOTEBOOKS[0])
    figures = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) == 5  # two score distributions, faces by band, percentile curve, raters
    [agreement] = smoke.glob("human_agreement-*.json")  # kept per dataset
    human = json.loads(agreement.read_text())
    assert human["raters"] == 60 and human["images"] == 300
    # Synthetic ratings: a face's taste (SD 0.7) plus each rater's noise (SD 0.35-1.05 by face, 0.7
    # on average, then rounded to whole points: variance ~0.57 against 0.49). So a face's ratings
    # spread by ~0.75 on average, one rater
    # matches the others' mean at ~sqrt(0.49 / 1.06) = 0.68 and two means of 30 raters at
    # ~0.49 / (0.49 + 0.57 / 30) = 0.96; clipping to 1-5 lowers all three a little.
    assert 0.65 < human["mean_per_image_sd"] < 0.8
    assert 0.6 < human["mean_rater_vs_others_pc"] < 0.72
    assert 0.94 < human["split_half_pc"] < 0.97
    half = human["split_half_pc"]
    assert human["full_panel_reliability"] == pytest.approx(2 * half / (1 + half))  # Spearman-Brown


def test_02_runs_in_smoke_mode(smoke):
    execute(NOTEBOOKS[1])
    record = utils.read_run(default_run(smoke))
    assert (default_run(smoke) / "frozen.keras").is_file() and record["smoke"] is True
    assert record["frozen"]["val"]["PC"] > 0.8
    assert len(utils.load_reference(default_run(smoke)).true) == 60  # fold1's test part
    assert record["framing"] == synthetic.SYNTHETIC_FRAMING


def test_05_scores_as_soon_as_stage_one_is_done(smoke, tmp_path, monkeypatch):
    monkeypatch.setenv("FBP_PHOTO", str(tmp_path / "me.jpg"))
    photo_folder(tmp_path)
    text = output_text(execute(NOTEBOOKS[4]))
    assert "stage 1 only (frozen head)" in text and "SMOKE RUN" in text
    assert "scoring with the frozen-head model" in text and "me.jpg, face 1: score" in text


def test_03_runs_in_smoke_mode(smoke):
    execute(NOTEBOOKS[2])
    record = utils.read_run(default_run(smoke))
    assert record["finished"] and (default_run(smoke) / "finetuned.keras").is_file()
    assert not (default_run(smoke) / "backup").exists()


def test_04_runs_in_smoke_mode_and_the_protocols_end_to_end(smoke, monkeypatch):
    notebook = execute(NOTEBOOKS[3])
    [runner] = [c for c in notebook.cells if "utils.run_protocol(" in c.source]
    printed = "".join(o.get("text", "") for o in runner.outputs)
    assert all(f"  fold{k} | Epoch 2/2" in printed for k in range(2, 6))  # the folds' progress shows
    fold1 = default_run(smoke)
    report = json.loads((fold1 / "evaluation.json").read_text())
    assert {"PC", "MAE", "RMSE", "Spearman", "n", "protocol", "groups", "ci95"} <= set(report)
    assert report["protocol"] == "fold1" and report["n"] == 60 and report["PC"] >= 0.8
    assert set(report["groups"]) == set(utils.GROUPS) and report["human"]["raters"] == 60
    assert all((fold1 / f"{name}.png").is_file() for name in ("predicted_vs_true", "distributions",
                                                              "residuals", "groups", "worst_faces"))
    for name in ["fold2", "fold3", "fold4", "fold5"]:
        [folder] = (smoke / "runs").glob(f"{name}-*")
        assert json.loads((folder / "evaluation.json").read_text())["PC"] > 0.5
    # the ablation's smoke recipes were trained and compared with the blog's, on the same faces
    [ablation] = [c for c in notebook.cells if "utils.run_ablation(" in c.source]
    shown = json.dumps(ablation.outputs)
    assert "EfficientNetV2S + distribution" in shown and "real differences" in shown
    assert "  EfficientNetV2S + distribution | Epoch 2/2" in shown  # each recipe's progress shows
    # the results table, written from the evaluations: fold-1 runs and the 5-fold mean
    [results] = [c for c in notebook.cells if "utils.results_table()" in c.source]
    printed = "".join(o.get("text", "") for o in results.outputs)
    smoke_settings = "(image_size 64, weights None, batch_size 16"  # each recipe says what it changed
    assert f"| fold1 | ResNet50 {smoke_settings}" in printed
    assert f"| 5-fold CV, mean ± SD | ResNet50 {smoke_settings}" in printed
    assert f"| fold1 | EfficientNetV2S + distribution {smoke_settings}" in printed
    # running a protocol or the ablation again trains nothing
    monkeypatch.setattr(utils, "run_notebook", lambda *a, **k: pytest.fail("trained again"))
    data = smoke / "synthetic" / utils.DATASET_DIRNAME
    table = utils.run_protocol("5-fold", utils.Config().smoke(), data)
    assert list(table.index) == ["fold1", "fold2", "fold3", "fold4", "fold5", "mean", "SD"]
    assert list(utils.run_ablation(utils.Config().smoke(), data).index) == [
        "ResNet50", "EfficientNetV2S + distribution"]


def test_05_speaks_of_every_photo_and_scores_every_face(smoke, tmp_path, monkeypatch):
    monkeypatch.setenv("FBP_PHOTO", photo_folder(tmp_path))
    text = output_text(execute(NOTEBOOKS[4]))
    assert "fine-tuned (best epoch" in text and "scoring with the frozen-head model" not in text
    assert "me.jpg, face 1: score" in text and "us.jpg, face 2: score" in text
    assert "coffee.jpg: no face found" in text and "notes.jpg: this is not an image" in text
    assert "cut.jpg: the image cannot be read" in text
    assert "webcam needs Colab" in text
    # after the 5-fold protocol, the five fold models score together
    assert "scoring with its five fine-tuned fold models" in text and "and the five models)" in text
    assert "This run has no distribution head" in text
    # the score belongs to the face, not to the photo: alone or beside a smaller face, within the spread
    scored = dict(re.findall(r"^(\w+\.jpg, face \d): score (\d\.\d\d \(±\d\.\d\d)", text, re.MULTILINE))
    (alone, alone_spread), (beside, beside_spread) = (
        map(float, scored[key].split(" (±")) for key in ("alone.jpg, face 1", "beside.jpg, face 1"))
    assert "beside.jpg, face 2" in scored and alone_spread > 0
    assert abs(alone - beside) <= max(alone_spread, beside_spread) + 0.01  # printed to 2 decimals


def test_05_says_how_much_raters_would_disagree_with_a_distribution_run(smoke, tmp_path, monkeypatch, capsys):
    from conftest import run_cells

    [(folder, _)] = [(f, r) for f, r in utils.saved_runs() if r["config"]["label_distribution"]]
    photo_folder(tmp_path)
    monkeypatch.setenv("FBP_PHOTO", str(tmp_path / "me.jpg"))
    scored = run_cells("05_score_your_face", edits={"RUN_NAME = None": f"RUN_NAME = {folder.name!r}"})
    text = capsys.readouterr().out
    said = re.search(r"me\.jpg, face 1: of 60 raters like the dataset's, about (\d+) % would give a \d", text)
    assert said and 0 < int(said.group(1)) <= 100
    assert scored["shares"][0].sum() == pytest.approx(1, abs=1e-5)  # six crops' shares, averaged


@pytest.fixture
def release_like(tmp_path, monkeypatch):
    """5500 tiny images with the 2018 release's label names, as FBP_DATA_DIR; no smoke mode."""
    root = synthetic.make_synthetic_dataset(tmp_path / "release", n=5500, image_size=24, naming="2018",
                                            with_ratings=False)
    monkeypatch.setenv("FBP_DATA_DIR", str(root))
    monkeypatch.setenv("FBP_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("FBP_SMOKE", raising=False)
    return root


def test_01_runs_on_a_folder_laid_out_like_the_release(release_like):
    notebook = execute(NOTEBOOKS[0])
    text = json.dumps([c.get("outputs") for c in notebook.cells])
    assert "5500 labelled faces" in text and "All_Ratings.xlsx is not in the dataset folder" in text


def test_01_names_a_missing_image(release_like):
    (release_like / "Images" / "CM750.jpg").unlink()
    with pytest.raises(CellExecutionError, match=r"MissingImagesError.*1 image\(s\).*CM750\.jpg") as error:
        execute(NOTEBOOKS[0])
    assert "utils.py" not in str(error.value), "the message should come without a traceback"
