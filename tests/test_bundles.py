"""Bundles: a run in one .zip that notebook 04 writes and notebook 05 scores with, from a path, a web
address or the Hugging Face Hub; every bad bundle named plainly, with nothing left behind. The run
here is a stand-in with a tiny model: tests/test_notebooks.py scores the smoke series' own bundle,
served over HTTP, in a fresh work folder."""

import hashlib
import importlib
import importlib.util
import json
import re
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

import utils
from fbp import bundles, dataset, errors, runs, settings, web
from fbp.errors import BundleError

FRAMING = {"eye_center_x": 0.5, "eye_center_y": 0.44, "eye_distance": 0.21}  # as notebook 02 records it


def evaluated_run() -> Path:
    """A run folder in the work folder as notebooks 02 and 04 leave it, with a tiny model."""
    cfg = utils.Config(weights=None)
    identity = runs._run_identity(cfg, "0123456789ab")
    folder = runs._run_dir(cfg, identity["dataset"])
    folder.mkdir(parents=True)
    images = keras.Input((8, 8, 3), dtype="uint8", name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
    keras.Model(images, {"score": keras.layers.Dense(1, name="score")(pooled)}).save(folder / "frozen.keras")
    utils.save_json(folder / "run.json", {**identity, "framing": FRAMING, "frozen": {}})
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
              manifest: dict | None = None, raw_manifest: bytes | None = None, rehash: bool = False) -> Path:
    """A copy of a bundle without one member, with extra members (replacing any of the same name), or
    with its manifest changed (a few fields, or all its bytes); rehash lists the copy's own members'
    sha256, as someone who rewrote the manifest too."""
    with zipfile.ZipFile(bundle) as source:
        members = {name: source.read(name) for name in source.namelist()
                   if not (drop and name.endswith(drop))}
    members.update({name: data.encode() if isinstance(data, str) else data
                    for name, data in (extra or {}).items()})
    listed = json.loads(members[bundles._MANIFEST]) if bundles._MANIFEST in members else {}
    if rehash:
        listed["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()
                           if name not in (bundles._MANIFEST, "README.md")}
    if bundles._MANIFEST in members:
        members[bundles._MANIFEST] = raw_manifest or json.dumps({**listed, **(manifest or {})}).encode()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for name, data in members.items():
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
    page = ("web.json", "parity.json", f"models/{folder.name}.onnx", "mtcnn/pnet.onnx", "mtcnn/rnet.onnx",
            "mtcnn/onet.onnx")  # the phone page's files (tests/test_web.py)
    assert names == {bundles._MANIFEST, "README.md", *(f"runs/{folder.name}/{name}" for name in (
        "run.json", "evaluation.json", "frozen.keras", "reference-frozen.json")), *(f"web/{n}" for n in page)}
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
    assert run.record["framing"] == FRAMING and run.stage == "evaluated"
    [scorer] = utils.scorers(run)
    assert scorer.reference.predicted.tolist() == [2.8, 3.2]
    opened = (folder / "frozen.keras").stat().st_mtime_ns
    monkeypatch.setenv("FBP_RUN", str(bundle.path))  # headless, FBP_RUN names it
    assert utils.run_to_score(None) == run and (folder / "frozen.keras").stat().st_mtime_ns == opened
    assert opened_entries() == [folder.parents[1].name]


def test_without_a_run_05_says_a_shared_bundle_will_do(work):
    with pytest.raises(errors.RunNotFoundError, match="No run chosen yet.*bundle's path, https:// address or "
                                                      "hf://owner/name. No run of this project is published"):
        utils.run_to_score(None)


NOT_MADE = "is not a bundle notebook 04 made: its bundle.json does not name a run"


def member(bundle: Path, suffix: str) -> str:
    """The name in the bundle of its member ending so."""
    with zipfile.ZipFile(bundle) as archive:
        return next(name for name in archive.namelist() if name.endswith(suffix))


