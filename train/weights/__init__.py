"""Third-party network weights shipped with ``train`` (see NOTICE.md here for sources and licences)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
TERMS = {
    "mobile_pydnet_pruned35.tflite": "PyDNet weights MIT (Zeeshan Khan Suri), trained on KITTI: CC BY-NC-SA 3.0, "
    "non-commercial",
    "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite": "DeepLab weights Apache-2.0 (Google), trained on "
    "Cityscapes labels: non-commercial",
}
"""The terms that travel with each shipped network and with what is trained on its outputs (NOTICE.md here)."""


def weight_file(name: str) -> Path:
    """The path of a shipped weights file, with a clear error when the package was installed without it."""
    path = WEIGHTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shipped weights missing; reinstall spokester with its package data")
    return path
