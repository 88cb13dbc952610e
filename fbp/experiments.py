"""The runners: the whole series headless, the paper's protocols, the ablation and its statistics
(Holm, the Nadeau-Bengio test), the results table, and the command line for GPU machines."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from collections.abc import Collection
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from fbp import bundles, dataset, environment, evaluation, runs, settings
from fbp.errors import (
    USER_ERRORS,
    DatasetLayoutError,
    FrozenOnlyError,
    NoSpaceError,
    RunMismatchError,
    RunNotFoundError,
)


def _execute_notebook(name: str, copy: Path, env: dict, label: str) -> None:
    """Run notebooks/<name>.ipynb top to bottom in a kernel of its own with this environment,
    echoing each line it prints after its label (Keras' bar gives one per epoch); its executed
    copy, with every output, is kept at `copy`. A failing cell stops it with a plain RuntimeError."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    class EchoingClient(NotebookClient):
        pending = ""  # the start of a line not finished yet

        def output(self, outs, msg, display_id, cell_index):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                *lines, self.pending = (self.pending + msg["content"]["text"]).split("\n")
                for line in lines:  # a progress bar redraws after "\r": keep its last state
                    shown = line.rsplit("\r", 1)[-1]
                    if shown.strip():
                        print(f"  {label} | {shown}", flush=True)
            return super().output(outs, msg, display_id, cell_index)

    path = environment.NOTEBOOKS / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    print(f"{label}: notebook {name} runs ...", flush=True)
    try:
        EchoingClient(notebook, timeout=None, kernel_name="python3",
                      resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    except (CellExecutionError, DeadKernelError) as error:
        if getattr(error, "ename", None) == FrozenOnlyError.__name__:  # 03 of a frozen-only backbone
            print(f"{label}: notebook {name}: {error.evalue}", flush=True)
            return
        reason = (f"{error.ename}: {error.evalue}" if isinstance(error, CellExecutionError)
                  else "its kernel died (out of memory?)")
        raise RuntimeError(f"{label}: notebook {name} stopped, {reason}\nIts outputs are in {copy}.") \
            from None
    finally:
        copy.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, copy)
    print(f"{label}: notebook {name} done in {(time.perf_counter() - start) / 60:.1f} min.", flush=True)


def _run_notebook(name: str, cfg: settings.Config, data_root: Path, folder: Path,
                  label: str | None = None) -> None:
    """Run a notebook of the series (e.g. '03_finetune') for a runner: with these settings
    (FBP_CONFIG) and data, in this work folder, its progress shown after the run's label (its
    protocol unless given), its executed copy kept in the run's folder."""
    env = {**os.environ, "FBP_CONFIG": json.dumps(asdict(cfg)), "FBP_DATA_DIR": str(data_root),
           "FBP_WORK_DIR": str(environment.work_home())}
    try:
        _execute_notebook(name, Path(folder) / f"{name}.ipynb", env, label or cfg.protocol)
    except RuntimeError as error:
        raise RuntimeError(f"{error} Run this cell again to resume.") from None


def _sample_photo() -> str:
    """A real photo that ships inside a package, for a headless 05: scikit-image's astronaut (NASA's
    portrait of Eileen Collins, public domain); '' where scikit-image is not installed."""
    try:
        import skimage.data
    except ImportError:
        return ""
    return str(Path(skimage.data.__file__).parent / "astronaut.png")


def run_series(log: str | None = None) -> int:
    """Run notebooks 01 to 06 headless, in order, each in a kernel of its own (the README's first
    command): their executed copies go to the work folder's executed/ folder, then the run's
    headline figures and the results table are printed. Returns the exit status for the shell."""
    executed = environment.work_dir() / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    variables = {"FBP_PHOTO": _sample_photo(), **os.environ}  # 05 scores a photo, FBP_PHOTO's if set
    for path in sorted(environment.NOTEBOOKS.glob("0[1-6]_*.ipynb")):
        try:
            _execute_notebook(path.stem, executed / path.name, variables, path.stem[:2])
        except RuntimeError as error:
            print(f"{error}\nFix what it says, then run the series again: what is done is not done again.")
            return 1
    if log:
        shutil.copyfile(log, executed / "series.log")
    run = runs.current_run()
    report = run.evaluation()
    print(f"\nThe series ran in {(time.perf_counter() - start) / 60:.1f} min. Executed notebooks, with "
          f"every output: {executed}" + (" (TensorFlow's start-up log: series.log there)." if log else "."))
    print(run.describe())
    if report:
        print("Test figures with 95 % intervals:", ", ".join(
            f"{name} {evaluation.with_interval(report[name], *report['ci95'][name])}"
            for name in ("PC", "MAE", "RMSE")))
    else:
        print(f"No test figures: {run.why_not_evaluated()}.")
    print("\nThe results table (notebook 06):\n" + as_markdown(results_table()))
    return 0


def switched_on(wanted: bool, switch: str, what: str) -> bool:
    """Whether one of notebook 06's switches (RUN_FULL_PROTOCOLS, RUN_ABLATION, PUBLISH) is on; says
    how to switch it on when it is off."""
    if not wanted:
        print(f"{switch} is off: set {switch} = True above to {what}.")
    return wanted


def run_protocol(protocol: str, cfg: settings.Config, data_root: Path) -> pd.DataFrame:
    """Run a protocol: 'fold1'..'fold5', '5-fold' (all five) or '60/40'. Notebooks 02 and 03 train
    each fold, then notebook 04 evaluates it, each in a kernel of its own (which frees the GPU); a
    fold resumes after a lost VM and a step done is not run again. After 5-fold every fold's
    folder also gets the out-of-fold predictions of all faces (05's reference). Returns the
    per-fold figures, with their mean and SD for 5-fold."""
    if environment.one_fold_of_a_protocol():
        raise RuntimeError("This notebook is running one fold for a protocol runner, so it cannot run "
                           "protocols itself (RUN_FULL_PROTOCOLS must stay off here).")
    names = list(dataset.FOLDS) if protocol == "5-fold" else [protocol]
    folds = {name: replace(cfg, protocol=name) for name in names}
    lacking = {name: why for name, fold in folds.items() if (why := _missing_for(fold, data_root))}
    if lacking:
        raise DatasetLayoutError(
            f"The {protocol} protocol cannot run on {data_root}, and nothing was trained: "
            + "; ".join(f"{name} needs {why}" for name, why in lacking.items())
            + ". Complete the dataset from the release's zip, then run this cell again.")
    trained, reports = _train_and_evaluate(folds, data_root, f"the {protocol} protocol")
    if protocol == "5-fold":
        _save_out_of_fold_reference(trained)
    return evaluation.aggregate_folds(reports)


def _save_out_of_fold_reference(folds: list[runs.Run]) -> None:
    """Join the folds' test predictions, each by its final model (fine-tuned, or stage 1 for a
    frozen-only backbone), into the 5-fold protocol's reference."""
    stage = folds[0].final  # the folds share their settings, so their stage
    parts = [json.loads((fold.folder / f"reference-{stage}.json").read_text()) for fold in folds]
    joined = {key: [v for part in parts for v in part[key]] for key in ("files", "true", "predicted")}
    environment.save_json(folds[0].out_of_fold_path(), {
        "set": f"the {len(joined['files']):,} faces of the 5-fold protocol, each predicted by "
               f"the {runs.MODEL_STAGES[stage]} model of the fold that held it out", **joined})


def _train_and_evaluate(configs: dict[str, settings.Config], data_root: Path, what: str,
                       stage_one_only: Collection[str] = ()) -> tuple[list[runs.Run], list[dict]]:
    """Train each run (named by its label) with notebooks 02 and 03 (02 alone for the labels in
    stage_one_only and for frozen-only backbones), every one before any is evaluated, then evaluate
    each with notebook 04, one run at a time, each notebook in a kernel of its own (which frees the
    GPU); a step done is not run again, a run cut short resumes. Returns the runs and their
    evaluations."""
    fingerprint = dataset.dataset_fingerprint(dataset.all_labels(data_root))
    trained = [runs.Run.of(cfg, fingerprint) for cfg in configs.values()]
    check_space([run.folder for run in trained], what)
    for (label, cfg), run in zip(configs.items(), trained, strict=True):
        steps = [("02_frozen_head", "frozen")]
        if label not in stage_one_only and settings.fine_tunes(cfg.backbone):
            steps.append(("03_finetune", "finished"))
        for notebook, done in steps:
            if not run.record.get(done):
                _run_notebook(notebook, cfg, data_root, run.folder, label)
    reports = [run.evaluation() for run in trained]  # None if made from another model
    for k, ((label, cfg), run) in enumerate(zip(configs.items(), trained, strict=True)):
        if reports[k] is None:
            _run_notebook("04_evaluation", cfg, data_root, run.folder, label)
            reports[k] = run.evaluation()
    return trained, reports


def check_space(folders: list[Path], what: str) -> None:
    """Stop with a plain message, before anything is written, when the work folder's disk (in Colab
    your Drive, whose bin counts) has less room than these runs need."""
    saved = [folder for folder, _ in runs.saved_runs()]
    models = [Path(folder) / "frozen.keras" for folder in [*folders, *saved]]
    model = next((path for path in models if path.is_file()), None)
    if model is None:
        raise RunNotFoundError("No stage 1 is saved yet: run notebook 02 first.")
    model_bytes = model.stat().st_size
    needed, free = _space_needed(folders, model_bytes), shutil.disk_usage(environment.work_dir()).free
    if needed <= free:
        return
    on_drive = environment.in_colab() and environment.work_dir().is_relative_to(environment.DRIVE_HOME)
    largest = sorted(((_folder_bytes(f), f.name) for f in saved), reverse=True)[:3]
    raise NoSpaceError(
        f"{'Your Google Drive' if on_drive else f'The disk of {environment.work_dir()}'} has "
        f"{free / 1e9:.2f} GB "
        f"free, and {what} needs about {needed / 1e9:.2f} GB more (the models still to save, and while "
        "a fine-tune runs two backups of its state and two copies of its best weights; estimated from "
        f"a saved model of {model_bytes / 1e6:.0f} MB). Nothing was written. Make room, then run this cell "
        "again:"
        + ("\n- empty your Drive's bin (drive.google.com/drive/trash): deleted files count against "
           "your 15 GB until it is emptied, or for 30 days" if on_drive else "")
        + ("\n- delete run folders you no longer need from " + str(environment.work_dir() / "runs")
           + ", largest: "
           + ", ".join(f"{name} ({size / 1e6:,.0f} MB)" for size, name in largest) if largest else ""))


def _space_needed(folders: list[Path], model_bytes: int) -> int:
    """Bytes these runs will still add to the work folder, from the size of one saved model (W): W
    for each stage's model not saved yet and, while a fine-tune is unfinished, its two backups (the
    weights and AdamW's two moments: 3 W each) and two copies of its best weights, 8 W at the peak,
    less what those files hold already (they are overwritten in place). Folds train one at a time."""
    models = sum(model_bytes for folder in folders for name in ("frozen.keras", "finetuned.keras")
                 if not (Path(folder) / name).is_file())
    training = [8 * model_bytes - sum(p.stat().st_size for pattern in ("backup/state-*.npz", "best-*.npz")
                                      for p in Path(folder).glob(pattern))
                for folder in folders if not environment.read_json(Path(folder) / "run.json").get("finished")]
    return models + max(training, default=0)


def _folder_bytes(folder: Path) -> int:
    """The bytes of the files below a folder."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _ablation_recipes(cfg: settings.Config) -> dict[str, settings.Config]:
    """The ablation's recipes by name, on fold 1 with the run's other settings: first the blog's
    ResNet50 with squared error alone, then the same with the next seed (training noise alone), then
    each backbone with and without the raters' distribution, each in the default batch, then each
    keras-hub preset with squared error alone, frozen: stage 1 only, at its own size (in smoke mode
    the blog's and one that changes both, in smoke's batch: a test of the runner, not an ablation)."""
    recipes, size = {}, cfg.image_size if cfg.backbone in settings.BACKBONES else None  # None: 350
    for backbone in settings.BACKBONES:
        for distribution in (False, True):
            name = f"{backbone}{' + distribution' if distribution else ''}"
            recipe = replace(cfg, protocol="fold1", backbone=backbone, image_size=size,
                             label_distribution=distribution, batch_size=None)
            recipes[name] = recipe.smoke() if environment.smoke_mode() else recipe
    baseline = next(iter(recipes))
    recipes = {baseline: recipes[baseline],
               f"{baseline}, seed {cfg.seed + 1}": replace(recipes[baseline], seed=cfg.seed + 1), **recipes}
    if environment.smoke_mode():
        return {name: recipes[name] for name in ("ResNet50", "EfficientNetV2S + distribution")}
    return recipes | {f"{backbone} {runs.STAGE_ONE_ONLY}": replace(
        cfg, protocol="fold1", backbone=backbone, image_size=None, label_distribution=False, batch_size=None)
        for backbone in settings.FOUNDATIONS}


def _missing_for(cfg: settings.Config, data_root: Path) -> str | None:
    """What the dataset lacks to train a run of these settings, in words, or None: the runners check
    every run before they train any."""
    if cfg.label_distribution and not (Path(data_root) / "All_Ratings.xlsx").is_file():
        return "All_Ratings.xlsx, the raters' sheet that its distribution head learns from"
    try:
        dataset.protocol_files(data_root, cfg.protocol)
    except DatasetLayoutError:
        return f"the label files of {cfg.protocol}"
    return None


def run_ablation(cfg: settings.Config, data_root: Path, across_folds: bool = False) -> pd.DataFrame:
    """Train and evaluate the ablation's recipes on fold 1, or on each of the five folds (the evidence
    that one recipe is better than another), one run at a time, resumable (a run done is not trained
    again), and compare each with the blog's recipe on the same test faces. A recipe this dataset
    cannot train is skipped, named with what it lacks, before anything trains."""
    folds = dataset.FOLDS if across_folds else dataset.FOLDS[:1]
    recipes = {}
    for name, recipe in _ablation_recipes(cfg).items():
        lacking = [why for fold in folds if (why := _missing_for(replace(recipe, protocol=fold), data_root))]
        if lacking and not recipes:
            raise DatasetLayoutError(f"The ablation cannot run on {data_root}: its baseline, {name}, lacks "
                                     f"{lacking[0]}. Nothing was trained. Complete the dataset from the "
                                     "release's zip, then run this cell again.")
        if lacking:
            print(f"Skipped {name}: {Path(data_root)} lacks {lacking[0]}. Add it to include this recipe.")
        else:
            recipes[name] = recipe
    if any(recipe.label_distribution for recipe in recipes.values()):
        dataset.rating_shares(data_root, dataset.all_labels(data_root))  # a sheet at odds with labels stops
    configs = {f"{name}, {fold}" if across_folds else name: replace(recipe, protocol=fold)
               for name, recipe in recipes.items() for fold in folds}
    frozen = [label for label, recipe in configs.items()  # stage 1 only
              if recipe.backbone in settings.FOUNDATIONS]
    trained, _ = _train_and_evaluate(configs, data_root, "the ablation", stage_one_only=frozen)
    return _ablation_table({name: trained[k * len(folds):(k + 1) * len(folds)]
                           for k, name in enumerate(recipes)})


_PRIMARY = "PC"  # the ablation's one metric for claims: the paper's headline, higher is better


def _holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of p-values (kept in their order): read at 5 %, the chance that a
    family of comparisons names any difference that is not there stays at most 5 %."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    return np.minimum(1.0, adjusted)[np.argsort(order, kind="stable")]


def _corrected_paired_t(differences, test_share: float) -> float:
    """Two-sided p-value of the Nadeau-Bengio corrected resampled t-test on differences paired by fold:
    the variance of their mean grows by test/train faces (test_share), as folds share training faces."""
    from scipy import stats

    differences = np.asarray(differences, float)
    k, spread = len(differences), differences.std(ddof=1)
    if spread == 0:
        return 1.0 if differences.mean() == 0 else 0.0
    t = differences.mean() / np.sqrt((1 / k + test_share) * spread**2)
    return float(2 * stats.t.sf(abs(t), k - 1))


def _direction(difference: float, p: float, one_fold: bool, level: float = 0.05) -> str:
    """A comparison's verdict in words, where its adjusted p is below the level: with one fold a claim
    about two trained networks, e.g. "this network's PC higher (p 0.003)", across folds one about
    recipes, "PC higher (p 0.003)"; else "none shown (p 0.41)" or "no difference shown (p 0.41)"."""
    if p >= level:
        return f"{'none' if one_fold else 'no difference'} shown (p {p:.2g})"
    subject = "this network's " if one_fold else ""
    return f"{subject}{_PRIMARY} {'higher' if difference > 0 else 'lower'} (p {p:.2g})"


def _recipe_figures(name: str, folds: list[runs.Run], baseline: list[pd.DataFrame] | None) -> dict:
    """A recipe's evaluations across its folds (one or five): its reports, predictions per fold and
    run records; refused when a fold is not evaluated or was tested on other faces than the baseline's."""
    reports, faces, records = [], [], []
    for k, run in enumerate(folds):
        report = run.evaluation()
        if report is None:
            raise RunNotFoundError(f"Recipe {name} ({run.name}) is {run.why_not_evaluated()}.")
        predictions = pd.read_csv(run.folder / "predictions.csv")
        if baseline is not None and not predictions["file"].equals(baseline[k]["file"]):
            raise RunMismatchError(f"Recipe {name} was tested on other faces than the baseline on "
                                   f"{report['protocol']}: recipes are compared on the same test faces only.")
        reports.append(report)
        faces.append(predictions.assign(predicted=predictions[report["model"]]))
        records.append(run.record)
    return {"reports": reports, "faces": faces, "records": records}


