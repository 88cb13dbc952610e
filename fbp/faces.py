"""From a photo to faces framed like the dataset's: reading any photo (EXIF turned upright), finding
faces and eyes (MTCNN), aligning and cropping, and the upload and webcam widgets."""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from fbp import dataset, environment
from fbp.errors import FramingError, PhotoError

DETECTION_SIDE = 640           # photos are shrunk to this longest side before detection


MIN_CONFIDENCE = 0.9


@dataclass
class _Face:
    """One detected face: its box (x, y, width, height) and eye positions in the photo's pixels."""

    box: tuple[float, float, float, float]
    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    confidence: float
    pixel: float = 1.0         # one pixel of the image the detector saw, in the photo's pixels


@dataclass(frozen=True)
class PhotoFace:
    """A face found in a photo: the photo's name and upright pixels, the face's number in it
    (largest first) and what the detector found."""

    photo: str
    image: object              # the photo as a PIL image
    number: int
    detection: _Face

    @property
    def label(self) -> str:
        """How the notebook names the face, e.g. 'me.jpg, face 1'."""
        return f"{self.photo}, face {self.number}"


def read_photo(source: Path | bytes, name: str | None = None):
    """Open a photo as upright 8-bit RGB: EXIF rotation applied; HEIC, 16-bit, greyscale, palette
    and alpha converted."""
    import io

    import pillow_heif
    from PIL import Image, ImageOps, UnidentifiedImageError

    pillow_heif.register_heif_opener()  # HEIC, the format of iPhones and Macs
    name = name or Path(source).name
    if isinstance(source, Path) and not source.is_file():
        raise PhotoError(f"{source}: no such file.")
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
        image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise PhotoError(f"{name}: this is not an image file (or a format we cannot read: use "
                         "JPEG, PNG or HEIC).") from None
    except Image.DecompressionBombError:
        raise PhotoError(f"{name}: the photo has too many pixels to read (more than "
                         f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.3g} million, Pillow's limit against "
                         "files that unpack into more memory than a machine has). Resize it or "
                         "export it smaller, e.g. 12 megapixels (plenty: the face is scored at a few "
                         "hundred pixels), and try again.") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise PhotoError(f"{name}: the image cannot be read ({error}); the file may be cut short. "
                         "Try exporting it again as JPEG.") from None
    if image.mode.startswith("I"):  # 16-bit greyscale (I;16, or I in older Pillow): 0-65535
        image = image.point(lambda value: value / 257)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


@functools.cache
def _face_detector():
    """The MTCNN face detector (TensorFlow; its weights ship inside the package)."""
    import gc
    import traceback

    from mtcnn import MTCNN

    # joblib, loading the weights, leaves lz4's reader to be cleaned up after it closed the file;
    # Python 3.13 reports each such clean-up as "Exception ignored ... I/O operation on closed
    # file" (gh-62948), harmless but red. Only those reports are dropped, and only while loading.
    original = sys.unraisablehook

    def hook(report):
        frames = traceback.extract_tb(report.exc_traceback) if report.exc_traceback else []
        closed = isinstance(report.exc_value, ValueError) and "on closed file" in str(report.exc_value)
        if not (closed and frames and Path(frames[-1].filename).parts[-3:-1] == ("lz4", "frame")):
            original(report)

    sys.unraisablehook = hook
    try:
        detector = MTCNN()
        gc.collect()  # any such reader left in a reference cycle is cleaned up here, not later
    finally:
        sys.unraisablehook = original
    return detector


def detector_networks() -> dict:
    """The MTCNN detector's three Keras networks by name (pnet, rnet, onet), which detect_faces runs on
    images normalised as (x - 127.5) / 128, in the mtcnn package's own axis order."""
    return dict(zip(("pnet", "rnet", "onet"), (stage.model for stage in _face_detector().stages),
                    strict=True))


