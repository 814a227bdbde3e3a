"""Atomic file writes and checksums: a result is either complete or absent.

Every writer goes through a temporary file in the destination folder that is
fsync'ed and renamed into place, so a killed process never leaves a
half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import LaviseError, RunError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results get the usual permissions
    except OSError as e:
        raise RunError(f"cannot write {path}: {e.strerror} (check permissions and free disk space)") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {e.strerror} (check free disk space; earlier outputs are untouched)") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON deterministically (sorted keys are NOT used: order is part of the format)."""
    write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, error: type[LaviseError] = RunError, what: str | None = None) -> Any:
    """Read a JSON file, turning every failure into one line of ``error``.

    Args:
        path: the file to read.
        error: the ``LaviseError`` subclass to raise: ``RunError`` for the files a run writes,
            ``DatasetError`` for a dataset's annotation files.
        what: what the file is ("COCO annotation file"), for a file the user gives: the messages name it
            and say how to fix the file. None for a file lavise wrote itself: the messages say to delete it
            and rerun the step that writes it.

    Returns:
        The parsed JSON value.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise error(f"missing file {path}" if what is None
                    else f"{what} not found: {path} (check the path in the dataset spec)") from None
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON ({e}); delete it and rerun the step that writes it" if what is None
                    else f"{what} {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                    "re-export or fix the file") from None
    except UnicodeDecodeError as e:
        raise error(f"{path} is not valid JSON ({e}); delete it and rerun the step that writes it" if what is None
                    else f"{what} {path} is not UTF-8 JSON; re-export it as UTF-8") from None
    except IsADirectoryError:
        raise error(f"{what or 'JSON file'} {path} is a directory; give the path of the .json file itself") from None
    except OSError as e:
        raise error(f"cannot read {what or 'JSON file'} {path}: {e.strerror or e}") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
