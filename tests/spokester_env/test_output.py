"""Atomic file output: the target is the old file or the new one, never half of one."""

import os
import signal
import stat
import subprocess
import sys

import pytest

from spokester_env.output import atomic_path, atomic_write_bytes, atomic_write_text, check_output, temporary_path


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


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_writers_temporary_goes_the_next_time_the_same_file_is_written(tmp_path):
    """kill -9 leaves `.NAME.PID.XXXX.EXT`; the next write of NAME removes it (not a live process's)."""
    target = tmp_path / "checkpoint.pt"
    stale = tmp_path / f".checkpoint.pt.{_dead_pid()}.abcd1234.pt"
    live = tmp_path / f".checkpoint.pt.{os.getpid()}.efgh5678.pt"
    other = tmp_path / f".renderer.json.{_dead_pid()}.ijkl9012.json"
    for path in (stale, live, other):
        path.write_bytes(b"x" * 1000)
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert not stale.exists() and live.exists() and other.exists()
    assert temporary_path(target).name.startswith(f".checkpoint.pt.{os.getpid()}.")


@pytest.mark.parametrize("folder", [False, True])
def test_check_output_refuses_a_file_where_a_folder_must_be(tmp_path, folder):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"^--out .*afile/sub/out: .*afile is a file, not a folder$"):
        check_output(tmp_path / "afile" / "sub" / "out", folder=folder)
    with pytest.raises(FileExistsError, match="is a file, not a folder"):
        check_output(tmp_path / "afile", folder=True)
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        check_output(tmp_path, folder=False)
    assert check_output(tmp_path / "new" / "deeper" / "x.zip") == tmp_path / "new" / "deeper" / "x.zip"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing made, no probe left


def test_check_output_refuses_a_read_only_folder(mounted):
    folder = mounted("ro")
    with pytest.raises(
        OSError, match=rf"^--out {folder}/run/x.npz: cannot write in {folder} \(Read-only file system\)$"
    ):
        check_output(folder / "run" / "x.npz")


def test_check_output_refuses_a_full_disk_and_a_write_to_it_names_the_file(mounted):
    folder = mounted("size=64k")
    with pytest.raises(OSError) as full:
        atomic_write_bytes(folder / "big.bin", b"x" * 200_000)
    assert str(folder / "big.bin") in str(full.value) and "No space left" in str(full.value)
    assert list(folder.iterdir()) == []  # the temporary went with the error
    (folder / "filler").write_bytes(b"x" * 60_000)
    try:
        while True:
            with open(folder / "filler", "ab") as handle:
                handle.write(b"x" * 4096)
    except OSError:
        pass
    with pytest.raises(OSError, match=rf"^--out {folder}/x: no space left on the disk of {folder}$"):
        check_output(folder / "x")


def test_sigterm_inside_user_errors_cleans_up_like_ctrl_c(tmp_path):
    """SIGTERM is raised as Terminated: the temporary of a write in progress is removed, one line, status 143."""
    code = (
        "import sys, time\n"
        "from spokester_env.commandline import user_errors\n"
        "from spokester_env.output import atomic_path\n"
        "with user_errors('prog'):\n"
        "    with atomic_path(sys.argv[1]) as temporary:\n"
        "        temporary.write_text('half')\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out.txt")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout.readline() == "writing\n"
    assert len(list(tmp_path.iterdir())) == 1  # the temporary
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 143 and err == "prog: terminated\n"
    assert list(tmp_path.iterdir()) == []
