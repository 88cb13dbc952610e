"""The notebooks: committed clean, one project home everywhere, and the smoke series run once as the
README's first command runs it (utils.run_series: each notebook in a kernel of its own), read by every
test below; then what builds on that series: cells run twice, the protocol and ablation runners, 05
with several fold models and with a distribution head. (A setting changed in 02 is checked on the
Colab series, tests/test_colab_series.py.)"""

import contextlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from conftest import ROOT, phone_page, run_cells
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from test_notebook_use import check_every_cell_run_twice

import utils
from fbp import bundles, dataset, experiments, runs, synthetic

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO_LINE = re.compile(r'^REPO = "([\w.-]+/[\w.-]+)"', re.MULTILINE)


def execute(path, timeout: int = 1200) -> nbformat.NotebookNode:
    """Run a notebook in a real kernel from the notebooks folder; raises on a failing cell."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return notebook


def test_there_are_six_numbered_notebooks():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_", "06_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


def test_every_setup_cell_badge_and_the_phone_page_name_the_same_project_home():
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
    page = (ROOT / "web" / "app.js").read_text().replace("const REPO", "REPO")
    assert set(REPO_LINE.findall(page)) == homes
    assert sorted(name for _, name in badges) == [p.name for p in NOTEBOOKS]


def test_the_readmes_two_commands_are_the_scripts_the_suite_and_ci_run():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert "bash notebooks/run.sh\n" in blocks and "bash tests/run.sh\n" in blocks
    assert "utils.run_series(" in (ROOT / "notebooks" / "run.sh").read_text()  # what `series` runs
    assert "bash tests/run.sh" in (ROOT / ".ci" / "run").read_text()


# --- The smoke series, once ----------------------------------------------------------------

@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """`FBP_SMOKE=1 bash notebooks/run.sh` in this process (utils.run_series), with a fresh work
    folder and FBP_PHOTO's photos: what it printed, its smoke work folder and its executed copies."""
    home = tmp_path_factory.mktemp("series")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FBP_SMOKE", "1")
        patch.setenv("FBP_WORK_DIR", str(home / "work"))
        patch.setenv("FBP_PHOTO", photo_folder(home))
        patch.delenv("FBP_DATA_DIR", raising=False)
        patch.delenv("FBP_CONFIG", raising=False)
        with contextlib.redirect_stdout(printed):
            status = utils.run_series()
        assert status == 0, printed.getvalue()[-3000:]
        work = home / "work" / "smoke"
        yield SimpleNamespace(printed=printed.getvalue(), work=work, photo=home / "me.jpg",
                              data=work / "synthetic" / dataset._DATASET_DIRNAME,
                              notebooks={p.stem[:2]: nbformat.read(p, as_version=4)
                                         for p in sorted((work / "executed").glob("0*.ipynb"))})


def default_run(series) -> Path:
    """The smoke series' own run: the one notebook 02 set up (fold 1, the default settings)."""
    return series.work / "runs" / utils.read_json(series.work / "runs" / "current.json")["run"]


def photo_folder(folder: Path) -> str:
    """A face, two faces, no face, a text file, a cut-short JPEG, and one face pasted alone and
    beside a smaller one (photos of different sizes), as FBP_PHOTO would name them."""
    import numpy as np
    from PIL import Image
    from skimage import data

    astronaut = data.astronaut()
    photos = {"me.jpg": astronaut, "us.jpg": np.concatenate([astronaut, astronaut[:, ::-1]], axis=1),
              "coffee.jpg": data.coffee()}
    for name, pixels in photos.items():
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.jpg").write_text("not a photo")
    whole = (folder / "me.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    face = Image.fromarray(astronaut).crop((80, 0, 400, 320))
    other = Image.fromarray(astronaut[:, ::-1]).crop((112, 0, 432, 320)).resize((240, 240))
    alone, beside = (Image.new("RGB", (width, 500), (120, 120, 120)) for width in (700, 1500))
    alone.paste(face, (190, 90))
    beside.paste(face, (190, 90))
    beside.paste(other, (900, 130))
    alone.save(folder / "alone.jpg")
    beside.save(folder / "beside.jpg")
    names = ["me.jpg", "us.jpg", "coffee.jpg", "notes.jpg", "cut.jpg", "alone.jpg", "beside.jpg"]
    return os.pathsep.join(str(folder / n) for n in names)


def output_text(notebook) -> str:
    """Everything a notebook printed."""
    return "\n".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))


