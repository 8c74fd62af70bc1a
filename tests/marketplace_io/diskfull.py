"""A real small filesystem that tests can fill and free: a tmpfs mounted under the test's
temporary folder (root only, as in CI; elsewhere the test is skipped, saying why).

``Filler`` takes every free byte with one file (``fill``) and gives it back (``free``), so a
test decides exactly when the disk is full.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_filesystem(where: Path, *, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``"8m"``) mounted at ``where`` for the block; unmounted after.
    Skips the test unless it runs as root and ``mount`` works here."""
    if os.geteuid() != 0:
        pytest.skip("a full filesystem needs root to mount a small tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()[:120]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


class Filler:
    """One file that takes the filesystem's free space on ``fill`` and gives it back on
    ``free``."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "filler"

    def fill(self) -> int:
        """Write until the filesystem is full; the bytes written."""
        written = 0
        block = b"\0" * 65536
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512, 1):
                while True:
                    try:
                        n = os.write(fd, block[:size])
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    if n == 0:
                        break
                    written += n
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        """Give every byte back."""
        self.path.unlink(missing_ok=True)
