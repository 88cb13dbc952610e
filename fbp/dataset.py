"""The SCUT-FBP5500 release: finding or downloading it, checking its labels, the paper's protocols
(five 80/20 folds and 60/40), the raters' ratings and shares, and the tf.data pipelines."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from fbp import environment
from fbp.errors import (
    BadZipError,
    CorruptImageError,
    DatasetError,
    DatasetLayoutError,
    DownloadRefusedError,
    LabelFormatError,
    MissingImagesError,
    ScoreRangeError,
)

_GDRIVE_FILE_ID = "1w0TorBfTIqbquQVd6k3h_77ypnrvfGwf"


_ZIP_NAME = "SCUT-FBP5500_v2.1.zip"


DATASET_HOME = "https://github.com/HCIILAB/SCUT-FBP5500-Database-Release"  # its licence and paper


_DATASET_DIRNAME = "SCUT-FBP5500_v2"


_GROUPS = ("AF", "AM", "CF", "CM")


GROUP_NAMES = {"AF": "Asian female", "AM": "Asian male",
               "CF": "Caucasian female", "CM": "Caucasian male"}


_OLD_PREFIXES = {"fty": "AF", "mty": "AM", "ftw": "CF", "mtw": "CM"}


FOLDS = ("fold1", "fold2", "fold3", "fold4", "fold5")  # the 5-fold protocol's folds


PROTOCOLS = (*FOLDS, "60/40")


_NAME_PATTERN = re.compile(r"^(AF|AM|CF|CM|fty|mty|ftw|mtw)(\d+)\.jpg$")


def _own_copy_help() -> str:
    """Where to put a copy of the zip that the user got by other means, for this place only."""
    if environment.in_colab():
        return (f"Download the zip yourself (or from the dataset's Baidu mirror) and upload it to "
                f"{environment.COLAB_CONTENT / _ZIP_NAME} (Files pane, left) or to 'My Drive' as {_ZIP_NAME}")
    return (f"Download the zip yourself (or from the dataset's Baidu mirror) and put it in "
            f"{environment.LOCAL_DATA_DIR / _ZIP_NAME}")


def _refused_download_help(reason: str) -> str:
    """The message shown when Google Drive will not serve the zip, with the two ways out."""
    return (
        f"Google Drive did not hand over the SCUT-FBP5500 zip ({reason}).\n"
        "Busy shared files are often refused ('too many users have viewed or downloaded "
        "this file'). Two ways out:\n"
        f"  1. Open https://drive.google.com/file/d/{_GDRIVE_FILE_ID}/view, add the file to "
        f"your own Drive (right-click > Make a copy) and name it {_ZIP_NAME} in 'My Drive'"
        f"{'' if environment.in_colab() else f', download it from there into {environment.LOCAL_DATA_DIR}'}; "
        "then re-run this cell: the notebook finds it there.\n"
        f"  2. {_own_copy_help()}; then re-run this cell."
    )


def _no_connection_help() -> str:
    """The message shown when Google Drive cannot be reached at all."""
    return ("No connection: Google Drive (drive.google.com) could not be reached, so the "
            "SCUT-FBP5500 zip cannot be downloaded. Check that this machine is online and re-run "
            f"this cell. Without a connection: {_own_copy_help()}; then re-run this cell.")


def _is_connection_error(error: BaseException) -> bool:
    """True when an error (or one it was raised from) means the network could not be reached."""
    import requests

    while error is not None:
        if isinstance(error, requests.ConnectionError | requests.Timeout | ConnectionError):
            return True
        error = error.__cause__ or error.__context__
    return False


def is_html_file(path: Path) -> bool:
    """True when a downloaded file is a web page, not a zip."""
    with open(path, "rb") as file:
        head = file.read(2048).lstrip().lower()  # the first bytes tell: a bundle may be gigabytes
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def _check_zip(path: Path) -> None:
    """Raise if the file is not a whole, readable zip."""
    path = Path(path)
    if is_html_file(path):
        raise DownloadRefusedError(_refused_download_help(f"{path.name} is a web page, not a zip"))
    if not zipfile.is_zipfile(path):
        raise BadZipError(f"{path} is not a zip file (truncated download?). Delete it and re-run.")
    with zipfile.ZipFile(path) as archive:
        broken = archive.testzip()
    if broken:
        raise BadZipError(f"{path} is damaged ({broken} fails its checksum). Delete it and re-run.")


def safe_extract(zip_path: Path, target: Path) -> Path:
    """Extract a zip into target, all or nothing: into a staging folder, then moved into place
    (zipfile itself keeps members inside: it drops '..' and leading '/' from their names)."""
    zip_path, target = Path(zip_path), Path(target)
    _check_zip(zip_path)
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".partial-{zip_path.stem}"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(staging)
    for item in staging.iterdir():
        destination = target / item.name
        if destination.is_dir():
            shutil.rmtree(destination)
        item.replace(destination)
    staging.rmdir()
    return target


def _download_zip(destination: Path, file_id: str = _GDRIVE_FILE_ID) -> Path:
    """Download the release zip from Google Drive with a progress bar (gdown writes a temporary
    file and moves it into place when whole; a cut download resumes); check it is a zip."""
    import gdown

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        gdown.download(url=f"https://drive.google.com/uc?id={file_id}", output=str(destination), quiet=False,
                       resume=True)
    except Exception as error:  # gdown raises several types for quota, network and HTML pages
        if _is_connection_error(error):
            raise DownloadRefusedError(_no_connection_help()) from None
        raise DownloadRefusedError(_refused_download_help(str(error).splitlines()[0])) from error
    if not destination.is_file():
        raise DownloadRefusedError(_refused_download_help("nothing was written"))
    try:
        _check_zip(destination)
    except DatasetError:
        destination.unlink()
        raise
    return destination


def _zip_candidates() -> list[Path]:
    """Places where a copy of the release zip may already be: the cache, the user's Drive, uploads."""
    places = [environment.work_dir() / _ZIP_NAME, environment.DRIVE_HOME / _ZIP_NAME,
              environment.COLAB_CONTENT / _ZIP_NAME,
              environment.LOCAL_DATA_DIR / _ZIP_NAME]
    return list(dict.fromkeys(places))


