"""The training path on CUDA: batches decoded on the GPU, and one step of each attention backend with and
without recomputation. Marked `gpu` (deselected by default; `pytest -m gpu` on a machine with CUDA)."""

import re

import pytest
import torch

from train.bench import main as bench_main

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_decoded_on_the_gpu_equal_the_cpu_ones(tmp_path, road_clip, workers):
    pytest.importorskip("av", reason="extracting the test cache decodes video with PyAV")
    pytest.importorskip("cv2", reason="extracting the test cache runs OpenCV")
    from neural_render import ConditionStats
    from train.batches import ClipBatches, prepare_caches
    from train.cache import video_source_stats

    videos = [f"{road_clip}@0:12"]
    kw = dict(cache_root=tmp_path, extractors={"flow": "dis", "depth": "pydnet", "teacher": "deeplab"}, skips=(1,))
    caches = prepare_caches(videos, 32, progress=False, **kw)
    stats = ConditionStats(sources={"video/road_clip": video_source_stats(caches[0], (1,), sky_to_zero=True)})
    cpu = ClipBatches(caches, videos, stats, 2, (1,), 0, True, sky_to_zero=True)
    with ClipBatches(caches, videos, stats, 2, (1,), 0, True, sky_to_zero=True, workers=workers) as gpu:
        for _ in range(2):
            expected, got = cpu.next(3, "cpu"), gpu.next(3, "cuda")
            for key in ("x", "cond", "teacher"):
                assert got[key].is_cuda
                torch.testing.assert_close(got[key].cpu(), expected[key], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("recompute", ["--checkpoint-activations", "--no-checkpoint-activations"])
def test_one_training_step_of_each_backend_on_the_gpu(capsys, recompute):
    shape = ["--size", "64", "--clip-frames", "8", "--batch", "2", "--stage", "0"]
    bench_main(["--preset", "gpu-base", "--no-compile", "--attention", "sdpa", "flex", "--steps", "1", "--warmup", "1",
                *shape, recompute])  # fmt: skip
    out = capsys.readouterr().out
    assert len(re.findall(r"64\^2 x 8 frames x batch 2, (sdpa|flex).*ms/step", out)) == 2, out
