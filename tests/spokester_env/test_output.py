"""Atomic file output: the target is the old file or the new one, never half of one."""

import os
import stat

import pytest

from spokester_env.output import atomic_path, atomic_write_text


def test_success_replaces_the_file_with_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_an_error_while_writing_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "video.mp4"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="encoder died"):
        with atomic_path(target) as temporary:
            assert temporary.suffix == ".mp4" and temporary.parent == tmp_path  # writers go by the extension
            temporary.write_text("half a vid")
            raise RuntimeError("encoder died")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]