def _find_dataset_root(path: Path) -> Path:
    """The folder holding Images/ and train_test_files/: path itself or one level below."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DatasetLayoutError(f"{path} does not exist or is not a folder. Point FBP_DATA_DIR "
                                 f"at the extracted {_DATASET_DIRNAME} folder.")
    for candidate in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
        if (candidate / "Images").is_dir() and (candidate / "train_test_files").is_dir():
            return candidate
    found = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
    raise DatasetLayoutError(
        f"{path} is not laid out like SCUT-FBP5500: expected Images/ and train_test_files/ "
        f"in it or in a folder inside it, found {found}. Point FBP_DATA_DIR at the extracted "
        f"{_DATASET_DIRNAME} folder.")


def _extracted_dataset(parent: Path) -> Path | None:
    """The release extracted below parent, or None; a folder that lacks label files or images (an
    unzip by hand cut short) is removed, to be extracted again."""
    folder = Path(parent) / _DATASET_DIRNAME
    if not folder.is_dir():
        return None
    try:
        root = _find_dataset_root(folder)
        all_labels(root)
    except DatasetError:
        print(f"{folder} is not completely extracted (an interrupted unzip?): extracting it again.")
        shutil.rmtree(folder)
        return None
    return root


def find_or_fetch_dataset() -> Path:
    """Locate the dataset: FBP_DATA_DIR, smoke data, a local copy, a cached zip, or download it."""
    if os.environ.get("FBP_DATA_DIR"):
        return _find_dataset_root(Path(os.environ["FBP_DATA_DIR"]))
    if environment.smoke_mode():
        from fbp.synthetic import make_synthetic_dataset

        return make_synthetic_dataset(environment.work_dir() / "synthetic")
    local = _extracted_dataset(environment.LOCAL_DATA_DIR)
    if local:
        return local
    zip_path = next((p for p in _zip_candidates() if p.is_file()), None)
    if zip_path is None:
        zip_path = _download_zip(environment.LOCAL_DATA_DIR / _ZIP_NAME)
    print(f"Extracting {zip_path} to {environment.LOCAL_DATA_DIR} ...")
    safe_extract(zip_path, environment.LOCAL_DATA_DIR)
    cache = environment.work_dir() / _ZIP_NAME
    if not cache.exists():
        shutil.copyfile(zip_path, cache)
        print(f"Kept a copy of the zip in {cache}: next time nothing is downloaded.")
    root = _extracted_dataset(environment.LOCAL_DATA_DIR)
    if root is None:
        raise DatasetLayoutError(f"{zip_path} holds no {_DATASET_DIRNAME} folder. Is it the "
                                 "SCUT-FBP5500 release? Delete it and re-run.")
    return root


def _canonical_name(name: str) -> str:
    """The current release's name for an image: 'fty12.jpg' -> 'AF12.jpg'."""
    match = _NAME_PATTERN.match(name)
    if not match:
        raise ValueError(f"'{name}' is not a SCUT-FBP5500 image name like AF1.jpg or fty1.jpg")
    prefix, number = match.groups()
    return f"{_OLD_PREFIXES.get(prefix, prefix)}{number}.jpg"


