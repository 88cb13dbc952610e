"""The problems a user can fix (a missing dataset, a run made by other settings, a photo with no
face...), each an exception whose message says what is wrong and what to do; shown without a traceback."""

from __future__ import annotations


class DriveNotMountedError(Exception):
    """The work folder is on Google Drive, which is not mounted now."""


class NoSpaceError(Exception):
    """The work folder's disk (in Colab, your Drive) has no room for what a run will write."""


class DatasetError(Exception):
    """Base of every problem with the dataset that the user can fix."""


class DatasetLayoutError(DatasetError):
    """The folder is not laid out like the SCUT-FBP5500 release."""


class LabelFormatError(DatasetError):
    """A label line is not '<file name> <score>'."""


class ScoreRangeError(DatasetError):
    """A score lies outside the rating scale [1, 5]."""


class MissingImagesError(DatasetError):
    """Images named in the label files are not on disk."""


class CorruptImageError(DatasetError):
    """An image file cannot be decoded."""


class DownloadRefusedError(DatasetError):
    """Google Drive did not hand over the zip."""


class BadZipError(DatasetError):
    """The zip is broken or would write outside its target folder."""


class SettingError(ValueError):
    """A setting of Config that the recipe cannot use."""


class RunNotFoundError(FileNotFoundError):
    """A notebook needs a run, or a stage, model, file or evaluation of one, that is not there (yet)."""


class RunMismatchError(Exception):
    """A run does not fit its use: another recipe version, dataset or precision, other faces or stages."""


class FrozenOnlyError(Exception):
    """A backbone that notebook 03 does not fine-tune: its run stays at stage 1."""


class GPUMemoryError(Exception):
    """The GPU ran out of memory while training."""


class ConstantPredictionError(ValueError):
    """The model predicts one value for every face, so PC is undefined."""


class FramingError(Exception):
    """The dataset's face framing could not be measured."""


class PhotoError(Exception):
    """A photo that cannot be scored, with the reason in words."""


class BundleError(Exception):
    """A bundle (a trained run in one .zip) that cannot be made, fetched, opened or published."""


class WebError(Exception):
    """The phone page's files that cannot be made or served: a model whose ONNX copy does not compute
    what Keras does, or a page that this installation does not have or cannot build."""


USER_ERRORS = (DriveNotMountedError, NoSpaceError, DatasetError, SettingError, RunNotFoundError,
               RunMismatchError, FrozenOnlyError, GPUMemoryError, ConstantPredictionError, FramingError,
               PhotoError, BundleError, WebError)