def detect_faces(image, max_side: int = DETECTION_SIDE) -> list[_Face]:
    """Faces in an RGB photo, largest first; detection runs on a copy shrunk to max_side."""
    scale = min(1.0, max_side / max(image.size))
    small = image if scale == 1.0 else image.resize(
        (round(image.width * scale), round(image.height * scale)), reducing_gap=2.0)
    try:
        found = _face_detector().detect_faces(np.asarray(small))
    except ValueError as error:  # Keras < 3.14: a stage left with no candidate gets an empty batch
        if "empty output" not in str(error):
            raise
        found = []
    faces = [_Face(box=tuple(float(v) / scale for v in f["box"]),
                  left_eye=tuple(float(v) / scale for v in f["keypoints"]["left_eye"]),
                  right_eye=tuple(float(v) / scale for v in f["keypoints"]["right_eye"]),
                  confidence=float(f["confidence"]), pixel=1 / scale)
             for f in found if f["confidence"] >= MIN_CONFIDENCE]
    return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)


def _eyes_of(face: _Face) -> tuple[np.ndarray, np.ndarray]:
    """The face's eyes as (left, right) in image order, whatever the detector called them."""
    eyes = sorted([np.array(face.left_eye), np.array(face.right_eye)], key=lambda e: e[0])
    return eyes[0], eyes[1]


def _measure_framing(paths: list[str], limit: int = 200, seed: int = 0) -> dict:
    """Where the eyes sit in the dataset's images, as fractions of the image size (medians)."""
    from PIL import Image
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    chosen = rng.choice(paths, size=min(limit, len(paths)), replace=False)
    rows = []
    for path in tqdm(chosen, desc="measuring the dataset's framing"):
        image = Image.open(path).convert("RGB")
        faces = detect_faces(image)
        if faces:
            left, right = _eyes_of(faces[0])
            x, y, w, h = faces[0].box
            rows.append([*(((left + right) / 2) / image.size), np.linalg.norm(right - left) / image.width,
                         w / image.width, h / image.height])
    if len(rows) < 10:
        raise FramingError(f"Faces were found in only {len(rows)} of {len(chosen)} dataset images; "
                           "the framing cannot be measured from them.")
    eye_x, eye_y, eye_distance, box_w, box_h = np.median(np.array(rows), axis=0)
    return {"eye_center_x": eye_x, "eye_center_y": eye_y, "eye_distance": eye_distance,
            "box_width": box_w, "box_height": box_h, "faces_measured": len(rows),
            "images_tried": len(chosen)}


def framing_for(labels: pd.DataFrame) -> dict:
    """The framing of the dataset of these labels (all_labels'), measured once and kept in the work
    folder as framing-<dataset>.json; a synthetic dataset's is drawn, in its root."""
    path = environment.work_dir() / f"framing-{dataset.dataset_fingerprint(labels)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    drawn = Path(labels["path"].iloc[0]).parents[1] / "synthetic_framing.json"  # root/Images/file
    framing = json.loads(drawn.read_text()) if drawn.is_file() else _measure_framing(labels["path"].tolist())
    environment.save_json(path, framing)
    return framing


def align_face(image, face: _Face, framing: dict, size: int):
    """Rotate, scale and crop so that the eyes are level and sit where the dataset has them; a face
    larger than the crop is shrunk to its scale first."""
    from PIL import Image

    left, right = _eyes_of(face)
    angle = np.arctan2(right[1] - left[1], right[0] - left[0])
    scale = framing["eye_distance"] * size / np.linalg.norm(right - left)  # crop pixels per photo pixel
    center = (left + right) / 2
    target = np.array([framing["eye_center_x"], framing["eye_center_y"]]) * size
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
    offset = center - matrix @ target  # a crop pixel's point in the photo: matrix @ point + offset
    if scale < 1:
        image, matrix, offset = _shrunk_around(image, matrix, offset, size, scale)
    (a, b), (d, e) = matrix
    return image.transform((size, size), Image.AFFINE, (a, b, offset[0], d, e, offset[1]),
                           resample=Image.BICUBIC, fillcolor=(128, 128, 128))


