"""The env's command lines: `python -m spokester_env.snapshot` and `python -m spokester_env.bench`."""

import json

import numpy as np
import pytest

from spokester_env import bench, snapshot


def _one_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{prog}: error: "), err
    return err


def test_snapshot_writes_the_picture_as_a_png_atomically(tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    out = tmp_path / "views.png"
    snapshot.main(["--out", str(out), "--size", "16", "--steps", "3", "--seed", "2", "--actions", "02"])
    assert capsys.readouterr().out == f"{out}\n"
    written = cv2.imread(str(out))[..., ::-1]
    np.testing.assert_array_equal(written, snapshot.snapshot(seed=2, steps=3, size=16, actions="02"))
    assert written.shape == (16, 48, 3) and [p.name for p in tmp_path.iterdir()] == ["views.png"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--out", "x.jpg"], "must end in .png"),
        (["--out", "x.png", "--actions", "013"], "--actions '013'"),
        (["--out", "x.png", "--size", "0"], "argument --size: must be >= 1, got 0"),
    ],
)
def test_snapshot_refuses_bad_options_in_one_line(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        snapshot.main(argv)
    assert exit_.value.code == 2 and words in _one_line(capsys, "python -m spokester_env.snapshot")


def test_snapshot_that_cannot_write_is_a_one_line_error(tmp_path, capsys):
    pytest.importorskip("cv2")
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        snapshot.main(["--out", str(tmp_path / "file" / "x.png"), "--size", "16", "--steps", "0"])
    assert exit_.value.code == 1 and "file" in _one_line(capsys, "python -m spokester_env.snapshot")


@pytest.mark.parametrize(
    "argv, words",
    [(["--sizes", "32", "0"], "argument --sizes: must be >= 1, got 0"), (["--seconds", "0"], "--seconds: must be > 0")],
)
def test_bench_refuses_bad_options_in_one_line(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2 and words in _one_line(capsys, "python -m spokester_env.bench")


def test_bench_egl_device_needs_the_gl_backend(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--backends", "tiny", "--egl-device", "0"])
    assert exit_.value.code == 2 and "--egl-device 0: only the gl backend" in _one_line(
        capsys, "python -m spokester_env.bench"
    )


def test_bench_without_egl_measures_tiny_alone_and_says_so(no_egl, capsys):
    rows = bench.main(["--sizes", "16", "--seconds", "0.05", "--json"])
    out, err = capsys.readouterr()
    assert json.loads(out) == rows and [(r["backend"], r["driver"]) for r in rows] == [("tiny", "TinyRenderer")]
    assert err.startswith("python -m spokester_env.bench: not measuring gl: backend='gl': no OpenGL 3.3 context")
    assert "eglGetDisplay failed (no device)" in err and len(err.splitlines()) == 1


def test_bench_of_gl_without_egl_is_a_one_line_error(no_egl, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--backends", "gl", "--sizes", "16", "--seconds", "0.05"])
    line = _one_line(capsys, "python -m spokester_env.bench")
    assert exit_.value.code == 1 and "eglGetDisplay failed (no device)" in line and "use backend='tiny'" in line