def without(bundle: Path, key: str) -> bytes:
    """The bundle's manifest without one of its fields."""
    with zipfile.ZipFile(bundle) as archive:
        listed = json.loads(archive.read(bundles._MANIFEST))
    return json.dumps({k: v for k, v in listed.items() if k != key}).encode()


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
                       f"{settings.RECIPE_VERSION}.*The file is kept as it was"),
    "a member changed": (lambda b, t: rewritten(b, t, extra={member(b, "reference-frozen.json"): "{}"}),
                         r"was changed after it was made: runs/.*/reference-frozen\.json is not the file"),
    "a manifest that is not JSON": (lambda b, t: rewritten(b, t, raw_manifest=b"{not json"), NOT_MADE),
    "a manifest that is a list": (lambda b, t: rewritten(b, t, raw_manifest=b"[]"), NOT_MADE),
    "a manifest without files": (lambda b, t: rewritten(b, t, raw_manifest=without(b, "files")), NOT_MADE),
    "a manifest without its run": (lambda b, t: rewritten(b, t, raw_manifest=without(b, "run")), NOT_MADE),
    "no run.json": (lambda b, t: rewritten(b, t, drop="run.json", rehash=True), NOT_MADE),
    "the run an absolute path": (lambda b, t: rewritten(b, t, manifest={"run": "/tmp"}), NOT_MADE),
    "the run outside the bundle": (lambda b, t: rewritten(b, t, manifest={"run": "../.."}), NOT_MADE),
    "thousands of files": (lambda b, t: rewritten(b, t, extra={f"x/{i}": "" for i in range(100)}),
                           r"it holds 1\d\d files, and a bundle at most 64"),
    "a zip bomb": (lambda b, t: rewritten(b, t, extra={"runs/bomb.json": bytes(20_000_000)}, rehash=True),
                   "runs/bomb.json is compressed more than 100 times"),
}



@pytest.mark.parametrize("kind", BAD)
def test_a_bad_bundle_is_named_plainly_and_leaves_the_work_folder_as_it_was(bundle, tmp_path, kind):
    good = utils.run_to_score(str(bundle.path))
    before = sorted(str(p) for p in utils.work_dir().rglob("*"))
    make, message = BAD[kind]
    with pytest.raises(errors.BundleError, match=message):
        utils.run_to_score(str(make(bundle.path, tmp_path / "bad.zip")))
    assert sorted(str(p) for p in utils.work_dir().rglob("*")) == before  # nothing left, nothing trusted
    assert (tmp_path / "bad.zip").is_file()  # the user's file is theirs: never deleted
    assert not (tmp_path / "evil.py").exists() and utils.scorers(good)


def test_the_users_own_bundle_is_kept_when_this_code_cannot_open_it(work, monkeypatch):
    path = utils.make_bundle(runs.Run.at(evaluated_run()), "owner/project")  # in the work folder's bundles/
    made = path.read_bytes()
    monkeypatch.setattr(settings, "RECIPE_VERSION", settings.RECIPE_VERSION + 1)  # a newer checkout
    with pytest.raises(errors.BundleError, match="made by version .*The file is kept as it was"):
        utils.run_to_score(str(path))
    assert path.read_bytes() == made


def test_a_bundle_larger_than_a_bundle_can_be_is_not_unpacked(bundle, monkeypatch):
    monkeypatch.setattr(bundles, "_MAX_BYTES", 1000)
    with pytest.raises(errors.BundleError, match=r"it would unpack to 0\.0 GB, a bundle to 0 GB at most"):
        utils.run_to_score(str(bundle.path))
    assert opened_entries() == []


def test_a_model_that_would_run_code_is_refused_as_such(bundle, tmp_path):
    images = keras.Input((8, 8, 3), dtype="uint8", name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(lambda x: x / 255)(images))
    model = keras.Model(images, {"score": keras.layers.Dense(1, name="score")(pooled)})
    model.save(tmp_path / "frozen.keras")
    planted = rewritten(bundle.path, tmp_path / "planted.zip", rehash=True,
                        extra={member(bundle.path, "frozen.keras"): (tmp_path / "frozen.keras").read_bytes()})
    with pytest.raises(errors.RunMismatchError, match="was refused: it holds Python code .*Do not open it"):
        utils.scorers(utils.run_to_score(str(planted)))


