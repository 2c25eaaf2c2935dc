"""Third-party network weights shipped with ``train`` (see NOTICE.md here for sources and licences)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent


def weight_file(name: str) -> Path:
    """The path of a shipped weights file, with a clear error when the package was installed without it."""
    path = WEIGHTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shipped weights missing; reinstall spokester with its package data")
    return path