def _shrunk_around(image, matrix: np.ndarray, offset: np.ndarray, size: int,
                  scale: float) -> tuple[object, np.ndarray, np.ndarray]:
    """The part of the photo a crop covers, shrunk to the crop's scale (Lanczos, which averages a
    large photo's grain instead of aliasing it), and the crop's mapping into that part."""
    from PIL import Image

    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]]) @ matrix.T + offset
    margin = 4 / scale  # a few crop pixels around the crop, for the filters' reach
    low = np.clip(np.floor(corners.min(axis=0) - margin), 0, image.size)
    high = np.clip(np.ceil(corners.max(axis=0) + margin), low + 1, image.size)
    shrunk = image.resize(tuple(np.maximum(1, np.round((high - low) * scale)).astype(int)),
                          Image.LANCZOS, box=(*low, *high), reducing_gap=3.0)
    ratio = np.array(shrunk.size) / (high - low)
    return shrunk, matrix * ratio[:, None], (offset - low) * ratio


MAX_ENLARGEMENT = 2.0  # a face is enlarged at most this much to fill the crop


def min_eye_distance(framing: dict, size: int) -> int:
    """Pixels a face needs between its eyes in the photo: the dataset's at the model's input size
    (framing["eye_distance"] * size: 0.21 x 350 = 74 with the synthetic framing) halved, rounded up."""
    # Under half, a face has less than a quarter of the pixels of any face the model learned from.
    return int(np.ceil(framing["eye_distance"] * size / MAX_ENLARGEMENT))


def check_face_size(face: _Face, framing: dict, size: int) -> None:
    """Refuse a face too small in the photo: one enlarged over MAX_ENLARGEMENT times to be aligned."""
    needed = min_eye_distance(framing, size)
    left, right = _eyes_of(face)
    apart = np.linalg.norm(right - left)
    if apart < needed:
        raise PhotoError(f"too small to score: its eyes are {int(apart)} pixels apart in the photo, "
                         f"and the model needs at least {needed} (it would enlarge the face "
                         f"{framing['eye_distance'] * size / apart:.0f} times, into a blur unlike "
                         "the dataset's faces). Use a photo taken closer, or the original rather "
                         "than a shrunk copy.")


# Eye points moved by these offsets (left x, left y, right x, right y; in the detector's pixels)
# give nearby alignments a detector could as well have produced: the eyes 1.5 px further apart
# or closer, the face turned a little either way. With the mirrors, six crops: a 12 MP photo takes
# 1.02 s on a 2-core CPU (tests/bench_photo.py); eight took 1.31 s, too near the 1.5 s goal.
EYE_SHIFTS = ((0, 0, 0, 0), (-1.5, 1.5, 1.5, -1.5), (1.5, -1.5, -1.5, 1.5))


def shifted_eyes(face: _Face, shift: tuple[float, float, float, float]) -> _Face:
    """The face with its eye points (in image order) moved by a shift in the detector's pixels."""
    left, right = _eyes_of(face)
    moved = np.array(shift, dtype=float).reshape(2, 2) * face.pixel
    return replace(face, left_eye=tuple(left + moved[0]), right_eye=tuple(right + moved[1]))


def _photos_from_env() -> list[tuple[str, Path]]:
    """The photos named in FBP_PHOTO (paths joined by the OS path separator)."""
    paths = [p for p in os.environ.get("FBP_PHOTO", "").split(os.pathsep) if p.strip()]
    return [(Path(p).name, Path(p).expanduser()) for p in paths]


def _uploaded_files(value) -> list[tuple[str, bytes]]:
    """(name, bytes) of uploads from ipywidgets 7 or 8 or from Colab's files.upload()."""
    if isinstance(value, dict):  # ipywidgets 7: {name: {'content': ...}}; Colab: {name: bytes}
        return [(name, bytes(item["content"] if isinstance(item, dict) else item))
                for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value]  # ipywidgets 8


