"""A trained run in one file: its bundle made with a model card, fetched (a path, https:// or
hf://), checked and opened, and published on the Hugging Face Hub."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from fbp import dataset, environment, evaluation, network, runs, scoring, settings, web
from fbp.errors import BundleError, NoSpaceError, RunNotFoundError

_BUNDLE_FORMAT = 2              # bump when what a bundle holds changes (2: fold models as their heads)
_READABLE = (1, 2)              # the formats this code opens


_MANIFEST = "bundle.json"       # in a bundle: its format, recipe version, run and each member's hash


# What a bundle may be, sized from what a real one holds (data/README.md, "Bundle limits"): checked
# before anything is unpacked or trusted.
_MAX_MEMBERS = 64               # files: a 5-fold bundle holds 33, web files included
_MAX_BYTES = 5 * 10**9          # unpacked, and downloaded: five fine-tuned SigLIP 2 models are about 1.9 GB,
                                # and their web copies (ONNX) as much again
_MAX_RATIO = 100                # unpacked / compressed, for a member over _RATIO_FROM bytes
_RATIO_FROM = 10**6
_SCHEMES = ("https://",)        # where a bundle may be downloaded from, redirects included
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a run's folder name, e.g. fold1-3fa2c1d0e4
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REBUILT = re.compile(r"runs/[A-Za-z0-9][A-Za-z0-9._-]*/frozen\.keras")  # a model a bundle rebuilds
_HUB_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")  # an owner's or a repo's name
_REVISION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?")  # a commit, branch or tag


# The project's own run on the Hub ("owner/name") once it is published, named here only: None until
# then (the name is not ours before we publish; the README and 05 say none is published yet).
_PROJECT_RUN: str | None = None


def _bundle_runs(run: runs.Run) -> list[runs.Run]:
    """The runs a run's bundle holds: the run, and its 5-fold protocol's folds if 05 scores with them."""
    return [run, *[fold for fold in run.scoring_folds() if fold.folder != run.folder]]


def _bundle_members(bundled: list[runs.Run]) -> tuple[dict[str, Path], dict[str, dict]]:
    """What a run's bundle holds (bundled: _bundle_runs), by name in the zip, laid out as in the work
    folder (runs/<run>/...): per run its record (settings, framing, versions), evaluation, current model
    and that model's reference, and the 5-fold reference when there is one; and the phone page's files
    (web.export_web) in web/. A fold model that is the
    run's frozen backbone with other heads travels as its heads alone, rebuilt when opened (the second
    dict: each rebuilt model from its base and heads). Refuses a run 04 has not evaluated."""
    members, rebuilt = {}, {}
    base, first = bundled[0].model_path(), None  # first: the run's model, loaded once if a fold needs it
    for run in bundled:
        if run.evaluation() is None:
            raise BundleError(f"Run {run.name} cannot be bundled: {run.why_not_evaluated()}. A bundle "
                              "carries its model's test figures, so run notebook 04 on it first.")
        model, folder = run.model_path(), run.folder
        for path in (folder / "run.json", folder / "evaluation.json",
                     folder / f"reference-{model.stem}.json"):
            members[f"runs/{run.name}/{path.name}"] = path
        heads = None
        if run is not bundled[0] and model.stem == base.stem == "frozen":  # two frozen backbones
            first = first or network.load_model(base)
            heads = network.heads_over(first, model)
        if heads is None:
            members[f"runs/{run.name}/{model.name}"] = model
            continue
        saved = folder / "frozen-heads.json"
        if environment.read_json(saved) != heads:
            environment.save_json(saved, heads)
        members[f"runs/{run.name}/{saved.name}"] = saved
        rebuilt[f"runs/{run.name}/{model.name}"] = {"from": f"runs/{bundled[0].name}/{base.name}",
                                                    "heads": f"runs/{run.name}/{saved.name}"}
    joined = bundled[0].out_of_fold_path()
    if joined and joined.is_file():
        members[f"runs/{joined.name}"] = joined
    page = web.export_web(bundled[0])
    members.update({f"web/{path.relative_to(page).as_posix()}": path for path in sorted(page.rglob("*"))
                    if path.is_file()})
    return members, rebuilt


def _rebuild(folder: Path, rebuilt: dict[str, dict]) -> None:
    """Rebuild, in an opened bundle's folder, each fold model that travelled as its heads alone: its base
    model with those heads; its evaluation then names the rebuilt file (the same weights it measured)."""
    for target, recipe in rebuilt.items():
        model = network.load_model(folder / recipe["from"])
        for name, weights in environment.read_json(folder / recipe["heads"]).items():
            model.get_layer(name).set_weights([np.asarray(w, "float32") for w in weights])
        model.save(folder / target)
        report = folder / Path(target).parent / "evaluation.json"
        environment.save_json(report, {**environment.read_json(report),
                                       "evaluated": runs.Run.at(report.parent).current_model()})


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
    preset = cfg["backbone"] in settings.FOUNDATIONS and cfg["weights"]  # pretrained keras-hub preset
    base = f"base_model: keras/{cfg['backbone']}\n" if preset else ""  # the Hub's copy of the preset
    return f"""---
