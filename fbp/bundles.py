"""A trained run in one file: its bundle made with a model card, fetched (a path, https:// or
hf://), checked and opened, and published on the Hugging Face Hub."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

from fbp import dataset, environment, evaluation, network, runs, settings
from fbp.errors import BundleError, NoSpaceError, RunNotFoundError

_BUNDLE_FORMAT = 1              # bump when what a bundle holds changes


_MANIFEST = "bundle.json"       # in a bundle: its format, recipe version, run and each member's hash


_BUNDLE_FILE = "bundle.zip"     # a bundle's name on the Hugging Face Hub, beside its model card


# The project's own published run: 05 scores with it as RUN_NAME = "hf://" + PROJECT_MODEL. Not
# published yet; the README names the same.
_PROJECT_MODEL = "scut-fbp5500/how-attractive"


_DATASET_HOME = "https://github.com/HCIILAB/SCUT-FBP5500-Database-Release"


def _bundle_runs(run: runs.Run) -> list[runs.Run]:
    """The runs a run's bundle holds: the run, and its 5-fold protocol's folds if 05 scores with them."""
    return [run, *[fold for fold in run.scoring_folds() if fold.folder != run.folder]]


def _bundle_members(bundled: list[runs.Run]) -> dict[str, Path]:
    """What a run's bundle holds (bundled: _bundle_runs), by name in the zip, laid out as in the work
    folder (runs/<run>/...): per run its record (settings, framing, versions), evaluation, current model
    and that model's reference, and the 5-fold reference when there is one. Refuses a run 04 has not
    evaluated."""
    members = {}
    for run in bundled:
        if run.evaluation() is None:
            raise BundleError(f"Run {run.name} cannot be bundled: {run.why_not_evaluated()}. A bundle "
                              "carries its model's test figures, so run notebook 04 on it first.")
        model, folder = run.model_path(), run.folder
        for path in (folder / "run.json", folder / "evaluation.json", model,
                     folder / f"reference-{model.stem}.json"):
            members[f"runs/{run.name}/{path.name}"] = path
    joined = bundled[0].out_of_fold_path()
    if joined and joined.is_file():
        members[f"runs/{joined.name}"] = joined
    return members


def _model_card(bundled: list[runs.Run], home: str) -> str:
    """A run's model card (the bundle's README.md, and its Hub repo's; bundled: _bundle_runs): what it
    predicts, whose taste, the licence, intended use and misuse, its test figures with their intervals,
    how its epochs were chosen, and how to score with it."""
    run, folds = bundled[0], bundled[1:]
    record, report = run.record, run.evaluation()
    cfg, stage = record["config"], runs.MODEL_STAGES[report["model"]]
    figures = "\n".join(f"- {name}: {evaluation.with_interval(report[name], *report['ci95'][name])}"
                        for name in ("PC", "MAE", "RMSE"))
    tuned = record.get("finetune")
    epochs = (f"the fine-tune kept its epoch {tuned['best_epoch']} of {tuned['epochs']}, the one with the "
              f"lowest {tuned['chosen_on']} on the validation faces" if tuned and report["model"] != "frozen"
              else "the head's early stopping kept its epoch with the lowest "
                   f"{network.selection_loss(settings.Config(**cfg))}"
                   f" on the validation faces (patience {cfg['head_patience']})")
    committee = (f"\nIt scores with the {len(folds) + 1} fold models of its 5-fold protocol; the "
                 "figures above are this fold's, each fold's own in its evaluation.json." if folds else "")
    smoke = ("\n**SMOKE RUN**: synthetic faces and untrained weights, made to test the code. Its figures "
             "and scores mean nothing.\n" if record.get("smoke") else "")
    return f"""---
license: other
license_name: scut-fbp5500-non-commercial
license_link: {_DATASET_HOME}
library_name: keras
tags: [keras, image-regression, facial-beauty-prediction, scut-fbp5500]
---
# {run.name}: facial beauty prediction on SCUT-FBP5500
{smoke}
**What it predicts.** The mean 1-5 rating that the 60 raters of SCUT-FBP5500 (aged 18-27, at one
Chinese university) would give a face, in a photo framed like the dataset's: frontal, neutral, evenly lit.
It is the average taste of that one panel, not a measure of anyone's worth, and a different photo of
the same face changes it. The dataset is mostly Asian faces.

