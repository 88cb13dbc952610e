"""Stand-in for google.colab.output: eval_js answers the webcam request from the test's script."""

import base64
from pathlib import Path

from google.colab import next_answer
from google.colab._message import MessageError


def eval_js(script: str, ignore_result: bool = False, timeout_sec=None):
    """Run JavaScript in the 'browser': the webcam's takePhoto returns a JPEG data URL, '' when
    skipped, or the JavaScript error the script names (e.g. 'NotAllowedError: Permission denied')."""
    if not script.startswith("takePhoto("):
        raise NotImplementedError(f"the stand-in browser runs only takePhoto, not {script!r}")
    answer = next_answer("camera")
    if "error" in answer:
        raise MessageError(answer["error"])
    if answer.get("skip"):
        return ""  # the user pressed 'No webcam photo'
    return "data:image/jpeg;base64," + base64.b64encode(Path(answer["photo"]).read_bytes()).decode()