license: other
license_name: scut-fbp5500-non-commercial
license_link: {dataset.DATASET_HOME}
library_name: keras
tags: [keras, image-regression, facial-beauty-prediction, scut-fbp5500]
{base}---

# {run.name}: facial beauty prediction on SCUT-FBP5500
{smoke}
**What it predicts.** {scoring.WHAT_IT_PREDICTS}

**Licence.** {scoring.LICENCE}

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
run: `hf://owner/name` where it is published (add `@` and a commit to pin it), its bundle's https://
address, or its path. Or with the package (`pip install git+https://github.com/{home}`):

```python
import utils

run = utils.run_to_score("hf://owner/name")
scorers = utils.scorers(run)  # its model(s), each with the reference that places a score
```

The run holds the model, the out-of-sample reference that turns a score into "more attractive than
X %", the face framing (in run.json), run.json and evaluation.json. Its `.keras` files sit in `runs/`
and use this project's layers, so `keras.saving.load_model` alone cannot open the repo: use 05 or the
package. Its `web/` holds the same model(s) and the face detector as ONNX files for the project's phone
page, and `web.json`, what the page reads.
"""


def make_bundle(run: runs.Run, home: str) -> Path:
    """Notebook 04's bundle of an evaluated run, bundles/<run>.zip in the work folder: its members
    (_bundle_members), a manifest and the model card as README.md; written anew only when a member changed."""
    bundled = _bundle_runs(run)
    members, rebuilt = _bundle_members(bundled)
    path = environment.work_dir() / "bundles" / f"{run.name}.zip"
    manifest = {"bundle": _BUNDLE_FORMAT, "recipe": settings.RECIPE_VERSION, "run": run.name,
                "files": {name: environment.file_hash(source) for name, source in members.items()},
                "rebuilt": rebuilt}
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
            for name, source in members.items():  # a .keras file is a zip already; an ONNX file's float
                stored = source.suffix in (".keras", ".onnx")  # weights deflate by 8 %, in 3 s a model
                archive.write(source, name, zipfile.ZIP_STORED if stored else None)

    environment.write_atomically(path, write, empty_old=True)
    print(f"Bundle {path} written ({path.stat().st_size / 1e6:,.1f} MB): {len(members)} files of "
          f"{len(bundled)} run(s), with its model card.")
    return path


def bundled_web(run: runs.Run) -> Path | None:
    """The web files a bundle carried for its run, where it was opened (web/ beside its runs/); None
    for a run of the work folder, or of a bundle made without them."""
    opened = run.folder.parents[1]
    carried = (opened / _MANIFEST).is_file() and (opened / "web" / "web.json").is_file()
    return opened / "web" if carried else None


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
        ours = (f"The project's own is hf://{_PROJECT_RUN}." if _PROJECT_RUN
                else "No run of this project is published yet.")
        raise RunNotFoundError(f"{error} Or score with a trained run someone shared: set RUN_NAME to its "
                               f"bundle's path, https:// address or hf://owner/name. {ours}") from None


def _open_bundle(source: str) -> Path:
    """The run folder of a bundle (a path, an https:// address, hf://owner/name[@revision]), checked
    before anything is trusted: its size, its manifest, every member's sha256. A zip is opened once
    per runtime where opened_root says; a bad bundle leaves nothing behind, and only a copy this
    project downloaded is ever removed."""
    if source.startswith("hf://"):
        return _hub_run(source)
    path = _fetch_bundle(source)
    downloaded = path.is_relative_to(environment.work_dir() / "bundles" / "downloads")
    try:
        manifest = _check_bundle(path, source)
        opened = _opened_root() / f"checked-{environment.file_hash(path)[:16]}"  # checked member by member
        if not (opened / _MANIFEST).is_file():
            _extract_verified(path, manifest, opened, source)
    except BundleError:
        if downloaded:  # our copy of someone's file: fetched anew next time
            path.unlink(missing_ok=True)
        raise
    return opened / "runs" / manifest["run"]


def _opened_root() -> Path:
    """Where zips are opened: in Colab with Drive, on the VM's own disk (the zip is the one copy
    on Drive, opened again in a new VM in seconds); elsewhere in the work folder's bundles/opened."""
    work = environment.work_dir()
    if work.is_relative_to(environment.DRIVE_HOME):
        return environment.COLAB_CONTENT / "opened-bundles"
    return work / "bundles" / "opened"