def _difference(recipe: dict, base: dict, samples: int, seed: int, level: float) -> dict:
    """A recipe's difference in the primary metric from its base's, on the same test faces: its
    unadjusted p-value and its interval at this level, in words: with one fold the paired bootstrap
    (test faces' sampling only), across folds the Nadeau-Bengio corrected t-test of the per-fold
    differences, with the smallest difference it would find 80 % of the time at this level."""
    from scipy import stats

    pairs = list(zip(recipe["faces"], base["faces"], strict=True))
    if len(pairs) == 1:
        [(faces, other)] = pairs
        difference, low, high, p = evaluation.paired_differences(
            faces["score"], faces["predicted"], other["predicted"], samples, seed, level)[_PRIMARY]
        return {"difference": difference, "p": p, "interval": evaluation.with_interval(difference, low, high)}
    per_fold = np.array([evaluation.regression_metrics(f["score"], f["predicted"])[_PRIMARY]
                         - evaluation.regression_metrics(b["score"], b["predicted"])[_PRIMARY]
                         for f, b in pairs])
    sizes, k = recipe["records"][0]["sizes"], len(per_fold)
    share = sizes["test"] / (sizes["train"] + sizes["val"])
    error = np.sqrt((1 / k + share) * per_fold.var(ddof=1))  # the corrected standard error of the mean
    critical, mean = stats.t.ppf(1 - (1 - level) / 2, k - 1), float(per_fold.mean())
    return {"difference": mean, "p": _corrected_paired_t(per_fold, share),
            "interval": evaluation.with_interval(mean, mean - critical * error, mean + critical * error),
            "detectable": float((critical + stats.t.ppf(0.8, k - 1)) * error)}