def _old_name(name: str) -> str:
    """The 2018 release's name of an image: 'AF12.jpg' -> 'fty12.jpg'."""
    new_to_old = {v: k for k, v in _OLD_PREFIXES.items()}
    return new_to_old[name[:2]] + name[2:]


def _read_labels(path: Path) -> pd.DataFrame:
    """Read a label file ('<file name> <score>' per line) of either release, checked line by line."""
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            name, score = _canonical_name(parts[0]), float(parts[1])
            if len(parts) != 2:
                raise ValueError
        except (ValueError, IndexError):
            raise LabelFormatError(f"{path}, line {number}: expected '<file name> <score>' "
                                   f"like 'AF1.jpg 2.883333', found {line!r}") from None
        if not 1.0 <= score <= 5.0:
            raise ScoreRangeError(f"{path}, line {number}: score {score} is outside the "
                                  "rating scale 1-5")
        rows.append((name, parts[0], score))
    if not rows:
        raise LabelFormatError(f"{path} holds no labels")
    frame = pd.DataFrame(rows, columns=["file", "original_name", "score"])
    frame["group"] = frame["file"].str[:2]  # AF, AM, CF or CM
    return frame


def protocol_files(root: Path, protocol: str) -> tuple[Path, Path]:
    """The (train, test) label files of a protocol: 'fold1'..'fold5' or '60/40'."""
    split_dir = Path(root) / "train_test_files"
    if protocol == "60/40":
        folders = sorted(split_dir.glob("split_of_60*"))
        names = ("train.txt", "test.txt")
    elif protocol in PROTOCOLS:
        k = protocol[-1]
        folders = sorted(split_dir.glob(f"*/cross_validation_{k}"))
        names = (f"train_{k}.txt", f"test_{k}.txt")
    else:
        raise ValueError(f"Unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if not folders or not all((folders[0] / n).is_file() for n in names):
        raise DatasetLayoutError(f"The label files of protocol {protocol} ({' and '.join(names)}) "
                                 f"are not in {split_dir}. Is the release complete?")
    return folders[0] / names[0], folders[0] / names[1]


def _locate_images(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The labels with each image's path; raises naming the images that are missing."""
    images = Path(root) / "Images"
    on_disk = {p.name for p in images.iterdir()}
    names = [f if f in on_disk else _old_name(f) for f in frame["file"]]
    missing = [f for f, n in zip(frame["file"], names, strict=True) if n not in on_disk]
    if missing:
        raise MissingImagesError(
            f"{len(missing)} image(s) named in the label files are missing from {images}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}. "
            "Re-extract the dataset (delete the folder and re-run) or fix FBP_DATA_DIR.")
    return frame.assign(path=[str(images / n) for n in names])


def load_protocol(root: Path, protocol: str = "fold1", val_fraction: float = 0.1,
                  seed: int = 0) -> dict[str, pd.DataFrame]:
    """The train, val and test parts of a protocol; val is carved from train, never from test."""
    train_file, test_file = protocol_files(root, protocol)
    train, test = _read_labels(train_file), _read_labels(test_file)
    overlap = set(train["file"]) & set(test["file"])
    if overlap:
        raise DatasetLayoutError(f"{len(overlap)} image(s) are both in {train_file.name} and "
                                 f"{test_file.name}, e.g. {min(overlap)}")
    val_mask = _validation_mask(train, val_fraction, seed)
    parts = {"train": train[~val_mask], "val": train[val_mask], "test": test}
    for name, part in parts.items():
        parts[name] = _locate_images(root, part.sort_values("file", key=_natural_key).reset_index(drop=True))
    return parts


def _natural_key(names: pd.Series) -> pd.Series:
    """Sort key putting AF2 before AF10."""
    return names.map(lambda n: (n[:2], int(re.sub(r"\D", "", n) or 0)))


def _validation_mask(train: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """A deterministic validation subset of train, the same fraction from each group."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(train), dtype=bool)
    for _, rows in train.sort_values("file").groupby("group"):
        chosen = rng.permutation(rows.index.to_numpy())[: round(len(rows) * fraction)]
        mask[train.index.get_indexer(chosen)] = True
    return mask


def all_labels(root: Path) -> pd.DataFrame:
    """Every labelled image of the release (the union of fold 1's train and test files), with its
    path and size in bytes (what the dataset's fingerprint is made of)."""
    parts = [_read_labels(p) for p in protocol_files(root, "fold1")]
    labels = pd.concat(parts).sort_values("file", key=_natural_key).reset_index(drop=True)
    labels = _locate_images(root, labels)
    return labels.assign(bytes=[os.path.getsize(p) for p in labels["path"]])


def dataset_fingerprint(frame: pd.DataFrame) -> str:
    """A hash of the image names, sizes and scores (of labels as all_labels gives them)."""
    text = "".join(f"{f}:{n}:{s:.6f};" for f, n, s in zip(frame["file"], frame["bytes"], frame["score"],
                                                         strict=True))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _verify_images(paths: list[str], workers: int = 8) -> None:
    """Decode every image once (in threads, with a bar); raise naming the files that cannot be decoded."""
    from PIL import Image
    from tqdm.contrib.concurrent import thread_map

    def broken(path: str) -> str | None:
        try:
            with Image.open(path) as image:
                image.load()
            return None
        except Exception as error:
            return f"{Path(path).name} ({type(error).__name__}: {error})"

    bad = [r for r in thread_map(broken, paths, max_workers=workers, desc="checking images") if r]
    if bad:
        raise CorruptImageError(f"{len(bad)} image(s) cannot be decoded: {'; '.join(bad[:5])}. "
                                "Re-extract the dataset (delete the folder and re-run).")


def validate_dataset(root: Path) -> pd.DataFrame:
    """Check labels, images and every protocol before anything trains; return all labels."""
    labels = all_labels(root)
    for protocol in PROTOCOLS:
        load_protocol(root, protocol)
    stamp = Path(root) / ".verified.json"
    fingerprint = {"images": len(labels), "bytes": int(labels["bytes"].sum())}
    if not stamp.is_file() or json.loads(stamp.read_text()) != fingerprint:
        _verify_images(labels["path"].tolist())
        try:
            stamp.write_text(json.dumps(fingerprint))
        except OSError:
            pass  # a read-only dataset folder is checked again next time, nothing worse
    return labels


def percentile_of(score: float, scores: np.ndarray) -> float:
    """Share (in %) of the scores strictly below a score: 'more attractive than X %'."""
    from scipy import stats

    return float(stats.percentileofscore(np.asarray(scores, dtype=float), score, kind="strict"))


RATERS = 60


def read_ratings(root: Path) -> pd.DataFrame | None:
    """Each image's rating by each of the 60 raters (Rater, file, Rating), or None without the file."""
    path = Path(root) / "All_Ratings.xlsx"
    if not path.is_file():
        return None
    expected = set(all_labels(root)["file"])
    workbook = pd.read_excel(path, sheet_name=None)
    sheets = [s for s in map(_rating_columns, workbook.values()) if s is not None]
    ratings = next((s for s in sheets if _ratings_complete(s, expected)), None)
    if ratings is None and sheets:
        ratings = pd.concat(sheets).drop_duplicates(["Rater", "file"])
    if ratings is None or not _ratings_complete(ratings, expected):
        found = (f"{ratings['file'].nunique()} images and {ratings['Rater'].nunique()} raters in "
                 f"{len(ratings)} ratings" if ratings is not None
                 else "no sheet with the columns Rater, Filename and Rating")
        raise DatasetLayoutError(
            f"{path.name}: expected the dataset's {len(expected)} images x {RATERS} raters, each "
            f"image rated once by each rater, in its sheets {list(workbook)}; found {found}. "
            "Replace it with the release's own file, or remove it to skip the rater analysis.")
    unreadable = ratings[ratings["Rating"].isna()]
    if len(unreadable):
        named = "; ".join(f"rater {r.Rater} on {r.file}: {'blank' if pd.isna(r.given) else repr(r.given)}"
                          for r in unreadable.head(5).itertuples())
        raise DatasetLayoutError(f"{path.name} holds {len(unreadable)} rating(s) that are not numbers: "
                                 f"{named}. Replace it with the release's own file (it is in the zip), or "
                                 "remove it to skip the rater analysis and the distribution head.")
    return ratings.drop(columns="given").reset_index(drop=True)


def _rating_columns(sheet: pd.DataFrame) -> pd.DataFrame | None:
    """A sheet's Rater, file and Rating columns (names matched ignoring case), or None."""
    columns = {str(c).strip().lower(): c for c in sheet.columns}
    if not {"rater", "filename", "rating"} <= set(columns):
        return None
    ratings = pd.DataFrame({"Rater": sheet[columns["rater"]],
                            "file": sheet[columns["filename"]].astype(str).str.strip(),
                            "Rating": pd.to_numeric(sheet[columns["rating"]], errors="coerce"),
                            "given": sheet[columns["rating"]]})  # as typed, for a message naming it
    ratings = ratings[ratings["file"].str.match(_NAME_PATTERN)]
    return ratings.assign(file=ratings["file"].map(_canonical_name))


def _ratings_complete(ratings: pd.DataFrame, images: set[str]) -> bool:
    """True when each of the images, and no other, is rated once by each of 60 raters."""
    return (set(ratings["file"]) == images and ratings["Rater"].nunique() == RATERS
            and len(ratings) == len(images) * RATERS and not ratings.duplicated(["Rater", "file"]).any())


RATINGS = (1, 2, 3, 4, 5)


_SHARES = [f"share_{rating}" for rating in RATINGS]  # of a face's raters who gave each rating


_RATINGS_HELP = ("Replace All_Ratings.xlsx with the release's own file (it is in the zip), or set "
                "label_distribution=False in notebook 02's parameters cell to learn the scores alone.")


def rating_shares(root: Path, labels: pd.DataFrame) -> pd.DataFrame:
    """Per image (all_labels' rows), the share of its 60 raters who gave 1, 2, 3, 4 and 5, from
    All_Ratings.xlsx and checked against the labels; read once per dataset (a minute for the real
    file) and kept in the work folder."""
    # "checked": kept only once the checks below pass, so a file kept before they existed is not read
    path = environment.work_dir() / f"rating-shares-checked-{dataset_fingerprint(labels)}.csv"
    if path.is_file():
        return pd.read_csv(path, index_col="file")
    ratings = read_ratings(root)
    if ratings is None:
        raise DatasetLayoutError(
            f"label_distribution=True learns how the 60 raters rated each face, which All_Ratings.xlsx "
            f"holds, and {root} has no All_Ratings.xlsx. Put the release's file there (it is in the "
            "zip), or set label_distribution=False in notebook 02's parameters cell.")
    _check_rating_values(ratings)
    counts = pd.crosstab(ratings["file"], ratings["Rating"].astype(int))
    counts = counts.reindex(index=labels["file"], columns=list(RATINGS), fill_value=0)
    shares = counts.div(counts.sum(axis=1), axis=0).set_axis(_SHARES, axis=1).rename_axis("file")
    _check_shares_mean(shares, labels)
    environment.write_atomically(path, lambda file: shares.to_csv(file))
    return shares


def _check_rating_values(ratings: pd.DataFrame) -> None:
    """Refuse ratings that are not a whole point from 1 to 5, naming a few: a face's shares would
    leave them out or round them silently."""
    off = ratings[~ratings["Rating"].isin(RATINGS)]
    if len(off):
        named = "; ".join(f"rater {r.Rater} gave {r.file} {r.Rating:g}" for r in off.head(5).itertuples())
        raise DatasetLayoutError(
            f"All_Ratings.xlsx holds {len(off)} rating(s) off the scale of whole points from 1 to 5: "
            f"{named}. {_RATINGS_HELP}")


def _check_shares_mean(shares: pd.DataFrame, labels: pd.DataFrame) -> None:
    """Refuse shares whose mean (their face's mean rating) is not the face's score in the label files
    within 1e-4, naming a few faces with both numbers."""
    means = shares.to_numpy() @ np.array(RATINGS)
    scores = labels["score"].to_numpy()
    wrong = np.flatnonzero(~(np.abs(means - scores) <= 1e-4))  # NaN too: a face without ratings
    if len(wrong):
        named = "; ".join(f"{labels['file'].iloc[k]}: its ratings average {means[k]:.4f}, its label "
                          f"says {scores[k]:.4f}" for k in wrong[:5])
        raise DatasetLayoutError(
            f"All_Ratings.xlsx disagrees with the label files on {len(wrong)} face(s), whose score "
            f"should be the mean of their {RATERS} ratings ({named}). {_RATINGS_HELP}")


def add_rating_shares(parts: dict[str, pd.DataFrame], root: Path, labels: pd.DataFrame) -> dict:
    """The protocol's parts with each face's rating shares as columns (SHARES), for a distribution head."""
    shares = rating_shares(root, labels)
    return {name: part.join(shares, on="file") for name, part in parts.items()}


def human_agreement_path(dataset: str) -> Path:
    """Where notebook 01 keeps the raters' agreement of a dataset (by its fingerprint) for 04."""
    return environment.work_dir() / f"human_agreement-{dataset}.json"


def _load_image(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decode one image file to a uint8 tensor of image_size x image_size x 3."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def targets(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """What the model learns of each face: its score and, when the frame has the raters' shares
    (add_rating_shares), their distribution; keyed by the model's outputs."""
    learned = {"score": frame["score"].to_numpy(dtype="float32")}
    if set(_SHARES) <= set(frame.columns):
        learned["distribution"] = frame[_SHARES].to_numpy(dtype="float32")
    return learned


def make_dataset(frame: pd.DataFrame, image_size: int, batch_size: int, training: bool = False,
                 seed: int = 0):
    """(uint8 image, targets) batches: decoded, resized and cached; shuffled when training
    (notebook 03 then maps its augmentation over them), else in the frame's order, as predict takes
    them (it reads the images, not the targets)."""
    if training:  # a random cache order lets a small shuffle buffer mix the groups well
        frame = frame.sample(frac=1.0, random_state=seed)
    paths = frame["path"].astype(str).to_numpy()
    data = tf.data.Dataset.from_tensor_slices((paths, targets(frame)))
    data = data.map(lambda p, y: (_load_image(p, image_size), y),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()
    if training:
        data = data.shuffle(min(len(frame), 1024), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)
