"""Bundles: a run in one .zip that notebook 04 writes and notebook 05 scores with, from a path, a web
address or the Hugging Face Hub; every bad bundle named plainly, with nothing left behind. The run
here is a stand-in with a tiny model: tests/test_notebooks.py scores the smoke series' own bundle,
served over HTTP, in a fresh work folder."""

import json
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import keras
import pytest

import utils
from fbp import bundles, environment, errors, runs, settings
from fbp.errors import BundleError


def evaluated_run() -> Path:
    """A run folder in the work folder as notebooks 02 and 04 leave it, with a tiny model."""
    cfg = utils.Config(weights=None)
    identity = runs._run_identity(cfg, "0123456789ab")
    folder = runs._run_dir(cfg, identity["dataset"])
    folder.mkdir(parents=True)
    images = keras.Input((8, 8, 3), dtype="uint8", name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
    keras.Model(images, {"score": keras.layers.Dense(1, name="score")(pooled)}).save(folder / "frozen.keras")
    utils.save_json(folder / "run.json", {**identity, "framing": {"eye_distance": 0.21}, "frozen": {}})
    utils.save_json(folder / "reference-frozen.json", {
        "stage": "frozen", "set": "the 2 test faces", "files": ["AF1.jpg", "AM1.jpg"], "true": [2.5, 3.5],
        "predicted": [2.8, 3.2], "mean_features": [0.0, 0.0, 0.0], "map_scale": 0.1})
    evaluate(folder)
    return folder


def evaluate(folder: Path, pc: float = 0.9) -> None:
    """The evaluation.json notebook 04 writes, with made-up figures."""
    utils.save_json(folder / "evaluation.json", {
        "model": "frozen", "n": 1100, "protocol": "fold1", "evaluated": runs.Run.at(folder).current_model(),
        "PC": pc, "MAE": 0.21, "RMSE": 0.28,
        "ci95": {"PC": [pc - 0.01, pc + 0.01], "MAE": [0.2, 0.22], "RMSE": [0.27, 0.29]}})


@pytest.fixture
def bundle(work, tmp_path) -> SimpleNamespace:
    """A run's bundle, copied out of its work folder, which is then left for a new, empty one."""
    folder = evaluated_run()
    path = shutil.copy(utils.make_bundle(runs.Run.at(folder), "owner/project"), tmp_path / "shared.zip")
    work.rename(tmp_path / "old-work")
    return SimpleNamespace(path=Path(path), run=folder.name)


def rewritten(bundle: Path, target: Path, drop: str = "", extra: dict | None = None,
              manifest: dict | None = None) -> Path:
    """A copy of a bundle without one member, with extra members, or with its manifest changed."""
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(target, "w") as copy:
        for name in source.namelist():
            data = source.read(name)
            if name == bundles._MANIFEST and manifest:
                data = json.dumps({**json.loads(data), **manifest})
            if not (drop and name.endswith(drop)):
                copy.writestr(name, data)
        for name, data in (extra or {}).items():
            copy.writestr(name, data)
    return target


def text_file(target: Path, text: str) -> Path:
    """A file holding text, as a bundle's stand-in."""
    target.write_text(text)
    return target


def opened_entries() -> list[str]:
    """What the work folder's opened bundles are."""
    folder = utils.work_dir() / "bundles" / "opened"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_bundle_holds_the_run_and_a_model_card_and_is_written_again_only_when_it_changed(work, capsys):
    folder = evaluated_run()
    path = utils.make_bundle(runs.Run.at(folder), "owner/project")
    assert path == work / "bundles" / f"{folder.name}.zip"
    with zipfile.ZipFile(path) as archive:
        names, card = set(archive.namelist()), archive.read("README.md").decode()
    assert names == {bundles._MANIFEST, "README.md", *(f"runs/{folder.name}/{name}" for name in (
        "run.json", "evaluation.json", "frozen.keras", "reference-frozen.json"))}
    for words in ("license_name: scut-fbp5500-non-commercial", "60 raters", "aged 18-27",
                  "non-commercial research use only", "**Misuse.**", "PC: 0.9000 [0.8900, 0.9100]",
                  "MAE: 0.2100 [0.2000, 0.2200]", "early stopping kept its epoch with the lowest val_loss",
                  "never on the test", "https://github.com/owner/project", "hf://owner/name"):
        assert words in card, words
    written = path.stat().st_mtime_ns
    utils.make_bundle(runs.Run.at(folder), "owner/project")
    assert path.stat().st_mtime_ns == written and "is up to date" in capsys.readouterr().out
    evaluate(folder, pc=0.8)  # 04 ran again: the bundle follows
    utils.make_bundle(runs.Run.at(folder), "owner/project")
    with zipfile.ZipFile(path) as archive:
        assert "PC: 0.8000" in archive.read("README.md").decode()


def test_a_run_not_evaluated_for_its_current_model_is_not_bundled(work):
    folder = evaluated_run()
    (folder / "evaluation.json").unlink()
    with pytest.raises(errors.BundleError, match="cannot be bundled: not evaluated yet.*run notebook 04"):
        utils.make_bundle(runs.Run.at(folder), "owner/project")
    assert not (work / "bundles").exists()


def test_05_opens_a_bundle_once_in_a_work_folder_with_nothing_else(bundle, monkeypatch):
    run = utils.run_to_score(str(bundle.path))
    folder = run.folder
    assert run.name == bundle.run and folder.is_relative_to(utils.work_dir() / "bundles" / "opened")
    assert run.record["framing"] == {"eye_distance": 0.21} and run.stage == "evaluated"
    [scorer] = utils.scorers(run)
    assert scorer.reference.predicted.tolist() == [2.8, 3.2]
    opened = (folder / "frozen.keras").stat().st_mtime_ns
    monkeypatch.setenv("FBP_RUN", str(bundle.path))  # headless, FBP_RUN names it
    assert utils.run_to_score(None) == run and (folder / "frozen.keras").stat().st_mtime_ns == opened
    assert opened_entries() == [folder.parents[1].name]


def test_without_a_run_05_says_a_shared_bundle_will_do(work):
    with pytest.raises(errors.RunNotFoundError, match="No run chosen yet.*bundle's path, https:// address or hf://"):
        utils.run_to_score(None)


BAD = {  # what a bad bundle is made of, and what its message says
    "a text file": (lambda b, t: text_file(t, "not a zip"), "is not a bundle: it is not a zip"),
    "a web page": (lambda b, t: text_file(t, "<!DOCTYPE html><html>Sign in</html>"),
                   "is not a bundle: it is a web page"),
    "a zip without a manifest": (lambda b, t: rewritten(b, t, drop=bundles._MANIFEST),
                                 "it has no bundle.json"),
    "a member missing": (lambda b, t: rewritten(b, t, drop="reference-frozen.json"),
                         "not a whole bundle: runs/.*/reference-frozen.json is missing"),
    "a name outside its folder": (lambda b, t: rewritten(b, t, extra={"../../evil.py": "x"}),
                                  r"not a whole bundle: \.\./\.\./evil\.py is missing, extra or outside"),
    "another recipe": (lambda b, t: rewritten(b, t, manifest={"recipe": settings.RECIPE_VERSION - 1}),
                       f"version {settings.RECIPE_VERSION - 1} of the training recipe.*this checkout's is "
                       f"{settings.RECIPE_VERSION}"),
}


@pytest.mark.parametrize("kind", BAD)
def test_a_bad_bundle_is_named_plainly_and_leaves_the_work_folder_as_it_was(bundle, tmp_path, kind):
    good = utils.run_to_score(str(bundle.path))
    before = sorted(str(p) for p in utils.work_dir().rglob("*"))
    make, message = BAD[kind]
    with pytest.raises(errors.BundleError, match=message):
        utils.run_to_score(str(make(bundle.path, tmp_path / "bad.zip")))
    assert sorted(str(p) for p in utils.work_dir().rglob("*")) == before
    assert not (tmp_path / "evil.py").exists() and utils.scorers(good)


def test_a_bundle_whose_model_does_not_load_says_so(bundle, tmp_path):
    broken = rewritten(bundle.path, tmp_path / "broken.zip", drop="frozen.keras",
                       extra={f"runs/{bundle.run}/frozen.keras": b"PK\x03\x04 not a model"})
    run = utils.run_to_score(str(broken))
    with pytest.raises(errors.RunMismatchError, match="frozen.keras of run .* does not load with Keras"):
        utils.scorers(run)


def test_a_bundle_is_downloaded_once_and_a_refused_or_cut_download_keeps_nothing(bundle, web_server):
    shutil.copy(bundle.path, web_server.folder / "run.zip")
    url = f"{web_server.url}/run.zip"
    run = utils.run_to_score(url)
    assert utils.run_to_score(url) == run and web_server.requests == ["/run.zip"]
    downloads = utils.work_dir() / "bundles" / "downloads"
    kept = sorted(downloads.iterdir())
    with pytest.raises(errors.BundleError, match=r"refused the download \(HTTP 403: Forbidden\)"):
        utils.run_to_score(f"{web_server.url}/refused/run.zip")
    with pytest.raises(errors.BundleError, match=r"was cut short after 0\.0 MB; nothing was kept"):
        utils.run_to_score(f"{web_server.url}/cut/run.zip")
    with pytest.raises(errors.BundleError, match="could not be reached"):
        utils.run_to_score("http://127.0.0.1:9/run.zip")  # the discard port: nobody answers
    (web_server.folder / "page.zip").write_text("<html>Sign in to download</html>")
    with pytest.raises(errors.BundleError, match="it is a web page"):
        utils.run_to_score(f"{web_server.url}/page.zip")  # downloaded whole, but no bundle: not kept
    assert sorted(downloads.iterdir()) == kept


def test_hf_names_a_bundle_on_the_hub_and_its_problems(bundle, monkeypatch):
    import huggingface_hub
    from huggingface_hub import errors

    asked = []

    def download(repo_id, filename, local_dir):  # huggingface_hub's, from a local copy: no network
        asked.append((repo_id, filename))
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        return shutil.copy(bundle.path, Path(local_dir) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    run = utils.run_to_score("hf://someone/their-run")
    assert asked == [("someone/their-run", "bundle.zip")] and run.name == bundle.run
    assert utils.scorers(run)
    problems = {errors.RepositoryNotFoundError: "is not on the Hugging Face Hub, or is private",
                errors.RemoteEntryNotFoundError: "holds no bundle.zip",
                errors.LocalEntryNotFoundError: "could not be downloaded: the Hugging Face Hub is not"}
    for error, message in problems.items():
        def refuse(repo_id, filename, local_dir, error=error):
            raise error.__new__(error)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
        with pytest.raises(BundleError, match=f"hf://someone/other {message}"):
            utils.run_to_score("hf://someone/other")


class FakeHub:
    """huggingface_hub.HfApi's calls that publish_bundle makes, recorded: no network."""

    commits: list = []
    published: str | None = None  # the sha256 of the bundle the Hub has

    def __init__(self, token):
        self.token = token

    def whoami(self):
        return {"name": "someone"}

    def create_repo(self, repo, exist_ok):
        assert exist_ok

    def get_paths_info(self, repo, paths):
        return [SimpleNamespace(lfs=SimpleNamespace(sha256=self.published))] if self.published else []

    def create_commit(self, repo, operations, commit_message):
        FakeHub.commits.append((repo, sorted(op.path_in_repo for op in operations)))


def test_publishing_needs_a_log_in_and_never_publishes_the_same_bundle_twice(bundle, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert utils.publish_bundle(bundle.path) is None
    assert "Not published: no Hugging Face log-in yet" in capsys.readouterr().out
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_token")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.commits = []
    assert utils.publish_bundle(bundle.path) == "hf://someone/shared"
    assert FakeHub.commits == [("someone/shared", ["README.md", "bundle.zip"])]
    monkeypatch.setattr(FakeHub, "published", environment.file_hash(bundle.path))
    assert utils.publish_bundle(bundle.path, "team/model") == "hf://team/model"
    assert len(FakeHub.commits) == 1 and "has this bundle already" in capsys.readouterr().out


def test_the_projects_published_run_has_one_name_in_utils_the_readme_and_notebook_05():
    import re

    from conftest import ROOT

    for path in (ROOT / "README.md", ROOT / "notebooks" / "05_score_your_face.ipynb"):
        named = set(re.findall(r"hf://([\w.-]+/[\w.-]+)", path.read_text()))
        assert bundles._PROJECT_MODEL in named and named <= {bundles._PROJECT_MODEL, "owner/name"}, path.name
