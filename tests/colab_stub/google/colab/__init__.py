"""A stand-in for Colab's `google.colab` package, for tests (the real one needs a Colab frontend).

What the browser would do is read from a JSON script named by COLAB_STUB_SCRIPT: each upload and
each webcam request takes the next answer of its queue. Drive is the folder COLAB_STUB_DRIVE.
Importing this package in an IPython kernel installs a hint on failed imports, as Colab's does.
"""

import json
import os
from pathlib import Path

IMPORT_HINT = ("NOTE: If your import is failing due to a missing package, you can\n"
               "manually install dependencies using either !pip or !apt.")


def next_answer(queue: str):
    """Take the first answer of a queue in the script (the browser's next move)."""
    path = Path(os.environ["COLAB_STUB_SCRIPT"])
    script = json.loads(path.read_text())
    if not script.get(queue):
        raise AssertionError(f"the test's script has no answer left in '{queue}'")
    answer = script[queue].pop(0)
    path.write_text(json.dumps(script))
    return answer


def install_import_hint() -> None:
    """Add Colab's install hint under the traceback of a failed import (colabtools'
    _shell_customizations.py does this with set_custom_exc when the kernel starts)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return

    def hint(shell, etype, value, tb, tb_offset=None):
        stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        shell._showtraceback(etype, value, [*stb, "", IMPORT_HINT])

    shell.set_custom_exc((ImportError,), hint)


install_import_hint()
