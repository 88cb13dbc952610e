"""The 60 ratings as a distribution: the shares read from All_Ratings.xlsx, the second head that
learns them, and how notebook 05 puts them in words."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import utils
from fbp import dataset, errors, scoring, synthetic


def test_the_rating_shares_are_each_faces_ratings_and_their_expectation_is_its_score(synthetic_root, work):
    labels = dataset.all_labels(synthetic_root)
    shares = dataset.rating_shares(synthetic_root, labels)
    assert list(shares.columns) == dataset._SHARES and list(shares.index) == list(labels["file"])
    np.testing.assert_allclose(shares.sum(axis=1), 1, rtol=1e-12)
    # the label file's score is the mean of the 60 ratings: the expectation of their shares
    np.testing.assert_allclose(shares.to_numpy() @ np.array(utils.RATINGS), labels["score"], atol=1e-6)
    ratings = utils.read_ratings(synthetic_root)
    first = ratings[ratings["file"] == labels["file"].iloc[0]]["Rating"]
    np.testing.assert_allclose(shares.iloc[0], [np.mean(first == r) for r in utils.RATINGS])
    [kept] = (work / "smoke" if utils.smoke_mode() else work).glob("rating-shares-*.csv")
    np.testing.assert_allclose(dataset.rating_shares(synthetic_root, labels), shares)  # read back
    assert kept.name == f"rating-shares-checked-{utils.dataset_fingerprint(labels)}.csv"


def test_without_all_ratings_a_distribution_run_says_what_to_do(small_root, work):
    labels = dataset.all_labels(small_root)
    with pytest.raises(errors.DatasetLayoutError, match="no All_Ratings.xlsx.*label_distribution=False"):
        dataset.rating_shares(small_root, labels)


def test_the_targets_and_batches_carry_the_shares_when_a_part_has_them(synthetic_root, work):
    labels = dataset.all_labels(synthetic_root)
    parts = utils.add_rating_shares(utils.load_protocol(synthetic_root, "fold1"), synthetic_root, labels)
    test = parts["test"].head(5)
    assert set(utils.targets(test)) == {"score", "distribution"}
    assert set(utils.targets(test.drop(columns=dataset._SHARES))) == {"score"}
    _, targets = next(iter(utils.make_dataset(test, 32, batch_size=5)))
    np.testing.assert_allclose(targets["distribution"], test[dataset._SHARES], rtol=1e-6)
    np.testing.assert_allclose(targets["score"], test["score"], rtol=1e-6)


def test_the_shares_are_put_in_words_largest_first_in_five_percent_steps_with_their_mean():
    said = utils.describe_shares(np.array([0.01, 0.16, 0.54, 0.26, 0.03]))
    assert said == ("of 60 raters like the dataset's, about 55 % would give a 3, 25 % a 4, 15 % a 2 "
                    "and 5 % a 5 (their mean 3.20)")  # of the printed shares: 0.15 x 2 + 0.55 x 3 + ...
    assert utils.describe_shares(np.array([0, 0, 0.99, 0.01, 0])) == \
        "of 60 raters like the dataset's, about 100 % would give a 3 (their mean 3.00)"
    # to the nearest 5 % each would say 35 + 35 + 35 = 105 %
    assert utils.describe_shares(np.array([0.34, 0.33, 0.33, 0, 0])).startswith(
        "of 60 raters like the dataset's, about 35 % would give a 1, 35 % a 2 and 30 % a 3 ")


def test_the_rounded_percentages_add_up_to_100_and_each_is_a_share_rounded_down_or_up():
    rng = np.random.default_rng(0)
    shares = np.concatenate([rng.dirichlet(np.full(5, alpha), 2000) for alpha in (0.3, 1.0, 5.0)])
    shares = shares.astype(np.float32)  # as the model gives them: their sum is 1 only to float32
    percentages = np.array([scoring._percentages_in_steps(s) for s in shares])
    assert (percentages.sum(axis=1) == 100).all() and (percentages % 5 == 0).all()
    exact = 100 * shares / shares.sum(axis=1, keepdims=True)
    assert (np.abs(percentages - exact) < 5).all()
    nearest = 5 * np.round(exact / 5)  # the old rounding, each share alone
    assert (nearest.sum(axis=1) != 100).mean() > 0.2  # which missed 100 often


def face_with_shares(score: float, span: tuple[float, float], shares: list[float]) -> utils.FaceScore:
    """A scored face with only what shares_against_score reads."""
    return utils.FaceScore(face=None, crops=None, scores=None, score=score, span=span,
                           disagreement=None, percentile=50.0, low=40.0, high=60.0,
                           shares=np.array(shares), map=None, crop_score=score, map_scale=1.0)


def test_a_shares_mean_outside_the_crops_span_is_said():
    shares = [0.01, 0.16, 0.54, 0.26, 0.03]  # printed as 15, 55, 25 and 5 %: their mean 3.20
    assert utils.shares_against_score(face_with_shares(3.22, (3.19, 3.25), shares)) == ""
    assert utils.shares_against_score(face_with_shares(3.17, (3.14, 3.199), shares)) == ""  # 3.20 as printed
    assert utils.shares_against_score(face_with_shares(3.26, (3.23, 3.29), shares)) == (
        " Their mean is outside the span of the crops' scores, 3.23 to 3.29: two heads of the model "
        "give the shares and the score, and they need not agree.")


# --- the shares checked against the labels ---------------------------------------------------


@pytest.fixture
def rated_root(tmp_path) -> Path:
    """A 60-image synthetic dataset with All_Ratings.xlsx as data/synthetic.py writes it, free to damage."""
    return synthetic.make_synthetic_dataset(tmp_path / "rated", n=60, image_size=48)


def change_ratings(root: Path, change) -> pd.DataFrame:
    """Rewrite the dataset's All_Ratings.xlsx as change(sheet) returns it; that sheet."""
    sheet = change(pd.read_excel(root / "All_Ratings.xlsx"))
    sheet.to_excel(root / "All_Ratings.xlsx", index=False)
    return sheet


