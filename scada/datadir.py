"""Where an instance keeps its data, and the one OS lock that makes it the only instance there.

One rule for every ``scada`` command::

    root      = --data-dir  >  $SCADA_DATA_DIR  >  (a settings file's data_dir)  >  scada-data/
    instance  = root/<city>        with --city NAME (``scada run``/``scada sim``: their --scale, demo|dijon)
              = root               when root itself holds an instance (root/.lock) or nothing at all
              = root/<the city>    when root holds exactly one city folder (a sub-folder with a .lock)
              → refused            when it holds several: "choose one with --city"

So ``scada run`` writes ``scada-data/demo/`` and ``scada journal``, ``scada alarms kpi``,
``scada historian energy`` or ``scada audit verify`` run afterwards find it with no option, while
``scada server --data-dir /var/lib/scada`` keeps its data in the folder it was given::

    <instance>/
        .lock                 "PID command": fcntl.flock, held as long as the instance runs
        city.json             which configuration the folder serves (a fingerprint of the city: the
                              server drops leases written for another one, failsafe.fingerprint)
        journal.sqlite users.sqlite audit.sqlite workorders.sqlite historian/ failsafe/ server.json   (the server)
        failsafe/audit/       the command audit log's segments (failsafe.audit)
        keys/audit.key        its HMAC key (0600), apart from the log: created at the first start
        sim/.lock             the simulator's own lock (``scada sim`` alone, or held for it by ``scada run``)
        sim/endpoints.json sim/control.json                                        (the simulator)

The lock is taken before anything is written: a second instance on the same folder exits with the
running one's PID and command instead of overwriting its state files and resuming its leases. The
lock file is never deleted (deleting it would let two processes lock two different files); the
kernel releases the lock when the holder exits, even on SIGKILL.

A child the holder starts for the same folder (the simulator under ``scada run``) does not lock it
again: the parent passes the locked file descriptor down (``pass_fds``) and names it in
``$SCADA_DATA_LOCK_FD``; :meth:`DataDirLock.acquire` adopts it when it is that folder's lock file.
Before writing, ``scada server`` checks the folder can be written (:func:`check_writable`: a new file
can be created in it, and every store already there opens for writing) and exits 2 with one line
saying which path and why otherwise — not a traceback from whichever store happened to open first.

This module imports nothing above the core.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from scada.errors import ScadaError

ENV_DATA_DIR = "SCADA_DATA_DIR"
ENV_LOCK_FD = "SCADA_DATA_LOCK_FD"
DEFAULT_ROOT = Path("scada-data")
LOCK_NAME = ".lock"
CITY_RECORD = "city.json"
KEYS_DIR = "keys"
#: the stores a server keeps in its folder (checked for writing at start when they exist)
STORES = ("users.sqlite", "audit.sqlite", "journal.sqlite", "workorders.sqlite", "failsafe/audit/head",
          "failsafe/leases.json", CITY_RECORD)
STORE_DIRS = ("failsafe", "failsafe/audit", "historian")


class DataDirError(ScadaError):
    """The data directory cannot be chosen (several cities and no --city) or used."""


class DataDirBusy(DataDirError):
    """Another process holds the lock of this data directory."""

    def __init__(self, path: Path, pid: int | None, command: str) -> None:
        self.path, self.pid, self.command = path, pid, command
        holder = f"PID {pid}" if pid is not None else "another process"
        what = f" ({command})" if command else ""
        super().__init__(f"{path} is in use by {holder}{what}: one instance per data directory; stop it "
                         f"first, or choose another data directory")


def resolve_root(option: Path | str | None, configured: Path | str | None = None) -> Path:
    """The data root: the command-line option, else ``$SCADA_DATA_DIR``, else ``configured`` (a settings
    file's ``data_dir``), else ``scada-data``."""
    for value in (option, os.environ.get(ENV_DATA_DIR), configured):
        if value:
            return Path(value)
    return DEFAULT_ROOT


def city_folders(root: Path) -> list[str]:
    """Names of the sub-folders of ``root`` that hold an instance (a ``.lock``), sorted."""
    try:
        return sorted(p.name for p in root.iterdir() if (p / LOCK_NAME).is_file())
    except OSError:
        return []


def instance_dir(root: Path, city: str | None = None) -> Path:
    """The folder an instance uses under ``root`` (the rule in the module docstring)."""
    if city:
        return root / city
    if (root / LOCK_NAME).is_file():
        return root
    cities = city_folders(root)
    if len(cities) > 1:
        raise DataDirError(f"{root} holds several cities ({', '.join(cities)}): choose one with --city")
    return root / cities[0] if cities else root


def resolve(option: Path | str | None, city: str | None = None, configured: Path | str | None = None) -> Path:
    """``instance_dir(resolve_root(option, configured), city)``."""
    return instance_dir(resolve_root(option, configured), city)


def keys_dir(instance: Path) -> Path:
    """The instance's key folder (the command audit log's key; kept apart from the data it protects)."""
    return Path(instance) / KEYS_DIR


def probe_dir(path: Path) -> None:
    """Raise OSError unless a new file can be created in ``path`` (an unnamed O_TMPFILE where the filesystem
    has it: nothing is left behind; else a named probe, removed at once)."""
    try:
        fd = os.open(path, os.O_TMPFILE | os.O_WRONLY, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        probe = path / f".probe-{os.getpid()}"
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        os.unlink(probe)
    os.close(fd)


def probe_file(path: Path) -> None:
    """Raise OSError unless ``path`` (if it exists) is a regular file that opens for appending (it is not
    replaced by a directory, not immutable, not on a read-only mount). Nothing is written."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not path.is_file():
        raise OSError(errno.EINVAL, "not a regular file (a dangling link, a device...)", str(path))
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND))


def check_writable(path: Path, stores: tuple[str, ...] = STORES) -> None:
    """:class:`DataDirError` naming the path and why, unless ``path`` and the stores already in it can be
    written. Run as root, permission bits do not stop anything: the probes really create/open."""
    target = path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe_dir(path)
        for sub in STORE_DIRS:
            target = path / sub
            if target.is_dir():
                probe_dir(target)
        for store in stores:
            target = path / store
            probe_file(target)
    except OSError as exc:
        raise DataDirError(f"data directory {path} is not writable: {target}: {exc.strerror or exc}") from None


def read_city_record(path: Path) -> dict[str, Any] | None:
    """``<path>/city.json`` (which configuration the folder serves), or None when absent or unreadable."""
    try:
        data = json.loads((path / CITY_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_city_record(path: Path, fingerprint: str, **about: Any) -> None:
    """Record (atomically) that the folder serves the configuration with ``fingerprint``; OSError if it cannot."""
    record = {"fingerprint": fingerprint, "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              **about}
    tmp = path / (CITY_RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path / CITY_RECORD)


def read_holder(path: Path) -> tuple[int | None, str]:
    """(PID, command) written in ``path/.lock`` by its last holder; (None, "") if unreadable."""
    try:
        text = (path / LOCK_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return None, ""
    pid, _, command = text.partition(" ")
    return (int(pid) if pid.isdigit() else None), command.strip()


@dataclass
class DataDirLock:
    """An exclusive ``flock`` on ``<path>/.lock``; release with :meth:`release` or as a context manager."""

    path: Path
    fd: int
    owned: bool  # False: adopted from the parent, which holds it too

    @classmethod
    def acquire(cls, path: Path, command: str) -> DataDirLock:
        """Lock ``path`` (created if missing) for this process; :class:`DataDirBusy` if another holds it."""
        target = path
        try:
            path.mkdir(parents=True, exist_ok=True)
            inherited = cls._inherited(path)
            if inherited is not None:
                return inherited
            target = path / LOCK_NAME
            fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # one line saying which path and why, not a traceback
            raise DataDirError(f"data directory {path} is not writable: {target}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirBusy(path, *read_holder(path)) from None
        except OSError as exc:
            os.close(fd)
            raise DataDirError(f"{path}: cannot lock {LOCK_NAME}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        return cls(path, fd, owned=True)

    @classmethod
    def _inherited(cls, path: Path) -> DataDirLock | None:
        """The lock of ``path`` passed down by the parent (``$SCADA_DATA_LOCK_FD``), or None."""
        text = os.environ.get(ENV_LOCK_FD, "")
        if not text.isdigit():
            return None
        fd = int(text)
        try:
            mine, theirs = os.fstat(fd), os.stat(path / LOCK_NAME)
        except OSError:
            return None
        if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
            return None  # a descriptor for another folder: lock this one normally
        os.set_inheritable(fd, False)
        return cls(path, fd, owned=False)

    def child_env(self) -> dict[str, str]:
        """Environment entry for a child process started with ``pass_fds=(lock.fd,)``."""
        return {ENV_LOCK_FD: str(self.fd)}

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            if self.owned:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


__all__ = [
    "CITY_RECORD",
    "DEFAULT_ROOT",
    "ENV_DATA_DIR",
    "ENV_LOCK_FD",
    "STORES",
    "DataDirBusy",
    "DataDirError",
    "DataDirLock",
    "check_writable",
    "city_folders",
    "instance_dir",
    "keys_dir",
    "probe_dir",
    "probe_file",
    "read_city_record",
    "read_holder",
    "resolve",
    "resolve_root",
    "write_city_record",
]
