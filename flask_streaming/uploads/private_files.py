"""Owner-only files and folders, opened without following symbolic links.

The upload store holds session ids, which are the only credential of an
upload when the app has no authorization hook: other local users must not
list them. Folders are made ``0700`` and files ``0600`` (whatever the
umask), and every file is opened with ``O_NOFOLLOW``, so that a symbolic
link planted in a shared folder cannot make the server read or write
elsewhere (opening one fails with ``ELOOP``).
"""

from __future__ import annotations

import logging
import os
import stat
from typing import IO

logger = logging.getLogger(__name__)

#: Mode of every folder the store creates.
DIR_MODE = 0o700
#: Mode of every file the store creates.
FILE_MODE = 0o600
#: Flags added to every ``open`` of the store.
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def make_private_dir(path: str) -> None:
    """Create *path* (and missing parents) owner-only; an existing *path*
    must be a real folder, not a link to one."""
    os.makedirs(path, DIR_MODE, exist_ok=True)
    if os.path.islink(path):
        raise OSError(f"refusing to use a symbolic link as a store folder: {path}")


def warn_if_shared(path: str) -> bool:
    """Log a warning when the folder *path* (made before, by someone else or
    an older version) lets other users in; returns whether it does. Its
    permissions are left as they are: the app may share it on purpose."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        logger.warning(
            "flask_streaming: the upload store %s is accessible to other users (mode %o);"
            " session ids in it are credentials: chmod 700 it",
            path,
            mode,
        )
        return True
    return False


def open_fd(path: str, flags: int) -> int:
    """``os.open`` with :data:`NOFOLLOW` and :data:`FILE_MODE` (a link is
    refused with ``ELOOP``)."""
    return os.open(path, flags | NOFOLLOW, FILE_MODE)


def open_private(path: str, mode: str) -> IO[bytes]:
    """A binary file object for *mode* ``"rb"``, ``"wb"``, ``"xb"`` or
    ``"r+b"``, never through a symbolic link; created files are ``0600``."""
    flags = {
        "rb": os.O_RDONLY,
        "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
        "xb": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
        "r+b": os.O_RDWR,
    }[mode]
    return os.fdopen(open_fd(path, flags), mode.replace("x", "w"), buffering=0)