**Licence.** SCUT-FBP5500 is for non-commercial research use only ({_DATASET_HOME}). This model was
trained on it, and those terms travel with it: no commercial use.

**Intended use.** Curiosity and teaching: scoring your own photo, seeing what a network learned from
these raters and how far to trust it; research on facial beauty prediction.
**Misuse.** Judging, ranking or choosing people (hiring, dating, admissions, moderation), scoring anyone
without their consent, or any commercial use.

**The model.** {runs.describe_settings(cfg)}, {stage} (stage {'2' if report['model'] != 'frozen' else '1'}),
{cfg['image_size']} px, trained on {cfg['protocol']} of dataset {record['dataset']} by
{runs.describe_code((tuned or {}).get('code', record.get('code')))} of https://github.com/{home}, recipe
version {record['recipe']}.

**Test figures** ({report['n']:,} test faces of {report['protocol']}, never used to choose anything;
95 % bootstrap intervals over the test faces):
{figures}

**How its epochs were chosen.** On validation faces carved from the training part, never on the test
faces: {epochs}.{committee}

**Score a photo with it.** Open notebook 05 of https://github.com/{home} and set `RUN_NAME` to this
bundle: its path, its https:// address, or `hf://owner/name` where it is published. The bundle holds
the model, the out-of-sample reference that turns a score into "more attractive than X %", the face
framing (in run.json), run.json and evaluation.json.
"""


def make_bundle(run: runs.Run, home: str) -> Path:
    """Notebook 04's bundle of an evaluated run, bundles/<run>.zip in the work folder: its members
    (_bundle_members), a manifest and the model card as README.md; written anew only when a member changed."""
    bundled = _bundle_runs(run)
    path, members = environment.work_dir() / "bundles" / f"{run.name}.zip", _bundle_members(bundled)
    manifest = {"bundle": _BUNDLE_FORMAT, "recipe": settings.RECIPE_VERSION, "run": run.name,
                "files": {name: environment.file_hash(source) for name, source in members.items()}}
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if _MANIFEST in archive.namelist() and json.loads(archive.read(_MANIFEST)) == manifest:
                print(f"Bundle {path} is up to date ({path.stat().st_size / 1e6:,.1f} MB).")
                return path
    size = sum(source.stat().st_size for source in members.values())
    free = shutil.disk_usage(environment.work_dir()).free
    if size > free:
        raise NoSpaceError(f"The bundle needs {size / 1e9:.2f} GB and {environment.work_dir()} has "
                           f"{free / 1e9:.2f} GB "
                           "free (in Colab: your Drive, bin included). Make room, then run this cell again.")

    def write(file: Path) -> None:
        with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_MANIFEST, json.dumps(manifest, indent=1))
            archive.writestr("README.md", _model_card(bundled, home))
            for name, source in members.items():  # a .keras file is a zip already
                archive.write(source, name, zipfile.ZIP_STORED if source.suffix == ".keras" else None)

    environment.write_atomically(path, write, empty_old=True)
    print(f"Bundle {path} written ({path.stat().st_size / 1e6:,.1f} MB): {len(members)} files of "
          f"{len(bundled)} run(s), with its model card.")
    return path


def _is_bundle_source(name: str) -> bool:
    """True when 05's RUN_NAME names a bundle (a .zip path, an http(s) URL, hf://owner/name), not a run."""
    return name.startswith(("https://", "http://", "hf://")) or name.endswith(".zip") or Path(name).is_file()


def run_to_score(name: str | None = None) -> runs.Run:
    """Notebook 05's run: FBP_RUN if set (headless), else name: a saved run's folder name
    (None: the run notebook 02 set up), or a bundle's path, http(s) URL or hf://owner/name, opened in
    the work folder."""
    name = os.environ.get("FBP_RUN") or name
    if name and _is_bundle_source(name):
        run = runs.Run.at(_open_bundle(name))
        print(f"Run {run.name} (from the bundle {name}): {runs.describe_settings(run.identity['config'])}.")
        return run
    try:
        return runs.current_run(name)
    except RunNotFoundError as error:
        raise RunNotFoundError(f"{error} Or score with a trained run someone shared: set RUN_NAME to its "
                               "bundle's path, https:// address or hf://owner/name.") from None


