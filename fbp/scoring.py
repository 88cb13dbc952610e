"""Scoring a face with a run's model or its five fold models: the score and its spread, its
percentile among the dataset's faces with a range, and the raters' shares in words."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from fbp import dataset, evaluation, faces, network, runs

# What a score is and is not, and the terms its model comes with: the model card's words (bundles) and
# the phone page's (web), one source.
WHAT_IT_PREDICTS = (
    f"The mean 1-5 rating that the {dataset.RATERS} raters of SCUT-FBP5500 (aged 18-27, at one Chinese "
    "university) would give a face, in a photo framed like the dataset's: frontal, neutral, evenly lit. It "
    "is the average taste of that one panel, not a measure of anyone's worth, and a different photo of the "
    "same face changes it. The dataset is mostly Asian faces.")
LICENCE = (f"SCUT-FBP5500 is for non-commercial research use only ({dataset.DATASET_HOME}). This model was "
           "trained on it, and those terms travel with it: no commercial use.")


def accuracy_note(run: runs.Run) -> str:
    """How far off the models that score in notebook 05 are: once the 5-fold protocol's models score
    and each is evaluated, their mean test figures across folds; else this run's test figures if
    evaluated, else the paper's, so labelled."""
    reports = [fold.evaluation() for fold in run.scoring_folds()]
    if reports and all(reports):
        return _folds_accuracy_note(reports)
    report = run.evaluation()
    if report:
        return (f"This run's {runs.MODEL_STAGES[report['model']]} model on its {report['n']:,} test faces "
                f"({report['protocol']}, from its evaluation.json): MAE {report['MAE']:.2f} and RMSE "
                f"{report['RMSE']:.2f} score points, PC {report['PC']:.3f}.")
    paper = evaluation.PUBLISHED.set_index(["protocol", "model"]).loc[("5-fold CV, mean", "ResNeXt-50")]
    return (f"This run's model: {run.why_not_evaluated()}. For scale only, the paper's "
            f"ResNeXt-50 errs by MAE {paper['MAE']:.2f} and RMSE {paper['RMSE']:.2f} score points "
            "(the paper's figures, 5-fold mean, not this model's).")


def _folds_accuracy_note(reports: list[dict]) -> str:
    """The fold models' test figures (each on its own fold's test faces) as mean ± SD across the folds."""
    table = evaluation.aggregate_folds(reports)
    mean, sd = table.loc["mean"], table.loc["SD"]
    return (f"The {len(reports)} fold models that score here, each on its own fold's "
            f"{_count_span([r['n'] for r in reports])} test faces: MAE {mean['MAE']:.2f} ± {sd['MAE']:.2f} "
            f"and RMSE {mean['RMSE']:.2f} ± {sd['RMSE']:.2f} score points, PC {mean['PC']:.3f} ± "
            f"{sd['PC']:.3f}. Each figure is the mean ± SD across the folds, from their evaluation.json. "
            "Their mean, which 05 prints, has no held-out faces left to be measured on: every dataset "
            "face helped train some of them.")


@dataclass(frozen=True)
class _Scorer:
    """A model that scores faces, and the reference that places its scores: the faces its run held out."""

    name: str
    model: keras.Model
    reference: runs.Reference


def scoring_runs(run: runs.Run) -> list[tuple[runs.Run, runs.Reference]]:
    """The runs whose models notebook 05 scores with, each with the reference that places its scores:
    after the 5-fold protocol its five folds, each with its own fold's test predictions; else the run
    and its reference."""
    folds = run.scoring_folds()
    if not folds:
        return [(run, run.reference())]
    return [(fold, fold.reference(out_of_fold=False)) for fold in folds]


def describe_models(run: runs.Run) -> str:
    """The models notebook 05 scores with, in words: the run in a line, and after the 5-fold protocol,
    that its fold models score."""
    folds = run.scoring_folds()
    return (f"{run.describe()} {_folds_note(run, len(folds))}" if folds else run.describe())


def _folds_note(run: runs.Run, count: int) -> str:
    """That the fold models of a run's 5-fold protocol score, in a sentence."""
    return (f"The 5-fold protocol of these settings is done: scoring with the "
            f"{runs.MODEL_STAGES[run.final]} models of its {count} folds.")