def _fetch_bundle(source: str) -> Path:
    """A bundle's local file: the path itself, else a download kept in the work folder's
    bundles/downloads (an https:// address downloaded once, named by the address's hash)."""
    if source.startswith(("https://", "http://")):
        if not source.startswith(_SCHEMES):
            raise BundleError(f"{source} is not an https:// address: a bundle is downloaded over https only. "
                              "Use its https:// address, or download it and set RUN_NAME to its path.")
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


class _HttpsRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an address a bundle may come from (_SCHEMES)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.startswith(_SCHEMES):
            raise BundleError(f"{req.full_url} sends the download on to {newurl}, which is not an https:// "
                              "address: refused. Ask for the bundle's own https:// address.")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download_bundle(url: str, file: Path) -> None:
    """Download a bundle into file with a progress bar, at most _MAX_BYTES whatever the server says, and
    stop at the first block when it is no zip; a refusal, an unreachable address or a download cut
    short says so. Nothing is kept of a failed download."""
    from tqdm.auto import tqdm

    try:
        with (urllib.request.build_opener(_HttpsRedirects).open(url, timeout=60) as response,
              open(file, "wb") as out):
            total = int(response.headers.get("Content-Length") or 0) or None
            if total and total > _MAX_BYTES:
                raise BundleError(f"{url} is {total / 1e9:,.1f} GB, more than a bundle holds "
                                  f"({_MAX_BYTES / 1e9:.0f} GB at most): not downloaded.")
            with tqdm(total=total, unit="B", unit_scale=True, desc="bundle") as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    if not out.tell() and not block.startswith(b"PK\x03\x04"):
                        kind = "a web page" if b"<html" in block[:2048].lower() else "not a zip"
                        raise BundleError(f"{url} is not a bundle: it is {kind}. Check the address: it "
                                          "must download the .zip itself, from a public link.")
                    if out.tell() + len(block) > _MAX_BYTES:
                        raise BundleError(f"{url} sent more than {_MAX_BYTES / 1e9:.0f} GB, more than a "
                                          "bundle holds: the download was stopped.")
                    bar.update(out.write(block))
        if total and file.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - file.stat().st_size)
    except BundleError:
        file.unlink(missing_ok=True)
        raise
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


def _check_bundle(path: Path, source: str) -> dict:
    """The bundle's manifest, once the zip is bounded (members, unpacked bytes, compression) and
    holds exactly its manifest, card and listed members, each inside its folder; else a BundleError."""
    if dataset.is_html_file(path) or not zipfile.is_zipfile(path):
        kind = "a web page" if dataset.is_html_file(path) else "not a zip"
        raise BundleError(f"{source} is not a bundle: it is {kind}. A bundle is the .zip notebook 04 writes "
                          "in the work folder's bundles/: check the path or address.")
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        _check_bounds(members, source)
        names = {member.filename for member in members}
        if _MANIFEST not in names:
            raise BundleError(f"{source} is a zip but not a bundle: it has no {_MANIFEST}. Use the .zip "
                              "notebook 04 writes in the work folder's bundles/.")
        manifest = _read_manifest(archive.read(_MANIFEST), source)
    expected = {_MANIFEST, "README.md", *manifest["files"]}
    if expected != names:
        odd = sorted(expected ^ names)
        raise BundleError(f"{source} is not a whole bundle: {', '.join(odd[:3])} "
                          f"{'is' if len(odd) == 1 else 'are'} missing, extra or outside its folder. "
                          "Ask for the bundle again, or make it again with notebook 04.")
    return manifest