def _open_bundle(source: str) -> Path:
    """The run folder of a bundle (a path, an http(s) URL, hf://owner/name): fetched once into the work
    folder's bundles/, checked whole, and opened there once, keyed by its content's hash (a bad
    bundle leaves nothing behind)."""
    path = _fetch_bundle(source)
    opened = environment.work_dir() / "bundles" / "opened" / environment.file_hash(path)[:16]
    if not (opened / _MANIFEST).is_file():
        try:
            _check_bundle(path, source)
        except BundleError:
            if path.is_relative_to(environment.work_dir() / "bundles"):  # a download: fetched anew next time
                path.unlink()
            raise
        staging = dataset.safe_extract(path, opened.with_name(f".partial-{opened.name}"))
        staging.replace(opened)
    manifest = environment.read_json(opened / _MANIFEST)
    _check_version(manifest, source)  # again: this checkout may be newer than the one that opened it
    return opened / "runs" / manifest["run"]


def _fetch_bundle(source: str) -> Path:
    """A bundle's local file: the path itself, else a download kept in the work folder's bundles/
    (an http(s) URL downloaded once, named by the URL's hash; hf://owner/name through huggingface_hub)."""
    if source.startswith("hf://"):
        return _hub_bundle(source.removeprefix("hf://"))
    if source.startswith(("https://", "http://")):
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        path = environment.work_dir() / "bundles" / "downloads" / f"{key}.zip"
        if not path.is_file():
            environment.write_atomically(path, lambda file: _download_bundle(source, file))
        return path
    path = Path(source).expanduser()
    if not path.is_file():
        raise BundleError(f"There is no bundle at {path}. Check the path: a bundle is the .zip notebook 04 "
                          "writes in the work folder's bundles/.")
    return path


def _download_bundle(url: str, file: Path) -> None:
    """Download a bundle into file with a progress bar; a refusal, an unreachable address or a download
    cut short says so and keeps nothing."""
    import http.client
    import urllib.error
    import urllib.request

    from tqdm.auto import tqdm

    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(file, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="bundle") as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    bar.update(out.write(block))
        if total and file.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - file.stat().st_size)
    except urllib.error.HTTPError as error:
        file.unlink(missing_ok=True)
        raise BundleError(f"{url} refused the download (HTTP {error.code}: {error.reason}). Check the "
                          "address: it must download the .zip itself, from a public link.") from None
    except (http.client.HTTPException, urllib.error.URLError, OSError) as error:
        got = file.stat().st_size if file.is_file() else 0
        file.unlink(missing_ok=True)
        cut = got or isinstance(error, http.client.IncompleteRead)
        what = (f"was cut short after {got / 1e6:,.1f} MB" if cut
                else f"could not be reached ({getattr(error, 'reason', error)})")
        raise BundleError(f"The download of {url} {what}; nothing was kept. Check the connection and "
                          "run this cell again, or download the file and set RUN_NAME to its path.") from None