def scorers(run: runs.Run) -> list[_Scorer]:
    """The models notebook 05 scores with (scoring_runs), each loaded, with its reference."""
    scoring = scoring_runs(run)
    if len(scoring) > 1:
        print(_folds_note(run, len(scoring)))
    return [_Scorer(each.name, network.load_model(each.model_path()), reference)
            for each, reference in scoring]


def describe_references(scorers: list[_Scorer]) -> str:
    """How notebook 05 turns a score into 'more attractive than X %' with its scorers, in words
    (references_in_words)."""
    return references_in_words([scorer.reference for scorer in scorers])


def references_in_words(references: list[runs.Reference]) -> str:
    """How a score becomes 'more attractive than X %' with these references (a model's each), in words:
    one model's place among its reference, or with several fold models the mean of each one's place
    among its own fold's."""
    sizes = [len(reference.predicted) for reference in references]
    if len(references) == 1:
        place = (f"Percentiles are a score's place among {references[0].source}, which the model "
                 "never trained on; the range beside one holds")
    else:
        place = (f"Percentiles are the mean of {len(references)} places: each fold model's score placed "
                 f"among its own fold's {_count_span(sizes)} test faces, which it never trained on. The "
                 f"range beside one is the mean of their {len(references)} ranges; each holds")
    return (f"{place}, 8 times in 10, the raters' place for such a face. A straight line fitted to those "
            "faces foretells the raters' score from the model's. The range is the foretold score plus the "
            "10th to 90th percentile of the line's misses on the "
            f"{_count_span([_neighbour_count(n) for n in sizes])} of them with the nearest predictions.")


def _count_span(counts: list[int]) -> str:
    """Counts in words: '1,100' when all are equal, else '1,099 to 1,101'."""
    low, high = min(counts), max(counts)
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


@dataclass(frozen=True)
class FaceScore:
    """What every model made of one face: what notebook 05 prints and draws for it."""

    face: faces.PhotoFace
    crops: np.ndarray          # the six crops (uint8): three alignments, then their mirrors
    scores: np.ndarray         # per model, a row of the six crops' scores
    score: float               # the mean of them all, kept on the 1-5 scale
    span: tuple[float, float]  # the six crops' lowest and highest scores: crops_span
    disagreement: float | None  # models_disagreement: None with one model
    percentile: float          # "more attractive than X %": the mean of the models' own places
    low: float                 # and of the ranges that hold the raters' place 8 times in 10
    high: float
    shares: np.ndarray | None  # the raters' shares of 1-5, mean over crops and models; None without that head
    map: np.ndarray | None     # the first crop's contribution map, mean over the models (score points);
                               # None for a backbone without one (NO_MAP says why)
    crop_score: float          # the first crop's score, mean over the models
    map_scale: float | None    # the maps' colour scale, mean over the models


def score_face(face: faces.PhotoFace, crops: np.ndarray, outputs: list[dict],
               scorers: list[_Scorer]) -> FaceScore:
    """A face's result from every model's outputs for its crops (predict_on_batch's, in the order of
    scorers): its score, its crops' span and the models' disagreement; each model's mean score placed
    among that model's own reference (its held-out faces), the places averaged; the shares; the first
    crop's map, averaged."""
    scores = np.stack([np.asarray(out["score"], dtype=float)[:, 0] for out in outputs])
    places = [calibrated_percentile(float(np.clip(row.mean(), 1, 5)), scorer.reference)
              for row, scorer in zip(scores, scorers, strict=True)]
    percentile, low, high = np.mean(places, axis=0)
    shares = None if "distribution" not in outputs[0] else np.mean([out["distribution"] for out in outputs],
                                                                    axis=(0, 1))
    first_map, crop_score, map_scale = None, float(scores[:, 0].mean()), None
    if scorers[0].reference.map_scale is not None:  # a backbone with maps (the fold models share one)
        made = [network.contribution_maps(scorer.model, crops[:1], scorer.reference.mean_features)
                for scorer in scorers]
        first_map = np.mean([maps[0] for _, maps in made], axis=0)
        crop_score = float(np.mean([first[0] for first, _ in made]))
        map_scale = float(np.mean([scorer.reference.map_scale for scorer in scorers]))
    return FaceScore(face, crops, scores, score=float(np.clip(scores.mean(), 1, 5)),
                     span=_crops_span(scores), disagreement=_models_disagreement(scores),
                     percentile=float(percentile), low=float(low), high=float(high), shares=shares,
                     map=first_map, crop_score=crop_score, map_scale=map_scale)