def test_the_series_keeps_every_executed_notebook_and_prints_its_figures(series):
    assert sorted(series.notebooks) == ["01", "02", "03", "04", "05", "06"]
    assert all(any(c.get("outputs") for c in nb.cells) for nb in series.notebooks.values())
    printed = series.printed
    assert f"Executed notebooks, with every output: {series.work / 'executed'}" in printed
    assert re.search(r"Test figures with 95 % intervals: PC 0\.\d{4} \[0\.\d{4}, 0\.\d{4}\], MAE", printed)
    assert "SMOKE RUN" in printed and "| fold1 | ResNet50" in printed  # the results table
    for noise in ("oneDNN", "cuInit", "absl", "cpu_feature_guard"):  # TensorFlow's start-up log
        assert noise not in printed


def test_01_explores_the_data(series):
    notebook = series.notebooks["01"]
    figures = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) == 5  # two score distributions, faces by band, percentile curve, raters
    [agreement] = series.work.glob("human_agreement-*.json")  # kept per dataset
    human = json.loads(agreement.read_text())
    assert human["raters"] == 60 and human["images"] == 300
    # Synthetic ratings: a face's taste (SD 0.7) plus each rater's noise (SD 0.35-1.05 by face, 0.7
    # on average, then rounded to whole points: variance ~0.57 against 0.49). So a face's ratings
    # spread by ~0.75 on average, one rater matches the others' mean at ~sqrt(0.49 / 1.06) = 0.68
    # and two means of 30 raters at ~0.49 / (0.49 + 0.57 / 30) = 0.96; clipping to 1-5 lowers all
    # three a little.
    assert 0.65 < human["mean_per_image_sd"] < 0.8
    assert 0.6 < human["mean_rater_vs_others_pc"] < 0.72
    assert 0.94 < human["split_half_pc"] < 0.97
    half = human["split_half_pc"]
    assert human["full_panel_reliability"] == pytest.approx(2 * half / (1 + half))  # Spearman-Brown


def test_02_trains_stage_one(series):
    record = utils.read_json(default_run(series) / "run.json")
    assert (default_run(series) / "frozen.keras").is_file() and record["smoke"] is True
    assert record["frozen"]["val"]["PC"] > 0.8
    assert len(runs.Run.at(default_run(series)).reference().true) == 60  # fold1's test part
    assert record["framing"] == synthetic.SYNTHETIC_FRAMING


def test_03_fine_tunes(series):
    record = utils.read_json(default_run(series) / "run.json")
    assert record["finished"] and (default_run(series) / "finetuned.keras").is_file()
    assert not (default_run(series) / "backup").exists()


def test_04_evaluates_and_leaves_the_runners_off(series):
    fold1 = default_run(series)
    report = json.loads((fold1 / "evaluation.json").read_text())
    assert {"PC", "MAE", "RMSE", "Spearman", "n", "protocol", "groups", "ci95"} <= set(report)
    assert report["protocol"] == "fold1" and report["n"] == 60 and report["PC"] >= 0.8
    assert set(report["groups"]) == set(dataset._GROUPS) and report["human"]["raters"] == 60
    assert all((fold1 / f"{name}.png").is_file() for name in ("predicted_vs_true", "distributions",
                                                              "residuals", "groups", "worst_faces"))
    assert (series.work / "bundles" / f"{fold1.name}.zip").is_file()
    text = output_text(series.notebooks["06"])
    assert "set RUN_FULL_PROTOCOLS = True above" in text and "set RUN_ABLATION = True above" in text
    assert [p.name for p in (series.work / "runs").glob("fold*")] == [fold1.name]  # no runner trained


