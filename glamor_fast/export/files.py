"""Publishing an export: written under a temporary name beside the target, renamed when complete."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def publish(out, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` a file at a temporary path in ``out``'s folder (same suffix as ``out``),
    then rename it to ``out``. If ``write`` raises, the temporary file is removed and ``out``
    is left as it was."""
    out = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".part{out.suffix}", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; an exported model is meant to be shared
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