# Why notebook 05 draws no map for a keras-hub backbone, in one sentence.
NO_MAP = ("this backbone's feature is its class token or an attention-pooled embedding, not an average of "
          "image cells, so no map splits its score exactly, and none is drawn.")


def _crops_span(scores: np.ndarray) -> tuple[float, float]:
    """How far a face's score moves when the face is shifted by 1.5 px or mirrored (a row per model of
    its six crops' scores): the lowest and highest of the six crops' scores, each first averaged over
    the models, so that the models' offsets from each other, which every photo shares, stay out of it.
    Not a confidence interval."""
    crops = np.mean(scores, axis=0)
    return float(crops.min()), float(crops.max())


def _models_disagreement(scores: np.ndarray) -> float | None:
    """The SD of the models' scores of a face (a row per model of its six crops' scores), each the
    mean of its row; None for one model."""
    return float(np.std(np.mean(scores, axis=1), ddof=1)) if len(scores) > 1 else None


def describe_shares(shares: np.ndarray) -> str:
    """Predicted shares of raters per rating (1-5) in words, largest first, in 5 % steps that add up
    to 100, with their mean, e.g. "of 60 raters like the dataset's, about 55 % would give a 3, 25 % a 4
    and 20 % a 2 (their mean 3.05)"."""
    rounded = dict(zip(dataset.RATINGS, _percentages_in_steps(shares), strict=True))
    named = [f"{percent} % a {rating}" for rating, percent in sorted(rounded.items(), key=lambda r: -r[1])
             if percent > 0]
    named[0] = named[0].replace(" a ", " would give a ", 1)
    listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    return (f"of {dataset.RATERS} raters like the dataset's, about {listed} "
            f"(their mean {_shares_mean(shares):.2f})")


def _percentages_in_steps(shares: np.ndarray, step: int = 5) -> np.ndarray:
    """Shares as percentages in whole steps that add up to 100: each rounded down to a step, then the
    steps left over given to the largest remainders (the lower rating first on a tie)."""
    units = np.asarray(shares, float) / np.sum(shares) * (100 // step)
    steps = np.floor(units).astype(int)
    steps[np.argsort(steps - units, kind="stable")[:100 // step - steps.sum()]] += 1
    return step * steps


def _shares_mean(shares: np.ndarray) -> float:
    """The mean rating of shares of raters per rating (1-5) as describe_shares prints them (in 5 %
    steps), so that a reader can check it."""
    return float(_percentages_in_steps(shares) @ np.array(dataset.RATINGS) / 100)


def shares_against_score(result: FaceScore) -> str:
    """A sentence when the mean of a face's predicted shares (as printed) lies outside its crops' span
    (as printed, to two decimals), else ''."""
    mean, (low, high) = round(_shares_mean(result.shares), 2), (round(end, 2) for end in result.span)
    if low <= mean <= high:
        return ""
    return (f" Their mean is outside the span of the crops' scores, {low:.2f} to {high:.2f}: two heads of "
            "the model give the shares and the score, and they need not agree.")


def _neighbour_count(n: int) -> int:
    """How many reference faces with the nearest predictions give a percentile's range its spread."""
    return min(n, max(20, n // 10))


def calibrated_percentile(score: float, reference: runs.Reference) -> tuple[float, float, float]:
    """'More attractive than X %' among the model's own out-of-sample predictions, and a likely range."""
    # Against true scores a prediction (pulled toward the mean) would put everyone in the middle.
    # The range: the raters' score the line fitted to the reference foretells, plus the 10th and
    # 90th percentiles of the line's misses on the faces predicted nearest, ranked among the
    # raters' scores. Misses, not the scores themselves: at the ends of the ranking the nearest
    # faces all lie on one side of the score, and their scores would pull the range inward.
    from scipy import stats

    order = np.argsort(reference.predicted, kind="stable")
    predicted, true = reference.predicted[order], reference.true[order]
    line = stats.linregress(predicted, true)
    misses = true - (line.intercept + line.slope * predicted)
    count = _neighbour_count(len(order))
    start = int(np.clip(np.searchsorted(predicted, score) - count // 2, 0, len(order) - count))
    foretold = line.intercept + line.slope * score + np.percentile(misses[start:start + count], [10, 90])
    low, high = (dataset.percentile_of(value, reference.true) for value in foretold)
    return dataset.percentile_of(score, reference.predicted), low, high