def test_a_web_page_is_told_from_its_first_bytes(tmp_path, monkeypatch):
    from fbp import dataset

    (tmp_path / "page.zip").write_text("<!DOCTYPE html><html>Sign in</html>" + " " * 10_000)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the whole file was read"))
    assert dataset.is_html_file(tmp_path / "page.zip")


def test_a_bundle_whose_model_does_not_load_says_so(bundle, tmp_path):
    broken = rewritten(bundle.path, tmp_path / "broken.zip", rehash=True,
                       extra={f"runs/{bundle.run}/frozen.keras": b"PK\x03\x04 not a model"})
    run = utils.run_to_score(str(broken))
    with pytest.raises(errors.RunMismatchError, match="frozen.keras of run .* does not load with Keras"):
        utils.scorers(run)


@pytest.fixture
def served(web_server, monkeypatch):
    """The local web server, its plain http:// allowed as https:// is (only for 127.0.0.1)."""
    monkeypatch.setattr(bundles, "_SCHEMES", ("https://", "http://127.0.0.1"))
    return web_server


def test_a_bundle_is_downloaded_once_and_a_refused_or_cut_download_keeps_nothing(bundle, served):
    shutil.copy(bundle.path, served.folder / "run.zip")
    url = f"{served.url}/run.zip"
    run = utils.run_to_score(url)
    assert utils.run_to_score(url) == run and served.requests == ["/run.zip"]
    downloads = utils.work_dir() / "bundles" / "downloads"
    kept = sorted(downloads.iterdir())
    with pytest.raises(errors.BundleError, match=r"refused the download \(HTTP 403: Forbidden\)"):
        utils.run_to_score(f"{served.url}/refused/run.zip")
    with pytest.raises(errors.BundleError, match=r"was cut short after \d+\.\d MB; nothing was kept"):
        utils.run_to_score(f"{served.url}/cut/run.zip")
    with pytest.raises(errors.BundleError, match="could not be reached"):
        utils.run_to_score("http://127.0.0.1:9/run.zip")  # the discard port: nobody answers
    (served.folder / "page.zip").write_text("<html>Sign in to download</html>")
    with pytest.raises(errors.BundleError, match="it is a web page"):
        utils.run_to_score(f"{served.url}/page.zip")
    assert sorted(downloads.iterdir()) == kept