def _check_bounds(members: list[zipfile.ZipInfo], source: str) -> None:
    """Refuse a zip that unpacks beyond what a bundle holds (data/README.md, "Bundle limits")."""
    unpacked = sum(member.file_size for member in members)
    squeezed = [m.filename for m in members
                if m.file_size > _RATIO_FROM and m.file_size > _MAX_RATIO * max(m.compress_size, 1)]
    problem = (f"it holds {len(members):,} files, and a bundle at most {_MAX_MEMBERS}"
               if len(members) > _MAX_MEMBERS else
               f"it would unpack to {unpacked / 1e9:,.1f} GB, a bundle to {_MAX_BYTES / 1e9:.0f} GB at most"
               if unpacked > _MAX_BYTES else
               f"{squeezed[0]} is compressed more than {_MAX_RATIO} times, which no bundle's file is"
               if squeezed else None)
    if problem:
        raise BundleError(f"{source} is not a bundle notebook 04 made: {problem}. Nothing was unpacked; "
                          "ask for the bundle again.")


def _read_manifest(data: bytes, source: str) -> dict:
    """A bundle's manifest, once its shape is a bundle's: a plain run name, a sha256 per member, each
    member a path inside the bundle, the run's run.json and a model among them; made by this version."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        manifest = None
    if isinstance(manifest, dict):
        _check_version(manifest, source)
    run, files = (manifest.get("run"), manifest.get("files")) if isinstance(manifest, dict) else (None, None)
    plain = isinstance(run, str) and _PLAIN_NAME.fullmatch(run) is not None
    listed = isinstance(files, dict) and all(
        isinstance(name, str) and isinstance(digest, str) and _SHA256.fullmatch(digest)
        and not Path(name).is_absolute() and ".." not in Path(name).parts and "\\" not in name
        for name, digest in files.items())
    rebuilt = manifest.get("rebuilt", {}) if isinstance(manifest, dict) else None
    recipes = listed and isinstance(rebuilt, dict) and all(
        _REBUILT.fullmatch(target) and isinstance(recipe, dict) and set(recipe) == {"from", "heads"}
        and {recipe["from"], recipe["heads"]} <= set(files) and target not in files
        for target, recipe in rebuilt.items())
    whole = plain and listed and recipes and f"runs/{run}/run.json" in files and any(
        f"runs/{run}/{stage}.keras" in files for stage in runs.MODEL_STAGES)
    if not whole:
        raise BundleError(f"{source} is not a bundle notebook 04 made: its {_MANIFEST} does not name a run "
                          "(a plain folder name), its run.json and a model, with a sha256 for each file "
                          "inside the bundle. Ask for the bundle again, or make it again with notebook 04.")
    return manifest


def _extract_verified(path: Path, manifest: dict, opened: Path, source: str) -> None:
    """Unpack a checked bundle into opened, all or nothing: into a staging folder, each member's
    sha256 compared with the manifest's, then moved into place (a later call trusts only that)."""
    staging = opened.with_name(f".partial-{opened.name}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(path) as archive:
            for name in (*manifest["files"], "README.md", _MANIFEST):
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with archive.open(name) as member, open(target, "wb") as out:
                    for block in iter(lambda: member.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
                if name in manifest["files"] and digest.hexdigest() != manifest["files"][name]:
                    raise BundleError(f"{source} was changed after it was made: {name} is not the file its "
                                      f"{_MANIFEST} names (sha256). Ask for the bundle again from "
                                      "someone you trust, or make it again with notebook 04.")
        _rebuild(staging, manifest.get("rebuilt", {}))
        staging.replace(opened)
    except (zipfile.BadZipFile, EOFError) as error:
        raise BundleError(f"{source} is damaged ({error}). Download it again, or make it again with "
                          "notebook 04.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_version(manifest: dict, source: str) -> None:
    """Raise a BundleError when a bundle was made by another recipe version or bundle format than this one."""
    made = (manifest.get("recipe"), manifest.get("bundle"))
    if made[0] != settings.RECIPE_VERSION or made[1] not in _READABLE:
        raise BundleError(f"{source} was made by version {made[0]} of the training recipe (bundle format "
                          f"{made[1]}), and this checkout's is {settings.RECIPE_VERSION} "
                          f"(format {_BUNDLE_FORMAT}): "
                          "its model does not fit this code. Check out the commit its model card names, or "
                          "ask for a bundle made by this version. The file is kept as it was.")


def _hub_address(source: str) -> tuple[str, str | None]:
    """hf://owner/name or hf://owner/name@revision as (repo id, revision or None): owner and name are
    letters, digits and . _ - (not at either end), the revision a commit, branch or tag."""
    address, at, revision = source.removeprefix("hf://").partition("@")
    names = address.split("/")
    if (len(names) != 2 or not all(_HUB_NAME.fullmatch(name) for name in names)
            or (at and (not _REVISION.fullmatch(revision) or ".." in revision))):
        raise BundleError(f"{source} is not a Hub address. Write hf://owner/name for the newest files of a "
                          "published run, or hf://owner/name@revision to pin a commit, branch or tag (its "
                          "model card names the commit to pin).")
    return address, revision or None


def _hub_run(source: str) -> Path:
    """The run folder of a run published on the Hugging Face Hub: its repo's files at the revision
    (the newest unless pinned), downloaded into the work folder's bundles/hub (huggingface_hub fetches
    a file again only when it changed), every file checked against the manifest's sha256."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, revision = _hub_address(source)
    local = environment.work_dir() / "bundles" / "hub" / f"{repo}@{revision or 'newest'}".replace("/", "--")
    try:
        manifest = _read_manifest(Path(hf_hub_download(repo, _MANIFEST, revision=revision,
                                                       local_dir=local)).read_bytes(), source)
        files = list(manifest["files"])
        size = sum(info.size or 0 for info in HfApi().get_paths_info(repo, files, revision=revision))
        if len(files) > _MAX_MEMBERS or size > _MAX_BYTES:
            raise BundleError(f"{source} holds {len(files)} files of {size / 1e9:,.1f} GB, more than a run "
                              f"holds ({_MAX_MEMBERS} files, {_MAX_BYTES / 1e9:.0f} GB): not downloaded.")
        snapshot_download(repo, revision=revision, local_dir=local, allow_patterns=files)
    except RepositoryNotFoundError:
        problem = ("is not on the Hugging Face Hub, or is private (then set HF_TOKEN to a token that may "
                   "read it). Check the name: hf://owner/name")
    except RevisionNotFoundError:
        problem = f"has no revision {revision}: check the commit, branch or tag after the @"
    except RemoteEntryNotFoundError:
        problem = f"holds no {_MANIFEST}: it is not a run published by notebook 06"
    except LocalEntryNotFoundError:
        problem = ("could not be downloaded: the Hugging Face Hub is not reachable from this runtime, and no "
                   "copy is in the work folder yet. Check the connection, then run this cell again")
    except HfHubHTTPError as error:
        problem = f"was refused by the Hugging Face Hub ({str(error).splitlines()[0]})"
    except Exception as error:
        if not _unreachable(error):
            raise
        problem = f"could not be downloaded: the Hugging Face Hub is not reachable ({type(error).__name__})"
    else:
        changed = [name for name, digest in manifest["files"].items()
                   if not (local / name).is_file() or environment.file_hash(local / name) != digest]
        if not changed:
            return _rebuilt_copy(local, manifest) / "runs" / manifest["run"]
        shutil.rmtree(local)  # our download: nothing of it is trusted later
        problem = (f"was changed after it was published: {changed[0]} is not the file its {_MANIFEST} "
                   "names (sha256). Ask its owner, or pin a revision you trust")
    raise BundleError(f"{source} {problem}.")


def _rebuilt_copy(local: Path, manifest: dict) -> Path:
    """A published run's checked files as they are, or, when fold models travelled as their heads, a
    copy where opened_root says with those models rebuilt (Drive keeps the one, small, copy)."""
    if not manifest.get("rebuilt"):
        return local
    opened = _opened_root() / f"{local.name}-{hashlib.sha256(json.dumps(manifest).encode()).hexdigest()[:16]}"
    if not (opened / _MANIFEST).is_file():
        staging = opened.with_name(f".partial-{opened.name}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(local, staging, ignore=shutil.ignore_patterns(".cache"))
        _rebuild(staging, manifest["rebuilt"])
        staging.replace(opened)
    return opened


def hub_login() -> None:
    """Log in to the Hugging Face Hub unless a token is found (HF_TOKEN, or a log-in saved before):
    huggingface_hub's log-in box in a notebook."""
    from huggingface_hub import get_token, notebook_login

    if get_token():
        print("A Hugging Face token was found (HF_TOKEN or a saved log-in).")
    else:
        notebook_login()


def publish_bundle(path: Path, repo: str | None = None) -> str | None:
    """Publish a bundle on the Hugging Face Hub as a model repo whose files are the run's (its members,
    manifest, and model card as README.md), so that the Hub shows them; repo None is <your user>/<run>.
    Returns hf://repo@commit, the revision to pin; publishes nothing new when the Hub has this run
    already, and says what to do (returning None) when no log-in is found."""
    import tempfile

    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token, path = get_token(), Path(path)
    if token is None:
        print("Not published: no Hugging Face log-in yet. Log in with the box above (a token with write "
              "access) or set HF_TOKEN, then run this cell again.")
        return None
    manifest, api = _check_bundle(path, str(path)), HfApi(token=token)
    try:
        repo = repo or f"{api.whoami()['name']}/{path.stem}"
        _hub_address(f"hf://{repo}")
        api.create_repo(repo, exist_ok=True)
        with zipfile.ZipFile(path) as archive:
            listed = archive.read(_MANIFEST)
        published = api.get_paths_info(repo, [_MANIFEST])
        if published and published[0].blob_id == _git_blob_id(listed):
            print(f"hf://{repo} has this run already: nothing to publish.")
            return f"hf://{repo}@{api.repo_info(repo).sha}"
        with tempfile.TemporaryDirectory() as folder:
            files = Path(folder) / "run"
            _extract_verified(path, manifest, files, str(path))
            card = (files / "README.md").read_text().replace("hf://owner/name", f"hf://{repo}")
            (files / "README.md").write_text(card)
            commit = api.upload_folder(repo_id=repo, folder_path=files, delete_patterns=["runs/**", "web/**"],
                                       commit_message=f"Run {manifest['run']}")
        pinned = f"hf://{repo}@{commit.oid}"
        api.upload_file(path_or_fileobj=f"{card}\n**Revision to pin.** `RUN_NAME = \"{pinned}\"` scores "
                                        "with exactly these files.\n".encode(),
                        path_in_repo="README.md", repo_id=repo,
                        commit_message="Model card: the revision to pin")
    except HfHubHTTPError as error:
        raise BundleError(_refusal(error, repo or "your account")) from None
    except Exception as error:
        if not _unreachable(error):
            raise
        reason = type(error).__name__
        raise BundleError(f"Not published: the Hugging Face Hub could not be reached ({reason}). Check the "
                          "connection, then run this cell again.") from None
    print(f"Published: https://huggingface.co/{repo}. Anyone can score with it in notebook 05: "
          f"RUN_NAME = \"{pinned}\" (this revision), or \"hf://{repo}\" (the newest).")
    return pinned


def _refusal(error: Exception, repo: str) -> str:
    """Why the Hub refused to publish, in words, with what to do."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 401:
        return ("Not published: the Hugging Face Hub does not accept this token (HTTP 401). Log in again "
                "with a token from https://huggingface.co/settings/tokens, or fix HF_TOKEN.")
    if status == 403:
        return (f"Not published: this token may not write to {repo} (HTTP 403). It is read-only (make one "
                f"with write access at https://huggingface.co/settings/tokens), or {repo.split('/')[0]} is "
                "someone else's account or organisation: publish to your own with HUB_REPO = None.")
    return f"Not published: the Hugging Face Hub refused it ({str(error).splitlines()[0]})."


def _unreachable(error: Exception) -> bool:
    """Whether huggingface_hub failed for want of a connection: its HTTP client's errors (httpx in
    Colab's version, httpx2 in newer ones) or the system's."""
    return isinstance(error, OSError) or type(error).__module__.split(".")[0] in (
        "httpx", "httpx2", "httpcore", "requests", "urllib3")


def _git_blob_id(data: bytes) -> str:
    """A file's id in git, as the Hub reports it (blob_id): so a published file is known unchanged."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
