import os
from pathlib import Path

import pytest

from fashion_cnn import io_utils
from fashion_cnn.errors import DamagedFileError, OutputError
from fashion_cnn.io_utils import check_folder, make_folder, read_json, write_json


def test_write_json_replaces_the_file_whole(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_json(path, {"a": 1})
    write_json(path, {"b": 2})
    assert read_json(path) == {"b": 2}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temporary left


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"{", "it is not valid JSON (Expecting property name"),
        (b"[1, 2]", "it holds a JSON list, not an object"),
        (b'{"a": "\xe9"}', "it is not valid JSON ("),
    ],
)
def test_a_damaged_json_file_is_named(tmp_path, content, problem):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(DamagedFileError) as e:
        read_json(path)
    assert str(e.value).startswith(f"{path} is damaged: {problem}")
    assert "To fix it: restore the file" in str(e.value)


def test_a_full_disk_is_an_output_error_and_the_old_file_stays(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "metrics.json"
    write_json(path, {"old": 1})

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io_utils.os, "fsync", full)
    with pytest.raises(OutputError, match=r"Cannot write .*metrics.json: No space left on dev"):
        write_json(path, {"new": 2})
    assert read_json(path) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


def test_make_folder_creates_parents_and_accepts_an_existing_folder(tmp_path):
    path = tmp_path / "a" / "b"
    assert check_folder(path, "Run folder", "--out") == path
    assert not path.exists()  # checking creates nothing
    assert make_folder(path, "Run folder", "--out") == path and path.is_dir()
    assert make_folder(str(path), "Run folder", "--out") == path


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=r"Run folder .*f is a file, not a folder\. .*--out"):
        make_folder(tmp_path / "f", "Run folder", "--out")
    with pytest.raises(OutputError, match=r"cannot be created: .*f is a file\. .*--explain"):
        make_folder(tmp_path / "f" / "a" / "b", "Folder", "--explain")
    assert (tmp_path / "f").read_text() == "x"


def test_an_unwritable_parent_is_named(tmp_path, monkeypatch):
    # (root may write anywhere, so the check is made to see a read-only parent)
    monkeypatch.setattr(io_utils.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(OutputError) as refused:
        check_folder(tmp_path / "new", "Search folder", "--out")
    assert f"new cannot be created: {tmp_path} is not writable. To fix it" in str(refused.value)
    with pytest.raises(OutputError) as refused:
        check_folder(tmp_path, "Search folder", "--out")
    assert str(refused.value).startswith(f"Search folder {tmp_path} is not writable.")


def test_a_refused_mkdir_becomes_a_clear_error(tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, os.strerror(13), str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(OutputError, match=r"new cannot be created: Permission denied\. .*--out"):
        make_folder(tmp_path / "new", "Export folder", "--out")