def _fold_figures(reports: list[dict]) -> dict[str, str]:
    """PC, MAE and RMSE of one fold with their 95 % intervals, or of several folds as mean ± SD
    (aggregate_folds': refused when the folds were evaluated at different stages)."""
    if len(reports) == 1:
        return {m: evaluation.with_interval(reports[0][m], *reports[0]["ci95"][m])
                for m in ("PC", "MAE", "RMSE")}
    summary = evaluation.aggregate_folds(reports)
    return {m: evaluation.with_spread(summary.loc["mean", m], summary.loc["SD", m])
            for m in ("PC", "MAE", "RMSE")}


_SEED_CONTROL = ", seed "  # in a recipe's name: the baseline with only its seed changed


def _base_of(name: str, names: list[str]) -> str:
    """The recipe a recipe is compared with: "X + distribution" with "X" where the ablation has it, any
    other (and the seed control) with the baseline, names[0]."""
    own = name.removesuffix(" + distribution")
    return own if own != name and own in names else names[0]


def _ablation_table(recipes: dict[str, list[runs.Run]], samples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per recipe (its runs, one per fold; the first recipe is the baseline), ranked by PC on
    its validation faces: test PC, MAE and RMSE; the difference in PC (the one metric claims rest on)
    from its own base (compared_with) on the same test faces, its interval at the family's level
    (Bonferroni over the family's comparisons) and the verdict with Holm's correction over them. With
    one fold that covers the test faces' sampling only, and compares networks; across five folds
    training noise too (Nadeau-Bengio), and compares recipes. The seed control stands outside the
    family: the scale of seed noise. Then time per epoch, peak GPU memory, runtime."""
    names = list(recipes)
    figures = {names[0]: _recipe_figures(names[0], recipes[names[0]], None)}
    figures |= {name: _recipe_figures(name, recipes[name], figures[names[0]]["faces"]) for name in names[1:]}
    family = [name for name in names[1:] if _SEED_CONTROL not in name]
    level = 1 - 0.05 / max(len(family), 1)  # every interval of the family holds, together, 95 % of the time
    compared = {name: _difference(figures[name], figures[_base_of(name, names)], samples, seed, level)
                for name in names[1:]}
    adjusted = dict(zip(family, _holm([compared[name]["p"] for name in family]), strict=True))
    folds = [report["protocol"] for report in figures[names[0]]["reports"]]
    one_fold = len(folds) == 1
    verdict = (f"this network against its base ({folds[0]}, one seed), Holm" if one_fold
               else f"this recipe against its base ({len(folds)} folds, Nadeau-Bengio), Holm")
    interval = (f"Δ{_PRIMARY} [{level:.2%} interval, Bonferroni over {len(family)}]" if one_fold else
                f"Δ{_PRIMARY}, mean [{level:.2%} corrected t-interval, Bonferroni over {len(family)}]")
    rows = {}
    for name, recipe in figures.items():
        stage = recipe["reports"][0]["model"]
        tuned = [record["finetune" if stage == "finetuned" else "frozen"] for record in recipe["records"]]
        seconds = (tuned[0].get("seconds_per_epoch") if stage == "finetuned"  # stage 1: the head's epochs
                   else recipe["records"][0].get("frozen", {}).get("seconds_per_epoch"))
        shown = compared.get(name, {})
        rows[name] = {f"validation {_PRIMARY}": float(np.mean([t["val"][_PRIMARY] for t in tuned])),
                      "stage": runs.stage_words(stage, seconds),
                      **_fold_figures(recipe["reports"]),
                      "compared with": _base_of(name, names) if shown else "",
                      interval: shown.get("interval", "baseline"),
                      verdict: (_direction(shown["difference"], adjusted[name], one_fold) if name in adjusted
                                else "seed noise, outside the family" if shown else "baseline"),
                      **({} if one_fold else {f"smallest Δ{_PRIMARY} found 80 % of the time":
                                              shown.get("detectable")}),
                      "s/epoch": seconds,
                      "peak GPU GB": tuned[0].get("peak_gpu_gb"),
                      "runtime": runs.trained_on(recipe["records"][0])}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.insert(1, "rank on validation", table[f"validation {_PRIMARY}"].rank(ascending=False).astype(int))
    test = "test figures" if one_fold else "test figures: mean ± SD over folds"
    return table.sort_values("rank on validation", kind="stable").rename_axis(
        f"recipe (Δ: minus the recipe it is compared with; {test})")


def ablation_family(table: pd.DataFrame) -> str:
    """The ablation's family of comparisons in words, to print above its table: its size, each
    recipe's base, and the seed control standing apart."""
    family = [f"{name} with {base}" for name, base in table["compared with"].items()
              if base and _SEED_CONTROL not in name]
    seeds = [name for name in table.index if _SEED_CONTROL in name]
    return (f"The family: {len(family)} comparison{'s' * (len(family) != 1)}, each recipe with its own base "
            f"({'; '.join(family)}). Holm's correction and the intervals' level cover them together."
            + (f" {seeds[0]} stands apart: the scale of seed noise, not a claim." if seeds else ""))


def ablation_verdict(table: pd.DataFrame) -> str:
    """What the ablation's table supports, in sentences: which recipe ranks first on validation, what
    differs from its base and how far that claim reaches (networks on one fold, recipes across five),
    what an absence of difference does not show, and the seed noise."""
    verdict = next(column for column in table.columns if column.endswith(", Holm"))
    interval = next(column for column in table.columns if column.startswith(f"Δ{_PRIMARY}"))
    one_fold = verdict.startswith("this network")
    named = [f"{name} against {table.loc[name, 'compared with']}: {table.loc[name, verdict]}"
             for name in table.index if table.loc[name, verdict].startswith(("this network", _PRIMARY))]
    first = table.index[0]
    sentences = [f"On validation, {first} ranks first (PC {table.loc[first, f'validation {_PRIMARY}']:.4f})."]
    if one_fold:
        sentences.append("With one network per recipe on one fold, the table compares trained networks, "
                         "not recipes.")
        sentences.append(f"These networks differ from their base's beyond the sampling of test faces: "
                         f"{'; '.join(named)}." if named else
                         "No network differs from its base's beyond the sampling of test faces.")
        sentences.append("A claim about recipes needs each on all five folds: set ABLATION_ACROSS_FOLDS = "
                         "True in notebook 06 and run its cell again.")
    elif named:
        sentences.append(f"Across the folds, these recipes differ from their base: {'; '.join(named)}. "
                         "Those are claims about recipes: the test covers training noise and test faces.")
    else:
        detectable = table[f"smallest Δ{_PRIMARY} found 80 % of the time"].dropna()
        sentences.append("Across the folds, no recipe's difference from its base is shown. That is not "
                         "evidence that they are equal: with these folds the test finds a true "
                         f"Δ{_PRIMARY} of {detectable.median():.3f} 80 % of the time (the median over "
                         "the comparisons).")
    seeds = [name for name in table.index if _SEED_CONTROL in name]
    if seeds:
        sentences.append(f"{seeds[0]}, which changes nothing but the seed, moves Δ{_PRIMARY} by "
                         f"{table.loc[seeds[0], interval]}: the scale of seed noise, outside the family.")
    return " ".join(sentences)


def results_table(root: Path | None = None) -> pd.DataFrame:
    """Every result the work folder's evaluations hold: each evaluated fold-1 run (one fold, the
    ablation's recipes) and 60/40 run, and each 5-fold protocol done (the mean over its folds, ± SD),
    with its recipe, how its epoch was chosen, and the runtime that fine-tuned it."""
    rows = []
    for folder, record in runs.saved_runs(root):
        run = runs.Run.at(folder)
        protocol, report = record["config"]["protocol"], run.evaluation()
        if report is None or protocol not in ("fold1", "60/40"):
            continue
        figures = [{m: f"{report[m]:.4f}" for m in ("PC", "MAE", "RMSE")} | {"protocol": protocol}]
        reports = [fold.evaluation() for fold in run.folds()]
        if reports and all(reports) and len({r["model"] for r in reports}) == 1:
            summary = evaluation.aggregate_folds(reports)
            figures.append({m: evaluation.with_spread(summary.loc["mean", m], summary.loc["SD", m])
                            for m in ("PC", "MAE", "RMSE")} | {"protocol": "5-fold CV, mean ± SD"})
        head_seconds = record.get("frozen", {}).get("seconds_per_epoch")
        runtime, stage = runs.trained_on(record), runs.stage_words(report["model"], head_seconds)
        for row in figures:
            rows.append({"protocol": row.pop("protocol"), "recipe": runs.describe_settings(record["config"]),
                         "stage": stage,
                         **row, "epoch chosen": evaluation.ON_VALIDATION,
                         "runtime": runtime,
                         "run": folder.name + (" (SMOKE: meaningless)" if record.get("smoke") else "")})
    columns = ["protocol", "recipe", "stage", "PC", "MAE", "RMSE", "epoch chosen", "runtime", "run"]
    return pd.DataFrame(rows, columns=columns).sort_values(["protocol", "recipe"], ignore_index=True)


def as_markdown(table: pd.DataFrame) -> str:
    """A table as GitHub markdown, for the README."""
    lines = [list(table.columns), ["---"] * len(table.columns), *table.astype(str).to_numpy().tolist()]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _project_home() -> str:
    """The project's GitHub owner/name, as the notebooks' set-up cell names it (its one place)."""
    import nbformat

    setup = nbformat.read(environment.NOTEBOOKS / "06_experiments.ipynb", as_version=4).cells[1].source
    return re.search(r'^REPO = "([^"]+)"', setup, re.M).group(1)


def main(argv: list[str] | None = None) -> int:
    """Notebook 06 from a shell, for a GPU machine that outlasts a Colab session: the protocols and the
    ablation on the current run's settings, the results table and the run's bundle; each resumes."""
    parser = argparse.ArgumentParser(prog="python -m fbp.experiments", description=main.__doc__)
    parser.add_argument("--protocol", action="append", choices=["5-fold", "60/40"], default=[],
                        help="a protocol to run (repeat for both)")
    parser.add_argument("--ablation", action="store_true", help="train and compare the ablation's recipes")
    parser.add_argument("--across-folds", action="store_true", help="the ablation on all five folds")
    args = parser.parse_args(argv)
    environment.show_errors_plainly()
    print(environment.describe_runtime())
    data = dataset.find_or_fetch_dataset()
    labels = dataset.validate_dataset(data)
    run = runs.current_run(dataset=dataset.dataset_fingerprint(labels))
    cfg = run.config
    print(run.describe())
    try:
        for protocol in args.protocol:
            print(run_protocol(protocol, cfg, data).to_string())
        if args.ablation:
            table = run_ablation(cfg, data, args.across_folds)
            print(ablation_family(table), table.to_string(), ablation_verdict(table), sep="\n\n")
    except USER_ERRORS as error:
        print(f"{type(error).__name__}: {error}")
        return 1
    print("\nThe results table:\n" + as_markdown(results_table()))
    print(f"Bundle: {bundles.make_bundle(run, _project_home())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