def test_a_download_is_https_bounded_and_stops_at_the_first_block_that_is_no_zip(bundle, served, monkeypatch):
    downloads = utils.work_dir() / "bundles" / "downloads"
    with pytest.raises(errors.BundleError, match="is not an https:// address"):
        utils.run_to_score("http://example.com/run.zip")
    with pytest.raises(errors.BundleError, match="sends the download on to ftp://127.0.0.1/run.zip, which is "
                                                 "not an https:// address: refused"):
        utils.run_to_score(f"{served.url}/to-ftp/run.zip")
    with pytest.raises(errors.BundleError, match="is not a bundle: it is not a zip"):
        utils.run_to_score(f"{served.url}/junk/run.zip")  # 300 MB offered, its length untold
    assert served.sent < 50e6  # the client stopped after its first block (the rest: socket buffers)
    shutil.copy(bundle.path, served.folder / "run.zip")
    monkeypatch.setattr(bundles, "_MAX_BYTES", bundle.path.stat().st_size // 2)
    with pytest.raises(errors.BundleError, match="more than a bundle holds: the download was stopped"):
        utils.run_to_score(f"{served.url}/untold/run.zip")
    with pytest.raises(errors.BundleError, match="more than a bundle holds"):  # a length too long: not asked
        utils.run_to_score(f"{served.url}/run.zip")
    assert not downloads.is_dir() or not any(downloads.iterdir())


def published(bundle: Path, folder: Path) -> Path:
    """A run's repo on the Hub as publish_bundle leaves it: the bundle's members as files."""
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(folder)
    return folder


@pytest.fixture
def hub(bundle, tmp_path, monkeypatch) -> SimpleNamespace:
    """huggingface_hub's downloads served from a local copy of a published run's repo: no network.
    .asked records (repo, revision) per call; .repo is the repo's folder; .error, when set, is raised."""
    import huggingface_hub

    hub = SimpleNamespace(asked=[], repo=published(bundle.path, tmp_path / "repo"), error=None)

    def copy(repo_id, revision, local_dir, names):
        hub.asked.append((repo_id, revision))
        if hub.error:
            raise hub.error
        for name in names:
            Path(local_dir, name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(hub.repo / name, Path(local_dir, name))

    def download(repo_id, filename, revision=None, local_dir=None):
        copy(repo_id, revision, local_dir, [filename])
        return str(Path(local_dir, filename))

    def snapshot(repo_id, revision=None, local_dir=None, allow_patterns=()):
        copy(repo_id, revision, local_dir, allow_patterns)
        return str(local_dir)

    class Sizes:  # HfApi's sizes of the repo's files
        def get_paths_info(self, repo_id, paths, revision=None):
            return [SimpleNamespace(size=(hub.repo / path).stat().st_size) for path in paths]

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.setattr(huggingface_hub, "HfApi", Sizes)
    return hub


def test_hf_opens_a_published_runs_files_at_a_pinned_revision_each_checked(bundle, hub):
    run = utils.run_to_score("hf://someone/their-run@3f2a1c9")
    assert hub.asked == [("someone/their-run", "3f2a1c9")] * 2 and run.name == bundle.run
    assert utils.scorers(run) and run.stage == "evaluated"
    assert run.folder.is_relative_to(utils.work_dir() / "bundles" / "hub" / "someone--their-run@3f2a1c9")
    (hub.repo / member(bundle.path, "reference-frozen.json")).write_text("{}")  # changed on the Hub
    with pytest.raises(BundleError, match="hf://someone/their-run was changed after it was published: "
                                          "runs/.*/reference-frozen.json is not the file"):
        utils.run_to_score("hf://someone/their-run")
    assert not (utils.work_dir() / "bundles" / "hub" / "someone--their-run@newest").exists()


@pytest.mark.parametrize("address", ["hf://", "hf://owner", "hf://a/b/c", "hf://x@v1", "hf://../..",
                                     "hf://owner/name@", "hf://owner/name@../../x", "hf://-a/b"])
def test_a_hub_address_has_one_rule_said_when_broken(hub, address):
    with pytest.raises(BundleError, match=f"{re.escape(address)} is not a Hub address. Write hf://owner/name"):
        utils.run_to_score(address)
    assert hub.asked == []


def test_a_published_run_larger_than_a_run_can_be_is_not_downloaded(hub, monkeypatch):
    monkeypatch.setattr(bundles, "_MAX_BYTES", 1000)
    with pytest.raises(BundleError, match=r"hf://someone/big holds \d+ files of 0\.0 GB, more than a run"):
        utils.run_to_score("hf://someone/big")
    assert not list((utils.work_dir() / "bundles" / "hub").rglob("*.keras"))


def test_the_hubs_refusals_are_named(hub):
    from huggingface_hub import errors as hub_errors

    client = importlib.import_module(next(name for name in ("httpx2", "httpx")
                                          if importlib.util.find_spec(name)))
    problems = {client.ConnectError: "could not be downloaded: the Hugging Face Hub is not reachable",
                hub_errors.RepositoryNotFoundError: "is not on the Hugging Face Hub, or is private",
                hub_errors.RevisionNotFoundError: "has no revision v2",
                hub_errors.RemoteEntryNotFoundError: "holds no bundle.json",
                hub_errors.LocalEntryNotFoundError: "could not be downloaded: the Hugging Face Hub is not"}
    for error, message in problems.items():
        hub.error = error.__new__(error)
        with pytest.raises(BundleError, match=f"hf://someone/other@v2 {message}"):
            utils.run_to_score("hf://someone/other@v2")


def hub_refusal(status: int) -> Exception:
    """The error huggingface_hub raises for an HTTP status."""
    from huggingface_hub.errors import HfHubHTTPError

    return HfHubHTTPError(f"{status} Client Error", response=SimpleNamespace(status_code=status, headers={},
                                                                             request=None))


class FakeHub:
    """huggingface_hub.HfApi's calls that publish_bundle makes, on a repo held in memory: no network.
    A token 'bad' is refused, 'read' may not write, 'offline' finds no network; 'other/...' is not ours."""

    files: dict = {}
    commits: list = []

    def __init__(self, token=None):
        self.token = token

    def whoami(self):
        if self.token == "offline":
            client = next(name for name in ("httpx2", "httpx") if importlib.util.find_spec(name))
            raise importlib.import_module(client).ConnectError("no route to host")
        if self.token == "bad":
            raise hub_refusal(401)
        return {"name": "someone"}

    def create_repo(self, repo, exist_ok):
        if self.token == "read" or repo.startswith("other/"):
            raise hub_refusal(403)

    def get_paths_info(self, repo, paths, revision=None):
        return [SimpleNamespace(blob_id=bundles._git_blob_id(data), size=len(data))
                for path in paths if (data := FakeHub.files.get(path)) is not None]

    def repo_info(self, repo):
        return SimpleNamespace(sha=f"c{len(FakeHub.commits)}")

    def upload_folder(self, repo_id, folder_path, delete_patterns, commit_message):
        FakeHub.files = {p.relative_to(folder_path).as_posix(): p.read_bytes()
                         for p in Path(folder_path).rglob("*") if p.is_file()}
        FakeHub.commits.append(repo_id)
        return SimpleNamespace(oid=f"c{len(FakeHub.commits)}")

    def upload_file(self, path_or_fileobj, path_in_repo, repo_id, commit_message):
        FakeHub.files[path_in_repo] = path_or_fileobj


def test_publishing_makes_the_repo_the_run_and_never_publishes_it_twice(bundle, hub, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert utils.publish_bundle(bundle.path) is None
    assert "Not published: no Hugging Face log-in yet" in capsys.readouterr().out
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_token")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.files, FakeHub.commits = {}, []
    assert utils.publish_bundle(bundle.path) == "hf://someone/shared@c1"
    with zipfile.ZipFile(bundle.path) as archive:
        assert set(FakeHub.files) == set(archive.namelist())  # the run's files, shown by the Hub
    card = FakeHub.files["README.md"].decode()
    assert 'RUN_NAME = "hf://someone/shared@c1"' in card and "hf://owner/name" not in card
    assert utils.publish_bundle(bundle.path) == "hf://someone/shared@c1"
    assert FakeHub.commits == ["someone/shared"] and "has this run already" in capsys.readouterr().out
    hub.repo = published(bundle.path, hub.repo.with_name("as-published"))
    (hub.repo / "README.md").write_bytes(FakeHub.files["README.md"])
    assert utils.scorers(utils.run_to_score("hf://someone/shared@c1"))  # what it published opens


@pytest.mark.parametrize(("token", "repo", "said"), [
    ("bad", None, r"does not accept this token \(HTTP 401\)"),
    ("read", None, r"may not write to someone/shared \(HTTP 403\). It is read-only"),
    ("hf_token", "other/model", "other is someone else's account or organisation"),
    ("offline", None, r"could not be reached \(ConnectError\)")])
def test_publishing_says_why_it_could_not(bundle, monkeypatch, token, repo, said):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: token)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    with pytest.raises(BundleError, match=f"Not published: .*{said}"):
        utils.publish_bundle(bundle.path, repo)


def test_the_model_card_follows_the_hubs_spec_and_shows_how_to_score(bundle):
    with zipfile.ZipFile(bundle.path) as archive:
        card = archive.read("README.md").decode()
    header, body = card.removeprefix("---\n").split("\n---\n", 1)
    fields = dict(line.split(": ", 1) for line in header.splitlines())
    assert fields["license"] == "other" and fields["license_name"] == "scut-fbp5500-non-commercial"
    assert fields["library_name"] == "keras" and "image-regression" in fields["tags"]
    assert "base_model" not in fields  # an ImageNet CNN of keras.applications: no Hub model to name
    assert re.search(r"\n\n\*\*Misuse\.\*\*", body) and 'utils.run_to_score("hf://owner/name")' in body
    assert "keras.saving.load_model` alone cannot open the repo" in body


def five_frozen_folds() -> runs.Run:
    """The 5-fold protocol of a frozen-only backbone as notebooks 02 to 06 leave it, with tiny models:
    every fold the same frozen backbone under its own head, evaluated, and their out-of-fold reference.
    Returns fold 1's run."""
    keras.utils.set_random_seed(0)
    images = keras.Input((8, 8, 3), dtype="uint8", name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
    features = keras.layers.Dense(16, name="backbone")(pooled)
    model = keras.Model(images, {"score": keras.layers.Dense(1, name="score")(features)})
    for k, fold in enumerate(dataset.FOLDS):
        cfg = utils.Config(protocol=fold, backbone="dinov2_base")
        identity = runs._run_identity(cfg, "0123456789ab")
        folder = runs._run_dir(cfg, identity["dataset"])
        folder.mkdir(parents=True)
        head = [np.full((16, 1), 0.1 * (k + 1), "float32"), np.array([k], "float32")]  # its own
        model.get_layer("score").set_weights(head)
        model.save(folder / "frozen.keras")
        utils.save_json(folder / "run.json", {**identity, "framing": FRAMING, "frozen": {}})
        utils.save_json(folder / "reference-frozen.json", {
            "stage": "frozen", "set": "the 2 test faces", "files": [f"AF{k}.jpg"], "true": [2.5],
            "predicted": [2.8], "mean_features": [0.0] * 16, "map_scale": None})
        evaluate(folder)
    first = runs.Run.at(runs._run_dir(utils.Config(backbone="dinov2_base"), "0123456789ab"))
    joined = {"set": "the 5 faces", "files": [f"AF{k}.jpg" for k in range(5)], "true": [2.5] * 5,
              "predicted": [2.8] * 5}
    utils.save_json(first.out_of_fold_path(), joined)
    return first


def test_a_frozen_backbone_travels_once_and_its_folds_score_as_in_their_folders(work, tmp_path):
    run = five_frozen_folds()
    faces = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    own = [scorer.model.predict(faces, verbose=0)["score"] for scorer in utils.scorers(run)]
    path = utils.make_bundle(run, "owner/project")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        runs_part = sum(info.compress_size for info in archive.infolist()
                        if info.filename.startswith("runs/"))
    assert [name for name in names if name.endswith(".keras")] == [f"runs/{run.name}/frozen.keras"]
    assert sum(name.endswith("/frozen-heads.json") for name in names) == 4
    models = sum(fold.model_path().stat().st_size for fold in run.folds())
    assert runs_part < 0.5 * models  # one backbone, not five (web/ holds each as ONNX for the page)
    shared = utils.run_to_score(str(shutil.copy(path, tmp_path / "shared.zip")))
    scorers = utils.scorers(shared)
    assert [scorer.name for scorer in scorers] == [fold.name for fold in run.folds()]
    for mine, scorer in zip(own, scorers, strict=True):
        np.testing.assert_allclose(scorer.model.predict(faces, verbose=0)["score"], mine, rtol=0, atol=1e-6)
    assert all(fold.stage == "evaluated" for fold in shared.folds())  # 04's figures still theirs
    assert "The 5 fold models that score here" in utils.accuracy_note(shared)
    assert "\nbase_model: keras/dinov2_base\n" in (shared.folder.parents[1] / "README.md").read_text()


def test_a_frozen_backbones_web_files_hold_it_once_and_each_folds_heads_score_as_keras(work):
    import onnxruntime

    run = five_frozen_folds()
    faces = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    own = [scorer.model.predict(faces, verbose=0)["score"] for scorer in utils.scorers(run)]
    page = web.export_web(run)
    manifest = utils.read_json(page / "web.json")
    backbone = onnxruntime.InferenceSession(page / manifest["features"]["file"])
    [pooled] = backbone.run([manifest["features"]["output"]],
                            {manifest["features"]["input"]: faces.astype("float32")})
    assert sorted(p.name for p in (page / "models").iterdir()) == sorted(
        ["features.onnx", *(f"{fold.name}.onnx" for fold in run.folds())])
    for entry, mine in zip(manifest["models"], own, strict=True):
        head = onnxruntime.InferenceSession(page / entry["file"])
        np.testing.assert_allclose(head.run([entry["score"]], {entry["input"]: pooled})[0], mine, atol=1e-4)
        assert entry["bytes"] < manifest["features"]["bytes"]  # a head, not another backbone


def test_a_published_frozen_backbone_is_rebuilt_off_drive_and_scores_alike(work, tmp_path, monkeypatch):
    import huggingface_hub

    run = five_frozen_folds()
    faces = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    own = [scorer.model.predict(faces, verbose=0)["score"] for scorer in utils.scorers(run)]
    repo = published(utils.make_bundle(run, "owner/project"), tmp_path / "repo")

    def snapshot(repo_id, revision=None, local_dir=None, allow_patterns=()):
        for name in allow_patterns:
            Path(local_dir, name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(repo / name, Path(local_dir, name))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo_id, filename, revision, local_dir: (
        snapshot(repo_id, revision, local_dir, [filename]), str(Path(local_dir, filename)))[1])
    def sizes(repo_id, paths, revision):
        return [SimpleNamespace(size=(repo / path).stat().st_size) for path in paths]

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: SimpleNamespace(get_paths_info=sizes))
    shared = utils.run_to_score("hf://someone/frozen@c1")
    hub = utils.work_dir() / "bundles" / "hub" / "someone--frozen@c1"
    assert len(list(hub.rglob("*.keras"))) == 1  # the one backbone, as published
    assert not shared.folder.is_relative_to(hub)  # the rebuilt fold models live in the opened copy
    for mine, scorer in zip(own, utils.scorers(shared), strict=True):
        np.testing.assert_allclose(scorer.model.predict(faces, verbose=0)["score"], mine, rtol=0, atol=1e-6)


def test_in_colab_drive_keeps_one_copy_of_a_bundle_and_it_opens_on_the_vms_disk(bundle, tmp_path,
                                                                               monkeypatch):
    from fbp import environment

    monkeypatch.setattr(environment, "DRIVE_HOME", tmp_path / "drive" / "MyDrive")
    monkeypatch.setattr(environment, "COLAB_CONTENT", tmp_path / "content")
    monkeypatch.setenv("FBP_WORK_DIR", str(tmp_path / "drive" / "MyDrive" / "work"))
    run = utils.run_to_score(str(bundle.path))
    assert run.folder.is_relative_to(tmp_path / "content" / "opened-bundles")
    assert not (tmp_path / "drive").exists() or not list((tmp_path / "drive").rglob("*.keras"))


def test_the_readme_and_05_promise_no_published_run_that_does_not_exist():
    import re

    from conftest import ROOT

    for path in (ROOT / "README.md", ROOT / "notebooks" / "05_score_your_face.ipynb"):
        text = path.read_text()
        assert set(re.findall(r"hf://([\w.-]+/[\w.-]+)", text)) <= {bundles._PROJECT_RUN, "owner/name"}
        assert bundles._PROJECT_RUN or "published yet" in text, path.name