def test_shares_whose_mean_is_not_the_label_are_refused_naming_the_face_with_both_numbers(rated_root, work):
    labels = dataset.all_labels(rated_root)
    score = labels.set_index("file").loc["AF3.jpg", "score"]

    def one_point_more(sheet):  # one rater of AF3 gives one point more (or less, at the top)
        row = sheet.index[sheet["Filename"] == "AF3.jpg"][0]
        sheet.loc[row, "Rating"] += 1 if sheet.loc[row, "Rating"] < 5 else -1
        return sheet

    sheet = change_ratings(rated_root, one_point_more)
    mean = sheet[sheet["Filename"] == "AF3.jpg"]["Rating"].mean()
    assert abs(mean - score) == pytest.approx(1 / 60)
    with pytest.raises(errors.DatasetLayoutError, match=(
            rf"disagrees with the label files on 1 face\(s\).*AF3\.jpg: its ratings average {mean:.4f}, its "
            rf"label says {score:.4f}\).*Replace All_Ratings.xlsx.*label_distribution=False")):
        dataset.rating_shares(rated_root, labels)
    assert not list(work.rglob("rating-shares-*"))  # nothing kept to train on later


OFF_SCALE = "off the scale of whole points from 1 to 5: rater 7 gave CM2\\.jpg"  # what the messages say
NO_NUMBER = "that are not numbers"


@pytest.mark.parametrize(("given", "said"), [
    (6, rf"{OFF_SCALE} 6\. Replace All_Ratings.xlsx"), (0, rf"{OFF_SCALE} 0\. Replace All_Ratings.xlsx"),
    (2.5, rf"{OFF_SCALE} 2\.5\. Replace All_Ratings.xlsx"),
    (None, rf"{NO_NUMBER}: rater 7 on CM2\.jpg: blank\. Replace it"),
    ("four", rf"{NO_NUMBER}: rater 7 on CM2\.jpg: 'four'\. Replace it")])
def test_a_bad_rating_is_refused_naming_the_rater_and_face(rated_root, work, given, said):
    labels = dataset.all_labels(rated_root)

    def one_bad_rating(sheet):
        sheet["Rating"] = sheet["Rating"].astype(object)
        sheet.loc[(sheet["Filename"] == "CM2.jpg") & (sheet["Rater"] == 7), "Rating"] = given
        return sheet

    change_ratings(rated_root, one_bad_rating)
    with pytest.raises(errors.DatasetLayoutError, match=rf"holds 1 rating\(s\) {said}"):
        dataset.rating_shares(rated_root, labels)


def test_the_rating_column_is_read_not_the_original_rating(rated_root, work):
    labels = dataset.all_labels(rated_root)
    change_ratings(rated_root, lambda sheet: sheet.assign(**{"original Rating": 6 - sheet["Rating"]}))
    shares = dataset.rating_shares(rated_root, labels)
    np.testing.assert_allclose(shares.to_numpy() @ np.array(utils.RATINGS), labels["score"], atol=1e-6)


def test_a_shares_file_kept_before_the_check_existed_is_not_read(rated_root, work):
    labels = dataset.all_labels(rated_root)
    change_ratings(rated_root, lambda sheet: sheet.assign(Rating=sheet["Rating"].replace(5, 6)))
    # what the unchecked code kept: the 6s dropped, the other ratings' shares renormalised
    old = work / f"rating-shares-{utils.dataset_fingerprint(labels)}.csv"
    old.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(0.2, index=pd.Index(labels["file"], name="file"), columns=dataset._SHARES).to_csv(old)
    with pytest.raises(errors.DatasetLayoutError, match="off the scale of whole points"):
        dataset.rating_shares(rated_root, labels)


RELEASE_LABELS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "scut-fbp5500-labels-2018"


@pytest.mark.skipif(not RELEASE_LABELS.is_dir(), reason="the release's 2018 label files are not there")
def test_every_label_of_the_release_is_a_mean_of_60_whole_ratings():
    # so the shares of 60 whole ratings can match each label within 1e-4 (labels have 6 decimals)
    scores = dataset._read_labels(RELEASE_LABELS / "SCUT-FBP5500.txt")["score"].to_numpy()
    assert len(scores) == 5500
    np.testing.assert_allclose(scores, np.round(scores * 60) / 60, rtol=0, atol=1e-6)

