"""Frozen image encoders whose patch features are the iREPA teacher, computed once per frame.

A teacher sees the clip's centred square (so its feature grid lines up with the clip frames) at its own
input size, and writes a ``teacher`` stream of (gh, gw, c) features per frame; the training side
normalises them per sample. Letters: ``n`` frames, ``s`` clip side, ``gh``/``gw``/``c`` feature grid.
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


def _square(frame: np.ndarray, box: CropBox, side: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (side, side, 3) uint8 of the box's square, resampled from the full frame."""
    import cv2

    square = box.crop(frame)
    interp = cv2.INTER_AREA if box.side > side else cv2.INTER_LINEAR
    return cv2.resize(square, (side, side), interpolation=interp)


@register("teacher", "deeplab")
class DeepLabFeatures(FrameLabeler):
    """DeepLab / MobileNet-EdgeTPU trained on Cityscapes (Apache-2.0; Cityscapes non-commercial), int8,
    through LiteRT, shipped in ``train/weights``.

    Writes ``teacher``: the intermediate tensor ``concat_projection/Relu`` (33, 33, 128) as its uint8
    codes (a quantised stream: ``StreamSpec.decode`` gives the dequantised activations), and one mask per
    entry of `MASKS`, on the clip square: ``sky`` (1 where its 19-class segmentation says sky) and ``cars``
    (1 where it says car, truck or bus). The masks come from the full-resolution square the features see:
    read from a 128 x 128 frame blown up to 513, DeepLab finds cars on much of a sunlit road.

    Args:
        threads: CPU threads for LiteRT (default: up to 4).
    """

    kind = "teacher"
    WEIGHTS = "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"
    FEATURES = "concat_projection/Relu"
    INPUT_SIDE = 513
    CLASSES = (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
        "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    )  # fmt: skip
    """The 19 Cityscapes training classes, in the order of the segmentation's class indices."""
    MASKS = {"sky": ("sky",), "cars": ("car", "truck", "bus")}
    """The mask streams written, each 1 where the segmentation gives one of its Cityscapes classes."""

    def __init__(self, threads: int | None = None):
        self._net = load_litert(weight_file(self.WEIGHTS), threads, preserve_all_tensors=True)
        entry = self._net.get_input_details()[0]
        self._input, (self._in_scale, self._in_zero) = entry["index"], entry["quantization"]
        # the converter fuses names: the tensor is "concat_projection/Relu;concat_projection/add_fold;..."
        matches = [d for d in self._net.get_tensor_details() if d["name"].split(";")[0] == self.FEATURES]
        if len(matches) != 1:
            raise ValueError(f"{self.WEIGHTS}: {len(matches)} tensors named {self.FEATURES}, expected 1")
        self._features = matches[0]["index"]
        self._feat_scale, self._feat_zero = matches[0]["quantization"]
        self.grid = tuple(int(v) for v in matches[0]["shape"][1:])  # (33, 33, 128)
        self._segmentation = self._net.get_output_details()[0]["index"]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "weights": self.WEIGHTS, "tensor": self.FEATURES, "masks": list(self.MASKS)}

    def streams(self, size: int) -> dict[str, StreamSpec]:
        return {
            "teacher": StreamSpec(
                self.grid,
                "uint8",
                f"{self.FEATURES} activations (>= 0), int8 codes",
                scale=float(self._feat_scale),
                offset=-float(self._feat_scale) * float(self._feat_zero),
            ),
        } | {
            name: StreamSpec((size, size), "uint8", f"1 = {' / '.join(classes)} by the Cityscapes segmentation, else 0")
            for name, classes in self.MASKS.items()
        }

    def features(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(513, 513, 3) uint8 -> ((33, 33, 128) uint8 feature codes, (513, 513) int class map)."""
        x = square.astype(np.float32) / 127.5 - 1.0  # the model's [-1, 1] input, then its int8 grid
        q = np.clip(np.round(x / self._in_scale + self._in_zero), 0, 255).astype(np.uint8)
        self._net.set_tensor(self._input, q[None])
        self._net.invoke()
        codes = self._net.get_tensor(self._features)[0].copy()  # (33, 33, 128) uint8
        return codes, self._net.get_tensor(self._segmentation)[0]

    def __call__(self, frames: np.ndarray, box: CropBox, size: int) -> dict[str, np.ndarray]:
        import cv2

        ids = {name: [self.CLASSES.index(c) for c in classes] for name, classes in self.MASKS.items()}
        feats, masks = [], {name: [] for name in self.MASKS}
        for frame in frames:
            f, classes = self.features(_square(frame, box, self.INPUT_SIDE))
            feats.append(f)
            for name, wanted in ids.items():
                mask = np.isin(classes, wanted).astype(np.float32)
                masks[name].append(cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA) >= 0.5)
        return {"teacher": np.stack(feats)} | {name: np.stack(m).astype(np.uint8) for name, m in masks.items()}


@register("teacher", "dinov2")
class DINOv2Features(FrameLabeler):
    """DINOv2 (or another ViT with a CLS token and optional register tokens) through ``transformers``
    from a local checkpoint folder, e.g. a download of ``facebook/dinov2-small``. Writes ``teacher``:
    its last hidden state's patch tokens, (side/patch, side/patch, width). Not exercised by default tests.

    Args:
        weights: local folder with ``config.json`` and the weights.
        input_side: side of the square network input (a multiple of the patch size).
        device: torch device string.
    """

    kind = "teacher"
    MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

    def __init__(self, weights: str | os.PathLike | None = None, input_side: int = 224, device: str = "cpu"):
        self.weights = require_local_weights(self.name, weights, "facebook/dinov2-small")
        transformers = require_transformers(self.name)
        import torch

        self._torch = torch
        model = transformers.AutoModel.from_pretrained(self.weights, local_files_only=True)
        self._model = model.to(device).eval()
        patch = int(model.config.patch_size)
        if input_side % patch:
            raise ValueError(f"input_side {input_side} is not a multiple of the patch size {patch}")
        self.input_side, self.device = int(input_side), device
        self._skip = 1 + int(getattr(model.config, "num_register_tokens", 0))  # CLS + registers
        side = input_side // patch
        self.grid = (side, side, int(model.config.hidden_size))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "weights": self.weights.name, "input_side": self.input_side}

    def streams(self, size: int) -> dict[str, StreamSpec]:
        return {"teacher": StreamSpec(self.grid, "float16", "last hidden state, patch tokens")}

    def __call__(self, frames: np.ndarray, box: CropBox, size: int) -> dict[str, np.ndarray]:
        squares = np.stack([_square(f, box, self.input_side) for f in frames]).astype(np.float32) / 255.0
        x = (squares - self.MEAN) / self.STD  # (n, side, side, 3)
        pixels = self._torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(self.device)
        with self._torch.no_grad():
            tokens = self._model(pixel_values=pixels).last_hidden_state[:, self._skip :]  # (n, gh*gw, c)
        return {"teacher": tokens.float().cpu().numpy().reshape(len(frames), *self.grid)}