def test_05_speaks_of_every_photo_and_scores_every_face(series):
    text = output_text(series.notebooks["05"])
    assert "fine-tuned (best epoch" in text and "scoring with the frozen-head model" not in text
    assert "me.jpg, face 1: score" in text and "us.jpg, face 2: score" in text
    assert "coffee.jpg: no face found" in text and "notes.jpg: this is not an image" in text
    assert "cut.jpg: the image cannot be read" in text
    assert "webcam needs Colab" in text
    assert "This run has no distribution head" in text
    # one model: its reference in the words of today, the span of its six crops, no models' disagreement
    assert "Percentiles are a score's place among the fine-tuned model's predictions for the" in text
    assert re.search(r"^me\.jpg, face 1: score \d\.\d\d, more attractive than about \d+ % of the "
                     r"dataset \(likely between \d+ % and \d+ %\)\. Shifted by 1\.5 px or mirrored, it "
                     r"scores \d\.\d\d to \d\.\d\d: how much alignment moves it, not a confidence "
                     r"interval\.$", text, re.MULTILINE)
    assert "models' own scores" not in text and "fold models that score here" not in text
    # the score belongs to the face, not to the photo: alone or beside a smaller face, within the span
    scored = {face: tuple(map(float, figures)) for face, *figures in re.findall(
        r"^(\w+\.jpg, face \d): score (\d\.\d\d),.* it scores (\d\.\d\d) to (\d\.\d\d)", text, re.MULTILINE)}
    (alone, low, high), (beside, *_) = scored["alone.jpg, face 1"], scored["beside.jpg, face 1"]
    assert "beside.jpg, face 2" in scored and low < alone < high
    assert low - 0.01 <= beside <= high + 0.01  # printed to 2 decimals


def test_the_series_bundle_scores_over_http_like_its_run_in_a_fresh_work_folder(series, web_server,
                                                                              monkeypatch, tmp_path, capsys):
    run = default_run(series)
    assert f"Bundle {series.work / 'bundles' / run.name}.zip written" in output_text(series.notebooks["04"])
    shutil.copy(series.work / "bundles" / f"{run.name}.zip", web_server.folder / "run.zip")
    photos = [series.photo, series.photo.with_name("us.jpg")]  # three faces
    monkeypatch.setenv("FBP_PHOTO", os.pathsep.join(map(str, photos)))
    monkeypatch.delenv("FBP_RUN", raising=False)
    own = run_cells("05_score_your_face")["results"]
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("FBP_WORK_DIR", str(fresh))
    monkeypatch.setenv("FBP_DATA_DIR", str(tmp_path / "no-dataset"))  # 05 must not need one
    monkeypatch.setenv("FBP_RUN", f"{web_server.url}/run.zip")
    monkeypatch.setattr(bundles, "_SCHEMES", ("https://", "http://127.0.0.1"))  # the local server: http
    shared = run_cells("05_score_your_face")["results"]
    assert f"(from the bundle {web_server.url}/run.zip)" in capsys.readouterr().out
    assert len(own) == len(shared) == 3 and web_server.requests == ["/run.zip"]
    for mine, theirs in zip(own, shared, strict=True):
        for field in ("score", "span", "percentile", "low", "high", "map", "scores"):
            assert getattr(theirs, field) == pytest.approx(getattr(mine, field), abs=1e-6), field
    assert sorted(p.name for p in (fresh / "smoke").iterdir()) == ["bundles"]  # no dataset, no runs


# --- What builds on the series -------------------------------------------------------------

def test_every_cell_run_twice_builds_what_the_series_built(series, monkeypatch, capsys):
    monkeypatch.setenv("FBP_PHOTO", str(series.photo))
    check_every_cell_run_twice(capsys)


