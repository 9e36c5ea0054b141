"""Atomic file writes (an artifact is either the old complete file or the new complete
file), the folders they go into, and reading back JSON and TOML files with clear errors."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fashion_cnn.errors import ConfigError, DamagedFileError, OutputError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success renames it over `path`.

    The temporary file keeps `path`'s suffix (Keras checks `.keras`), lives in the same
    folder (so the rename is atomic) and is removed if the block raises.

    Raises:
        OutputError: the file cannot be written (e.g. the disk is full); `path` is as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
    except OSError as e:
        raise _cannot_write(path, e) from None
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk, a quota, a read-only file system...
        raise _cannot_write(path, e) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _cannot_write(path: Path, error: OSError) -> OutputError:
    return OutputError(
        f"Cannot write {path}: {error.strerror or error} (the file is as it was). To fix "
        "it: free space (or get write access) there, then run the command again."
    )


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    """The JSON object in `path`, a file this program wrote (config.json, state.json, ...).

    Raises:
        OSError: the file cannot be opened.
        DamagedFileError: it is not UTF-8 JSON, or holds something other than an object.
    """
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problem = f"it is not valid JSON ({e})"
    else:
        if isinstance(obj, dict):
            return obj
        problem = f"it holds a JSON {type(obj).__name__}, not an object"
    raise DamagedFileError(
        f"{path} is damaged: {problem}. To fix it: restore the file, or remove what it belongs "
        "to and run again the command that wrote it (for a run folder: `fashion-cnn train` "
        "with --overwrite)."
    )


def read_table(path: Path, what: str) -> dict[str, Any]:
    """The table of keys in a `.toml` or `.json` file.

    Args:
        path: the file.
        what: what to call it in errors, e.g. "config file".

    Raises:
        ConfigError: another suffix, an unreadable file, text that is not UTF-8, bad
            syntax, or a file that holds something other than a table.
    """
    kind = {".toml": "TOML", ".json": "JSON"}.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"Cannot read {what} {path}: expected a .toml or .json file, "
            f"received {path.suffix or 'no suffix'}"
        )
    try:
        text = path.read_text("utf-8")
    except OSError as e:
        raise ConfigError(f"Cannot read {what} {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"Cannot read {what} {path}: it is not UTF-8 text ({e.reason})") from None
    try:
        values = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{what.capitalize()} {path} is not valid {kind}: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"{what.capitalize()} {path} must hold a table of keys, got {type(values).__name__}"
        )
    return values


def check_folder(path: str | os.PathLike, what: str, flag: str, fix: str | None = None) -> Path:
    """`path` where a folder is, or can be created: nothing is created.

    Checked before the slow work (loading TensorFlow and the data) so that a mistyped
    output path is reported at once.

    Args:
        path: the folder.
        what: what it is, for the message (e.g. "Run folder").
        flag: the option that names it, for the fix (e.g. "--out").
        fix: the message's ending instead of "To fix it: pass FLAG a folder you can write
            to." (for a folder no option names, such as the run folder `evaluate` writes to).

    Returns:
        `path` as a Path.

    Raises:
        OutputError: `path`, or the nearest of its parents that exists, is not a folder or
            is not writable.
    """
    path = Path(path)
    fix = fix or f"To fix it: pass {flag} a folder you can write to."
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder. {fix}")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {path} cannot be created: {parent} is a file. {fix}")
    if not os.access(parent, os.W_OK | os.X_OK):
        if parent == path:
            raise OutputError(f"{what} {path} is not writable. {fix}")
        raise OutputError(f"{what} {path} cannot be created: {parent} is not writable. {fix}")
    return path


def make_folder(path: str | os.PathLike, what: str, flag: str) -> Path:
    """Creates folder `path` and its parents, unless it exists. Arguments and return value
    as `check_folder`'s.

    Raises:
        OutputError: it cannot be created (see `check_folder`; or the system refused).
    """
    path = check_folder(path, what, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"{what} {path} cannot be created: {e.strerror}. "
            f"To fix it: pass {flag} a folder you can write to."
        ) from None
    return path
