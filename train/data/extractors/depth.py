"""Monocular depth as relative inverse depth on the clip's square.

Relative inverse depth: larger = nearer, positive, with an unknown scale and offset per network (and in
practice per scene). The label store keeps it raw; its statistics (percentiles of its log) are what aligns it to
the game's inverse depth in 1/m, never a constant here.

Depth networks see the whole frame at their own aspect (PyDNet was trained on wide KITTI frames), then
the map is cropped and resized to the centred square in one resampling (``CropBox.affine_from``).
Letters: ``n`` frames, ``s`` clip side, ``h``/``w`` source frame, ``gh``/``gw`` the network's output grid.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from spokester_train.data.extractors.base import (
    FrameLabeler,
    StreamSpec,
    load_litert,
    register,
    require_local_weights,
    require_transformers,
)
from spokester_train.data.video import CropBox
from spokester_train.weights import weight_file

DEPTH_UNITS = "relative inverse depth: larger = nearer, unknown scale and offset (sky is not 0)"


def crop_map(grid: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """(gh, gw) map covering the full frame -> (s, s) float32 map of the box's square."""
    import cv2

    matrix = box.affine_from(grid.shape[1], grid.shape[0], size)
    return cv2.warpAffine(
        grid.astype(np.float32),
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


@register("depth", "pydnet")
class PyDNetDepth(FrameLabeler):
    """Mobile PyDNet (self-supervised on KITTI; MIT; KITTI non-commercial) through LiteRT, shipped in
    ``train/weights``. Input float32 NCHW RGB in [0, 1]; the negated output is relative inverse depth.

    Args:
        net_size: (width, height) the whole frame is resized to; multiples of 64, wide like 640x192.
        threads: CPU threads for LiteRT (default: up to 4).
    """

    kind = "depth"
    WEIGHTS = "mobile_pydnet_pruned35.tflite"

    def __init__(self, net_size: tuple[int, int] = (640, 192), threads: int | None = None):
        width, height = (int(v) for v in net_size)
        if width % 64 or height % 64:
            raise ValueError(f"pydnet net_size must be multiples of 64, got {width}x{height}")
        self.net_size = (width, height)
        self._net = load_litert(weight_file(self.WEIGHTS), threads)
        self._input = self._net.get_input_details()[0]["index"]
        self._net.resize_tensor_input(self._input, [1, 3, height, width])
        self._net.allocate_tensors()
        self._output = self._net.get_output_details()[0]["index"]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "weights": self.WEIGHTS, "net_size": list(self.net_size)}

    def streams(self, size: int) -> dict[str, StreamSpec]:
        return {"depth": StreamSpec((size, size), "float16", DEPTH_UNITS)}

    def inverse_depth(self, frame: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 full frame -> (gh, gw) float32 relative inverse depth at half the net size."""
        import cv2

        x = cv2.resize(frame, self.net_size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        self._net.set_tensor(self._input, np.ascontiguousarray(x.transpose(2, 0, 1)[None]))  # (1, 3, H, W)
        self._net.invoke()
        return -self._net.get_tensor(self._output)[0, 0]  # (gh, gw), negated: larger = nearer

    def __call__(self, frames: np.ndarray, box: CropBox, size: int) -> dict[str, np.ndarray]:
        depth = np.stack([crop_map(self.inverse_depth(f), box, size) for f in frames])  # (n, s, s)
        return {"depth": depth}


@register("depth", "depth-anything-v2-small")
class DepthAnythingV2(FrameLabeler):
    """Depth-Anything-V2-Small (Apache-2.0) through ``transformers``, from a local checkpoint folder
    (e.g. a download of ``depth-anything/Depth-Anything-V2-Small-hf``). Its output is relative inverse
    depth (affine-invariant disparity). Not exercised by the default tests (needs transformers + weights).

    Args:
        weights: local folder with ``config.json`` and the weights.
        short_side: the frame's short side at the network input (rounded to its 14-pixel patches).
        device: torch device string.
    """

    kind = "depth"
    MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # ImageNet normalisation of the checkpoint
    STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

    def __init__(self, weights: str | os.PathLike | None = None, short_side: int = 518, device: str = "cpu"):
        self.weights = require_local_weights(self.name, weights, "depth-anything/Depth-Anything-V2-Small-hf")
        transformers = require_transformers(self.name)
        import torch

        self._torch = torch
        self.short_side, self.device = int(short_side), device
        model = transformers.AutoModelForDepthEstimation.from_pretrained(self.weights, local_files_only=True)
        self._model = model.to(device).eval()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "weights": self.weights.name, "short_side": self.short_side}

    def streams(self, size: int) -> dict[str, StreamSpec]:
        return {"depth": StreamSpec((size, size), "float16", DEPTH_UNITS)}

    def __call__(self, frames: np.ndarray, box: CropBox, size: int) -> dict[str, np.ndarray]:
        import cv2

        h, w = frames.shape[1:3]
        scale = self.short_side / min(h, w)
        net_w, net_h = (max(14, round(v * scale / 14) * 14) for v in (w, h))
        out = []
        for frame in frames:
            x = cv2.resize(frame, (net_w, net_h), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
            x = (x - self.MEAN) / self.STD
            pixels = self._torch.from_numpy(x.transpose(2, 0, 1)[None].copy()).to(self.device)
            with self._torch.no_grad():
                grid = self._model(pixel_values=pixels).predicted_depth[0]  # (gh, gw)
            out.append(crop_map(grid.float().cpu().numpy(), box, size))
        return {"depth": np.stack(out)}