def _hub_bundle(repo: str) -> Path:
    """A bundle published on the Hugging Face Hub (notebook 04's publish cell), downloaded into the
    work folder's bundles/hub/ (huggingface_hub fetches it again only when the Hub's copy changes)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    local = environment.work_dir() / "bundles" / "hub" / repo.replace("/", "--")
    try:
        return Path(hf_hub_download(repo, _BUNDLE_FILE, local_dir=local))
    except RepositoryNotFoundError:
        problem = ("is not on the Hugging Face Hub, or is private (then set HF_TOKEN to a token that may "
                   "read it). Check the name: hf://owner/name")
    except RemoteEntryNotFoundError:
        problem = f"holds no {_BUNDLE_FILE}: it is not a run published by notebook 04"
    except LocalEntryNotFoundError:
        problem = ("could not be downloaded: the Hugging Face Hub is not reachable from this runtime, and no "
                   "copy is in the work folder yet. Check the connection, then run this cell again")
    except HfHubHTTPError as error:
        problem = f"was refused by the Hugging Face Hub ({str(error).splitlines()[0]})"
    raise BundleError(f"hf://{repo} {problem}.")


def _check_bundle(path: Path, source: str) -> None:
    """Raise a BundleError unless the file is a whole zip holding a manifest, every member it lists
    and nothing else, each name inside its folder, made by this recipe version."""
    if dataset.is_html_file(path) or not zipfile.is_zipfile(path):
        kind = "a web page" if dataset.is_html_file(path) else "not a zip"
        raise BundleError(f"{source} is not a bundle: it is {kind}. A bundle is the .zip notebook 04 writes "
                          "in the work folder's bundles/: check the path or address.")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if _MANIFEST not in names:
            raise BundleError(f"{source} is a zip but not a bundle: it has no {_MANIFEST}. Use the .zip "
                              "notebook 04 writes in the work folder's bundles/.")
        manifest = json.loads(archive.read(_MANIFEST))
        _check_version(manifest, source)
        expected = {_MANIFEST, "README.md", *manifest["files"]}
        outside = [name for name in expected if Path(name).is_absolute() or ".." in Path(name).parts]
        if expected != names or outside:
            odd = sorted((expected ^ names) | set(outside))
            raise BundleError(f"{source} is not a whole bundle: {', '.join(odd[:3])} "
                              f"{'is' if len(odd) == 1 else 'are'} missing, extra or outside its folder. "
                              "Ask for the bundle again, or make it again with notebook 04.")
        broken = archive.testzip()
    if broken:
        raise BundleError(f"{source} is damaged: {broken} fails its checksum. Download it again, or make it "
                          "again with notebook 04.")


def _check_version(manifest: dict, source: str) -> None:
    """Raise a BundleError when a bundle was made by another recipe version or bundle format than this one."""
    made = (manifest.get("recipe"), manifest.get("bundle"))
    if made != (settings.RECIPE_VERSION, _BUNDLE_FORMAT):
        raise BundleError(f"{source} was made by version {made[0]} of the training recipe (bundle format "
                          f"{made[1]}), and this checkout's is {settings.RECIPE_VERSION} "
                          f"(format {_BUNDLE_FORMAT}): "
                          "its model does not fit this code. Check out the commit its model card names, or "
                          "ask for a bundle made by this version.")


def hub_login() -> None:
    """Log in to the Hugging Face Hub unless a token is found (HF_TOKEN, or a log-in saved before):
    huggingface_hub's log-in box in a notebook."""
    from huggingface_hub import get_token, notebook_login

    if get_token():
        print("A Hugging Face token was found (HF_TOKEN or a saved log-in).")
    else:
        notebook_login()


def publish_bundle(path: Path, repo: str | None = None) -> str | None:
    """Publish a bundle to the Hugging Face Hub, its model card as the repo's README; repo None is
    <your user>/<run>. Returns hf://repo; publishes nothing when the Hub has this bundle already, and
    says what to do (returning None) when no log-in is found."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    token = get_token()
    if token is None:
        print("Not published: no Hugging Face log-in yet. Log in with the box above (a token with write "
              "access) or set HF_TOKEN, then run this cell again.")
        return None
    api, path = HfApi(token=token), Path(path)
    repo = repo or f"{api.whoami()['name']}/{path.stem}"
    api.create_repo(repo, exist_ok=True)
    published = [info for info in api.get_paths_info(repo, [_BUNDLE_FILE]) if getattr(info, "lfs", None)]
    if published and published[0].lfs.sha256 == environment.file_hash(path):
        print(f"hf://{repo} has this bundle already: nothing to publish.")
        return f"hf://{repo}"
    with zipfile.ZipFile(path) as archive:
        card = archive.read("README.md")
    files = [CommitOperationAdd(_BUNDLE_FILE, str(path)), CommitOperationAdd("README.md", card)]
    api.create_commit(repo, files, commit_message=f"Bundle of run {path.stem}")
    print(f"Published: https://huggingface.co/{repo}. Anyone can score with it in notebook 05: "
          f"RUN_NAME = \"hf://{repo}\".")
    return f"hf://{repo}"
