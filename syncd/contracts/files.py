"""Files in the service's state directory, opened without following what was planted there.

Admins run syncd's commands as root (``syncd x authorize``, ``syncd status``) in a directory the
service's own user owns and can change at will. A symbolic link that user put at a file's
name would make root open, chmod, chown or truncate whatever it points at (``/etc/shadow``);
a hard link would do the same. So a state file is opened with ``O_NOFOLLOW`` (created with
``O_EXCL``), checked on the open descriptor, and changed only through that descriptor
(``fchmod``, ``fchown``, ``ftruncate``). Refused, each with its reason: a symbolic link; not a
regular file; and, as root, a file with several names or owned by someone other than root and
the directory's owner. A directory anyone may write to without the sticky bit is refused for
everyone: anybody could replace what syncd keeps there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

# Never block opening a FIFO planted at the name; no effect on a regular file.
_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class UnsafeFile(Exception):
    """A state file syncd will not touch; the message names it and says why."""


def check_directory(directory: Path) -> os.stat_result:
    """The directory's status, or UnsafeFile when every user may replace files in it.

    The directory itself may be a link: under ``DynamicUser=`` systemd makes
    /var/lib/syncd one, to /var/lib/private/syncd.
    """
    st = os.stat(directory)
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise UnsafeFile(
            f"{directory} is writable by every user (mode {stat.S_IMODE(st.st_mode):04o}, no "
            f"sticky bit): anyone could replace the files syncd keeps there; "
            f"run chmod o-w {directory}"
        )
    return st


def open_file(path: Path, flags: int, *, create: bool, mode: int = 0o600) -> int:
    """A descriptor of ``path`` (created ``mode`` if ``create`` and absent), checked safe.

    Raises UnsafeFile, FileNotFoundError (``create`` false and no file) or another OSError.
    """
    owner = check_directory(path.parent).st_uid
    fd: int | None = None
    if create:
        # An existing name (a link, perhaps) is opened below, without following it.
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, flags | _FLAGS | os.O_CREAT | os.O_EXCL, mode)
    if fd is None:
        try:
            fd = os.open(path, flags | _FLAGS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFile(
                    f"{path} is a symbolic link: syncd does not follow links in its state "
                    f"directory (whoever can write {path.parent} could point one at any file); "
                    "remove it"
                ) from None
            raise
    try:
        check_descriptor(fd, path, owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_descriptor(fd: int, path: Path, directory_owner: int) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{path} is not a regular file: remove it")
    if os.geteuid() == 0:
        if st.st_nlink != 1:
            raise UnsafeFile(
                f"{path} has {st.st_nlink} names (hard links): another of them could be any "
                "file; remove it"
            )
        if st.st_uid not in (0, directory_owner):
            raise UnsafeFile(
                f"{path} belongs to uid {st.st_uid}, neither root nor the owner of "
                f"{path.parent}: remove it"
            )
    return st


def owner_only(fd: int) -> None:
    """Narrow an open file of this user's to 0600 (a restore or an older syncd may have left
    it readable by others); another user's file is left as it is."""
    st = os.fstat(fd)
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.fchmod(fd, 0o600)


def narrow_existing(path: Path) -> None:
    """:func:`owner_only` for ``path`` if it exists, checked as :func:`open_file` does."""
    try:
        fd = open_file(path, os.O_RDONLY, create=False)
    except FileNotFoundError:
        return
    try:
        owner_only(fd)
    finally:
        os.close(fd)
