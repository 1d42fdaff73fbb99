"""Writing files that other programs read while we write them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_text(path: Path, text: str, *, keep_mode: bool = False) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename, so a
    reader sees the old file or the new one, never half of one. The new file is 0600, or with
    `keep_mode` has the mode of the file it replaces (which must exist)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if keep_mode:
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