def test_the_5_fold_runner_trains_evaluates_and_joins_its_folds(series, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(dataset, "FOLDS", ("fold1", "fold2"))  # two folds prove the runner: fold 2 trains
    current = (series.work / "runs" / "current.json").read_text()
    cfg = utils.Config(**utils.read_json(default_run(series) / "run.json")["config"])
    table = utils.run_protocol("5-fold", cfg, series.data)
    printed = capsys.readouterr().out
    assert "  fold2 | Epoch 2/2" in printed and "  fold1 |" not in printed  # fold 1 is the series' run
    assert list(table.index) == ["fold1", "fold2", "mean", "SD"] and table.loc["fold2", "PC"] > 0.5
    joined = json.loads(runs.Run.at(default_run(series)).out_of_fold_path().read_text())
    assert len(joined["files"]) == len(set(joined["files"])) == 120  # each fold's 60 test faces
    assert (series.work / "runs" / "current.json").read_text() == current  # the folds are not current
    monkeypatch.setattr(experiments, "_run_notebook", lambda *a, **k: pytest.fail("trained again"))
    assert list(utils.run_protocol("5-fold", cfg, series.data).index) == ["fold1", "fold2", "mean", "SD"]
    # 05 now scores with both folds' models, each against its own fold's test faces
    monkeypatch.setenv("FBP_PHOTO", str(series.photo))
    scored = run_cells("05_score_your_face")
    text = capsys.readouterr().out
    folds = runs.Run.at(default_run(series)).folds()
    assert [s.name for s in scored["scorers"]] == [fold.name for fold in folds]
    assert "scoring with the fine-tuned models of its 2 folds" in text
    assert re.search(r"^me\.jpg, face 1: score \d\.\d\d, .* Shifted by 1\.5 px or mirrored, it scores",
                     text, re.MULTILINE)  # the span of the two models' mean: alignment alone
    assert re.search(r"^me\.jpg, face 1: the 2 models' own scores \(each the mean of its six crops\) differ "
                     r"by SD \d\.\d\d$", text, re.MULTILINE)
    assert ("Percentiles are the mean of 2 places: each fold model's score placed among its own fold's 60 "
            "test faces") in text and "on the 20 of them with the nearest predictions" in text
    assert "The 2 fold models that score here, each on its own fold's 60 test faces" in text
    assert scored["results"][0].scores.shape == (2, 6)  # per model, the six crops
    # the run's bundle now holds both fold models; from it, in a fresh work folder, 05 scores alike
    bundle = utils.make_bundle(runs.Run.at(default_run(series)), "owner/project")
    with zipfile.ZipFile(bundle) as archive:
        models = sorted(name for name in archive.namelist() if name.endswith(".keras"))
    assert models == sorted(f"runs/{fold.name}/finetuned.keras" for fold in folds)
    monkeypatch.setenv("FBP_WORK_DIR", str(tmp_path / "fresh"))
    monkeypatch.setenv("FBP_RUN", str(bundle))
    shared = run_cells("05_score_your_face")["results"][0]
    for field in ("scores", "percentile", "low", "high", "map"):
        assert getattr(shared, field) == pytest.approx(getattr(scored["results"][0], field), abs=1e-6)


def test_the_ablation_runner_trains_its_recipes_and_the_results_table_names_them(series, monkeypatch, capsys):
    cfg = utils.Config(**utils.read_json(default_run(series) / "run.json")["config"])
    table = run_cells("06_experiments", edits={"RUN_ABLATION = False": "RUN_ABLATION = True"})["ablation"]
    printed = capsys.readouterr().out
    assert set(table.index) == {"ResNet50", "EfficientNetV2S + distribution"}
    assert "  EfficientNetV2S + distribution | Epoch 2/2" in printed  # each recipe's progress shows
    assert "  ResNet50 |" not in printed  # the blog's recipe is the series' own run
    assert "EfficientNetV2S + distribution | " in printed and "epochs; best val_score_loss" in printed  # 02
    verdict = "this network against its base (fold1, one seed), Holm"
    assert table.loc["ResNet50", verdict] == "baseline"
    said = table.loc["EfficientNetV2S + distribution", verdict]
    assert re.match(r"(none shown|this network's PC higher|this network's PC lower) \(p ", said)
    family = printed.index("The family: 1 comparison, each recipe with its own base (EfficientNetV2S + "
                           "distribution with ResNet50)")  # printed above the table, the verdict below
    assert family < printed.index("compares trained networks, not recipes")
    assert "set ABLATION_ACROSS_FOLDS = True in notebook 06" in printed
    [(folder, record)] = [(f, r) for f, r in runs.saved_runs() if r["config"]["backbone"] != "ResNet50"]
    assert record["finished"] and record["config"]["label_distribution"]  # a modern backbone trains
    tuned = record["finetune"]
    assert tuned["chosen_on"] == "val_score_loss"  # its epoch chosen by the score's loss alone
    assert tuned["runtime"] == "CPU" and tuned["peak_gpu_gb"] is None and tuned["seconds_per_epoch"] > 0
    assert json.loads((folder / "evaluation.json").read_text())["n"] == 60
    results = utils.as_markdown(utils.results_table())
    assert "| fold1 | ResNet50" in results and "| fold1 | EfficientNetV2S + distribution" in results
    monkeypatch.setattr(experiments, "_run_notebook", lambda *a, **k: pytest.fail("trained again"))
    assert list(utils.run_ablation(cfg, series.data).index) == list(table.index)  # nothing trains again


def test_05_says_how_much_raters_would_disagree_with_a_distribution_run(series, monkeypatch, capsys):
    [(folder, _)] = [(f, r) for f, r in runs.saved_runs() if r["config"]["label_distribution"]]
    monkeypatch.setenv("FBP_PHOTO", str(series.photo))
    scored = run_cells("05_score_your_face", edits={"RUN_NAME = None": f"RUN_NAME = {folder.name!r}"})
    text = capsys.readouterr().out
    said = re.search(r"me\.jpg, face 1: of 60 raters like the dataset's, about (\d+) % would give a \d"
                     r"(?:, \d+ % a \d)*(?: and \d+ % a \d)? \(their mean (\d\.\d\d)\)\.", text)
    assert said and 0 < int(said.group(1)) <= 100
    result = scored["results"][0]
    printed = re.findall(r"(\d+) % (?:would give )?a (\d)", said.group(0))  # the shares the reader sees
    assert float(said.group(2)) == pytest.approx(sum(int(p) * int(r) for p, r in printed) / 100, abs=0.005)
    low, high = (round(end, 2) for end in result.span)
    outside = not low <= float(said.group(2)) <= high
    assert ("outside the span of the crops' scores" in text) == outside  # said exactly then
    assert scored["shares"][0].sum() == pytest.approx(1, abs=1e-5)  # six crops' shares, averaged


# --- The phone page, on the series' run -----------------------------------------------------

@pytest.fixture(scope="module")
def phone(series):
    """The phone page with the series' run, in headless Chromium (conftest.phone_page)."""
    with phone_page(default_run(series) / "web") as opened:
        yield opened


def test_the_phone_page_scores_the_astronaut_as_05_does_and_nothing_leaves_the_device(series, phone,
                                                                                      monkeypatch):
    from PIL import Image
    from skimage import data

    photo = series.photo.with_name("astronaut.png")  # PNG: the browser and Pillow decode it alike
    Image.fromarray(data.astronaut()).save(photo)
    tab = phone.open()
    assert tab.evaluate("window.fbp.state") == "ready", tab.evaluate("window.fbp.messages")
    loaded = len(phone.requests)
    tab.set_input_files("#gallery", str(photo))
    tab.wait_for_function("window.fbp.state === 'scored'", timeout=120_000)
    page = tab.evaluate("window.fbp")
    screenshot = ROOT / "work" / "page-astronaut.png"  # the closing note's screenshot
    screenshot.parent.mkdir(exist_ok=True)
    tab.screenshot(path=screenshot, full_page=True)
    monkeypatch.setenv("FBP_PHOTO", str(photo))
    monkeypatch.setenv("FBP_RUN", default_run(series).name)
    [result] = run_cells("05_score_your_face")["results"]
    [face] = page["faces"]
    assert face["score"] == pytest.approx(result.score, abs=0.01)
    found = result.face.detection
    for side, eye in (("leftEye", found.left_eye), ("rightEye", found.right_eye)):  # within a pixel
        assert face[side] == pytest.approx(list(eye), abs=1), side
    assert face["percentile"] == pytest.approx(result.percentile, abs=1)
    # after the model loaded, no request at all; before, none beyond 127.0.0.1; nothing stored
    assert phone.requests[loaded:] == []
    assert all(address.startswith("http://127.0.0.1:") for address in phone.requests)
    stored = tab.evaluate("""async () => localStorage.length + sessionStorage.length + document.cookie.length
                             + (await indexedDB.databases()).length + (await caches.keys()).length""")
    assert stored == 0
    assert "Your photo stays on this device" in tab.inner_text("#privacy")
    assert "non-commercial" in tab.inner_text("#licence")


def test_the_phone_page_turns_a_phone_photo_upright_by_its_exif(series, phone, tmp_path):
    from PIL import Image

    photo = tmp_path / "sideways.jpg"  # stored on its side, as a phone held upright stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to view
    Image.open(series.photo).transpose(Image.Transpose.ROTATE_90).save(photo, exif=exif)
    tab = phone.open()
    tab.set_input_files("#gallery", str(photo))
    tab.wait_for_function("window.fbp.state === 'scored'")
    [face] = tab.evaluate("window.fbp.faces")
    (left_x, left_y), (right_x, right_y) = face["leftEye"], face["rightEye"]
    assert abs(right_x - left_x) > 3 * abs(right_y - left_y)  # the eyes side by side: upright


def web_json_changed(change: str) -> str:
    """A script run before the page's own: its web.json as served, with a change made to `manifest`."""
    return f"""window.fetch = new Proxy(window.fetch, {{apply: async (fetch, self, [url]) => {{
        const response = await fetch(url);
        if (!String(url).endsWith('web.json')) return response;
        const manifest = await response.json();
        {change};
        return new Response(JSON.stringify(manifest));
    }}}})"""


def test_the_phone_page_says_plainly_what_it_cannot_do(series, phone):
    tab = phone.open()
    tab.set_input_files("#gallery", str(series.photo.with_name("coffee.jpg")))
    tab.wait_for_function("window.fbp.state === 'scored'")
    assert "No face found" in tab.inner_text("#message")
    tab.set_input_files("#gallery", str(series.photo.with_name("notes.jpg")))
    tab.wait_for_function("window.fbp.messages.at(-1).includes('not a photo')")
    tab.click("#camera")  # the user says no
    tab.wait_for_function("window.fbp.messages.at(-1).includes('camera was refused')")
    allowed = phone.open(camera=True)
    allowed.click("#camera")
    allowed.wait_for_function("document.getElementById('video').videoWidth > 0")  # the camera films
    allowed.click("#shoot")  # Chromium's fake camera films a pattern, no face
    allowed.wait_for_function("window.fbp.state === 'scored'")
    assert "No face found" in allowed.inner_text("#message")
    large = phone.open(init=web_json_changed("manifest.models[0].bytes = 1e9"))
    assert large.evaluate("window.fbp.state") == "asking"  # a phone's data plan: nothing fetched unasked
    assert "models are 1002 MB to download" in large.inner_text("#message")
    large.click("#download")  # the user agrees: then it loads
    large.wait_for_function("window.fbp.state === 'ready'")
    damaged = phone.open(init=web_json_changed("manifest.models[0].sha256 = '0'.repeat(64)"))
    assert "is not the file this run lists" in damaged.inner_text("#message")
    without = phone.open(init="delete window.WebAssembly")
    assert "lacks WebAssembly" in without.inner_text("#message")
    assert "names no run" in phone.open("?run=owner").inner_text("#message")
    assert "No run named" in phone.open("").inner_text("#message")


# --- Notebook 01 on a folder laid out like the release ------------------------------------

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


def test_01_names_a_missing_image(small_root, monkeypatch, tmp_path):
    monkeypatch.setenv("FBP_DATA_DIR", str(small_root))
    monkeypatch.setenv("FBP_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("FBP_SMOKE", raising=False)
    (small_root / "Images" / "CM5.jpg").unlink()
    with pytest.raises(CellExecutionError, match=r"MissingImagesError.*1 image\(s\).*CM5\.jpg") as error:
        execute(NOTEBOOKS[0])
    assert "utils.py" not in str(error.value), "the message should come without a traceback"
