"""The 60 ratings as a distribution: the shares read from All_Ratings.xlsx, the second head that
learns them, and how notebook 05 puts them in words."""

import numpy as np
import pytest

import utils


def test_the_rating_shares_are_each_faces_ratings_and_their_expectation_is_its_score(synthetic_root, work):
    labels = utils.all_labels(synthetic_root)
    shares = utils.rating_shares(synthetic_root, labels)
    assert list(shares.columns) == utils.SHARES and list(shares.index) == list(labels["file"])
    np.testing.assert_allclose(shares.sum(axis=1), 1, rtol=1e-12)
    # the label file's score is the mean of the 60 ratings: the expectation of their shares
    np.testing.assert_allclose(shares.to_numpy() @ np.array(utils.RATINGS), labels["score"], atol=1e-6)
    ratings = utils.read_ratings(synthetic_root)
    first = ratings[ratings["file"] == labels["file"].iloc[0]]["Rating"]
    np.testing.assert_allclose(shares.iloc[0], [np.mean(first == r) for r in utils.RATINGS])
    [kept] = (work / "smoke" if utils.smoke_mode() else work).glob("rating-shares-*.csv")
    np.testing.assert_allclose(utils.rating_shares(synthetic_root, labels), shares)  # read back
    assert kept.name == f"rating-shares-{utils.dataset_fingerprint(labels)}.csv"


def test_without_all_ratings_a_distribution_run_says_what_to_do(small_root, work):
    labels = utils.all_labels(small_root)
    with pytest.raises(utils.DatasetLayoutError, match="no All_Ratings.xlsx.*label_distribution=False"):
        utils.rating_shares(small_root, labels)


def test_the_targets_and_batches_carry_the_shares_when_a_part_has_them(synthetic_root, work):
    labels = utils.all_labels(synthetic_root)
    parts = utils.add_rating_shares(utils.load_protocol(synthetic_root, "fold1"), synthetic_root, labels)
    test = parts["test"].head(5)
    assert set(utils.targets(test)) == {"score", "distribution"}
    assert set(utils.targets(test.drop(columns=utils.SHARES))) == {"score"}
    _, targets = next(iter(utils.make_dataset(test, 32, batch_size=5)))
    np.testing.assert_allclose(targets["distribution"], test[utils.SHARES], rtol=1e-6)
    np.testing.assert_allclose(targets["score"], test["score"], rtol=1e-6)


def test_the_shares_are_put_in_words_largest_first_to_the_nearest_five_percent():
    said = utils.describe_shares(np.array([0.01, 0.16, 0.54, 0.26, 0.03]))
    assert said == ("of 60 raters like the dataset's, about 55 % would give a 3, 25 % a 4, 15 % a 2 "
                    "and 5 % a 5")
    assert utils.describe_shares(np.array([0, 0, 0.99, 0.01, 0])) == \
        "of 60 raters like the dataset's, about 100 % would give a 3"