def _colab_uploads() -> list[tuple[str, bytes]]:
    """Photos through Colab's uploader, which saves them: into a folder deleted once they are read."""
    import tempfile

    from google.colab import files  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory(prefix="photos-") as folder:
        uploaded = files.upload(target_dir=folder)
    return [(Path(name).name, content) for name, content in _uploaded_files(uploaded)]


def ask_for_photos() -> list[tuple[str, Path | bytes]]:
    """Photos from FBP_PHOTO if set; else Colab's uploader; else an upload widget that fills the list."""
    named = _photos_from_env()
    if named:
        return named
    if environment.in_colab():
        photos = _colab_uploads()
        if not photos:
            print("No photo was uploaded (the upload was cancelled or no file was chosen). Run this "
                  "cell again to choose one.")
        return photos
    from IPython.display import display

    photos = []
    display(_upload_widget(photos))
    return photos


def _upload_widget(photos: list):
    """An upload button (ipywidgets 7 or 8) that puts the chosen photos, in memory, into the list."""
    import ipywidgets as widgets

    upload = widgets.FileUpload(accept="image/*", multiple=True, description="Photos")
    said = widgets.Label("Choose photos, then run the cells below this one.")

    def on_upload(change):
        photos[:] = _uploaded_files(change["new"])
        said.value = f"{len(photos)} photo(s) chosen: now run the cells below this one."

    upload.observe(on_upload, names="value")
    return widgets.HBox([upload, said])


_WEBCAM_JS = """
async function takePhoto(quality) {
  const box = document.createElement('div');
  const button = document.createElement('button');
  button.textContent = 'Take the photo';
  const skip = document.createElement('button');
  skip.textContent = 'No webcam photo';
  const video = document.createElement('video');
  video.style.display = 'block';
  box.append(button, skip, video);
  document.body.appendChild(box);
  const stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: 'user'}});
  video.srcObject = stream;
  await video.play();
  google.colab.output.setIframeHeight(document.documentElement.scrollHeight, true);
  const taken = await new Promise((resolve) => {
    button.onclick = () => resolve(true);
    skip.onclick = () => resolve(false);
  });
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  stream.getVideoTracks().forEach((track) => track.stop());
  box.remove();
  return taken ? canvas.toDataURL('image/jpeg', quality) : '';
}
"""


def _camera_problem(error: str) -> str:
    """What went wrong with the browser's camera, from the JavaScript error, and what to do."""
    if "NotAllowedError" in error:
        return ("The browser did not let this page use the camera (NotAllowedError: permission "
                "denied). To allow it: click the camera or settings icon at the left of the address "
                "bar, set Camera to Allow for this site, then run this cell again. Or upload a photo "
                "above instead.")
    if "NotFoundError" in error:
        return ("No camera was found (NotFoundError): this computer has no webcam, or it is "
                "switched off or unplugged. Connect one and run this cell again, or upload a photo "
                "above instead.")
    return (f"The camera could not be used ({error}). If another program is using it, close that "
            "program and run this cell again, or upload a photo above instead.")


def take_webcam_photo() -> bytes | None:
    """In Colab, show the webcam with a button and return the JPEG taken; elsewhere or skipped None."""
    if not environment.in_colab():
        print("Taking a photo with the webcam needs Colab (the browser holds the camera; this "
              "runtime has none). Upload a photo above instead.")
        return None
    import base64

    from google.colab._message import MessageError  # type: ignore[import-not-found]
    from google.colab.output import eval_js  # type: ignore[import-not-found]
    from IPython.display import Javascript, display

    display(Javascript(_WEBCAM_JS))
    try:
        data_url = eval_js("takePhoto(0.92)")
    except MessageError as error:
        print(_camera_problem(str(error)))
        return None
    if not data_url:
        print("No webcam photo taken.")
        return None
    return base64.b64decode(data_url.split(",", 1)[1])
