"""Training packs: label stores squeezed into one file small enough to carry to a GPU host.

    python -m spokester_train.data.pack STORE... --out pack.zip          # make: prints what it kept, as JSON
    python -m spokester_train.data.pack --unpack pack.zip --labels DIR   # label stores again, under DIR

A GPU host that trains the renderer has neither PyAV nor OpenCV (nor the extractors' networks), and a call
to it carries a few tens of MiB. A pack holds what training reads from each label store
(`spokester_train.data.store`), coded to about a tenth of its size with Pillow, numpy and torch alone, and
unpacks into ordinary label stores that training reads as it reads any other:

- frames: one RGB JPEG per frame (`PackOptions.quality`);
- depth: the log of the relative inverse depth, quantised to 8 bits over the store's range, as a greyscale
  JPEG (`label_quality`); a store whose depth is not positive cannot be packed;
- flow at each skip: averaged down to 1/`flow_factor` of the side, quantised to 8 bits symmetrically about
  0 over the store's largest motion, u above v in one greyscale JPEG; unpacked by bilinear upsampling;
- teacher features: their `teacher_components` principal components over the store (the basis is in the
  pack), on a `teacher_grid` x `teacher_grid` grid, 8 bits each; unpacked to the store's own grid,
  channels and codes;
- masks (the sky, extracted and grown (`spokester_train.data.sky`), and the cars): one bit a pixel;
- the car slabs (`spokester_train.data.video_depth.slab_map`), as stored (float16, deflated: mostly zeros), so
  that `--car-slabs` needs no OpenCV on the GPU host;
- the game's condition statistics at the stores' frame size, every camera preset in one scene
  (`spokester_train.data.sources.game_sources_record`), so that a host without pybullet need not ride the
  game.

The zip holds `pack.json` (format version, options, the game's statistics, and per store its manifest and
the codecs' ranges) and, per store folder name, one entry per stream: `frames.jpg` and `frames.index.npy`
(JPEGs of `FRAMES_PER_JPEG` frames stacked top to bottom, back to back, and their byte offsets), likewise
`depth.jpg` and `flow_K.jpg`; `teacher.codes.npy` and `teacher.basis.npy`; `sky.bits.npy`,
`sky_grown.bits.npy`, `cars.bits.npy`; `car_slabs.values.npy`. Making a pack reads what it wrote back and
reports, per store, each stream's bytes in the zip and its fidelity: frames PSNR (dB), median relative depth
error, flow RMSE (pixels) per skip, the mean cosine similarity of the unpacked teacher features to the stored
ones after iREPA's per-clip normalisation (`spokester_train.recipe.irepa.normalise_teacher`), the share of mask
pixels kept, and whether the car slabs came back exactly.

Unpacking writes the game's statistics as a JSON file beside the stores (`game_stats_name`), for
training's `--game-stats`. An unpacked store keeps its folder name and manifest (identity, statistics of the
original streams), with `rows` = `n_frames` and a `packed` record (pack version and name) added, so that it
is never mistaken for an extraction. Both the pack and each unpacked store appear whole or not at all: the pack through
`spokester_env.output.atomic_path`, a store by renaming a finished temporary folder.

Letters: ``n`` frames, ``s`` side, ``gh``/``gw``/``c`` teacher grid and channels, ``k`` components.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spokester_env import DEFAULT_SCENE, SCENE_PRESETS
from spokester_env.commandline import CommandLine, at_least, user_errors
from spokester_env.output import atomic_path, atomic_write_text, check_output, remove_stale_temporaries
from spokester_train.data.sky import GROWN_SKY_FILE, sky_mask
from spokester_train.data.sources import GAME_STATS_FRAMES, game_sources_record
from spokester_train.data.store import LABEL_ROOT_HELP, MANIFEST, LabelStore, default_label_root
from spokester_train.data.video_depth import SLABS_FILE, slab_map

__all__ = ["PACK_MANIFEST", "PACK_VERSION", "PackOptions", "game_stats_name", "make_pack", "read_pack", "unpack"]

PACK_VERSION = 1
"""Layout version of a pack; a pack of another version is refused."""
PACK_MANIFEST = "pack.json"
"""The pack's own manifest, first entry of the zip."""
SLABS = "car_slabs"
"""The pack's name of a store's car slabs (`SLABS_FILE` beside the store, not a stream)."""
MASK_STREAMS = ("sky", "sky_grown", "cars")
"""The one-bit masks a pack carries; `sky_grown` is the grown mask stored beside a store (not a stream)."""
EPS = 1e-6
FRAMES_PER_JPEG = 16
"""Frames stacked in one JPEG: a JPEG's own tables (about 600 bytes) would otherwise cost more than a
flow image's data."""


@dataclass(frozen=True)
class PackOptions:
    """How hard a pack squeezes; the defaults fit six clips of 128² footage (2,500 frames) in about 30 MiB."""

    quality: int = 85
    """JPEG quality of the RGB frames (1-95)."""
    label_quality: int = 90
    """JPEG quality of the depth and flow images (1-95)."""
    flow_factor: int = 2
    """Flow is kept at 1/`flow_factor` of the frame side (must divide it)."""
    teacher_components: int = 12
    """Principal components kept of the teacher's features."""
    teacher_grid: int = 17
    """Side of the grid the components are kept on."""

    def __post_init__(self):
        if not (1 <= self.quality <= 95 and 1 <= self.label_quality <= 95):
            raise ValueError(f"quality {self.quality}, label_quality {self.label_quality}: need 1-95 (JPEG)")
        if min(self.flow_factor, self.teacher_components, self.teacher_grid) < 1:
            raise ValueError(f"{self}: flow_factor, teacher_components and teacher_grid must be >= 1")


def _pillow():
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError('training packs need Pillow: pip install "spokester[train]"') from error
    return Image


# --- codecs: each `_encode_*` returns {entry suffix: bytes} and a JSON-able record; `_decode_*` inverts ----------


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array))
    return buffer.getvalue()


def _jpegs(images: np.ndarray, quality: int) -> dict[str, bytes]:
    """(n, h, w[, 3]) uint8 -> {"jpg": JPEGs of `FRAMES_PER_JPEG` frames stacked top to bottom, back to back;
    "index.npy": their byte offsets}. Sides that are multiples of 16 keep every frame's blocks its own."""
    image_module, blobs = _pillow(), []
    for first in range(0, len(images), FRAMES_PER_JPEG):
        strip = np.concatenate(images[first : first + FRAMES_PER_JPEG], axis=0)  # (m h, w[, 3])
        buffer = io.BytesIO()
        image_module.fromarray(np.ascontiguousarray(strip)).save(buffer, "JPEG", quality=quality)
        blobs.append(buffer.getvalue())
    offsets = np.cumsum([0, *map(len, blobs)]).astype(np.int64)
    return {"jpg": b"".join(blobs), "index.npy": _npy(offsets)}


def _unjpegs(entries: dict[str, bytes], n: int) -> np.ndarray:
    """The `n` images of `_jpegs`' entries, (n, h, w[, 3]) uint8."""
    image_module, data = _pillow(), entries["jpg"]
    offsets = np.load(io.BytesIO(entries["index.npy"]))
    spans = zip(offsets[:-1], offsets[1:], strict=True)
    strips = [np.asarray(image_module.open(io.BytesIO(data[a:b]))) for a, b in spans]
    rows = np.concatenate(strips, axis=0)
    return rows.reshape(n, len(rows) // n, *rows.shape[1:])


def _to_codes(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip(np.round((values - low) / max(high - low, EPS) * 255), 0, 255).astype(np.uint8)


def _from_codes(codes: np.ndarray, low: float, high: float) -> np.ndarray:
    return codes.astype(np.float32) / 255 * np.float32(high - low) + np.float32(low)


def _encode_depth(depth: np.ndarray, quality: int, name: str) -> tuple[dict[str, bytes], dict]:
    """(n, s, s) positive inverse depth -> 8-bit log codes as greyscale JPEGs."""
    low, high = float(np.min(depth)), float(np.max(depth))
    if not low > 0:
        raise ValueError(f"{name}: depth must be positive to pack (its least value is {low:g})")
    low, high = math.log(low), math.log(high)
    codes = np.stack([_to_codes(np.log(frame.astype(np.float32)), low, high) for frame in depth])
    return _jpegs(codes, quality), {"log_low": low, "log_high": high}


def _decode_depth(entries: dict[str, bytes], record: dict, n: int) -> np.ndarray:
    codes = _unjpegs(entries, n)
    return np.exp(_from_codes(codes, record["log_low"], record["log_high"])).astype(np.float16)


def _encode_flow(flow: np.ndarray, factor: int, quality: int, name: str) -> tuple[dict[str, bytes], dict]:
    """(n, s, s, 2) pixels -> averaged down by `factor`, 8-bit symmetric codes, u above v in one JPEG."""
    side = flow.shape[1]
    if side % factor:
        raise ValueError(f"{name}: flow_factor {factor} does not divide the frame side {side}")
    small = []
    for frame in flow:
        field = torch.from_numpy(frame.astype(np.float32)).permute(2, 0, 1)[None]  # (1, 2, s, s)
        small.append(F.avg_pool2d(field, factor)[0].numpy() / factor)  # (2, s/f, s/f), pixels of the small grid
    small = np.stack(small)  # (n, 2, s/f, s/f)
    reach = max(float(np.abs(small).max()), EPS)
    codes = _to_codes(small, -reach, reach)  # (n, 2, s/f, s/f)
    return _jpegs(codes.reshape(len(codes), -1, codes.shape[-1]), quality), {"reach": reach, "factor": factor}


def _decode_flow(entries: dict[str, bytes], record: dict, n: int) -> np.ndarray:
    codes = _unjpegs(entries, n)  # (n, 2 s/f, s/f)
    n, rows, cols = codes.shape
    small = _from_codes(codes, -record["reach"], record["reach"]).reshape(n, 2, rows // 2, cols)
    factor = record["factor"]
    full = F.interpolate(torch.from_numpy(small), scale_factor=factor, mode="bilinear", align_corners=False)
    return (full * factor).permute(0, 2, 3, 1).numpy().astype(np.float16)  # (n, s, s, 2)


def _teacher_values(store: LabelStore) -> np.ndarray:
    return store.spec("teacher").decode(np.asarray(store.stream("teacher")))  # (n, gh, gw, c) float32


def _encode_teacher(store: LabelStore, options: PackOptions, seed: int = 0) -> tuple[dict[str, bytes], dict]:
    """Teacher features -> principal components over the store, on a coarser grid, 8 bits each."""
    values = _teacher_values(store)
    n, gh, gw, channels = values.shape
    tokens = values.reshape(-1, channels)
    rows = np.random.default_rng(seed).choice(len(tokens), min(len(tokens), 65_536), replace=False)
    mean = tokens[rows].mean(axis=0)
    _, _, basis = np.linalg.svd(tokens[rows] - mean, full_matrices=False)
    basis = basis[: min(options.teacher_components, channels)]  # (k, c)
    grid = min(options.teacher_grid, gh, gw)
    coefficients = []
    for frame in values:
        maps = torch.from_numpy((frame.reshape(-1, channels) - mean) @ basis.T).reshape(1, gh, gw, -1)
        coefficients.append(F.adaptive_avg_pool2d(maps.permute(0, 3, 1, 2), grid)[0].permute(1, 2, 0).numpy())
    coefficients = np.stack(coefficients)  # (n, grid, grid, k)
    low, high = coefficients.min(axis=(0, 1, 2)), coefficients.max(axis=(0, 1, 2))
    codes = np.stack([_to_codes(coefficients[..., j], low[j], high[j]) for j in range(len(basis))], axis=-1)
    record = {"low": low.tolist(), "high": high.tolist(), "grid": [gh, gw]}
    return {"codes.npy": _npy(codes), "basis.npy": _npy(np.concatenate([mean[None], basis]).astype(np.float32))}, record


def _decode_teacher_values(entries: dict[str, bytes], record: dict) -> np.ndarray:
    codes = np.load(io.BytesIO(entries["codes.npy"]))  # (n, grid, grid, k)
    basis = np.load(io.BytesIO(entries["basis.npy"]))  # (1 + k, c)
    mean, basis = basis[0], basis[1:]
    coefficients = np.stack(
        [_from_codes(codes[..., j], record["low"][j], record["high"][j]) for j in range(len(basis))], axis=-1
    )
    maps = F.interpolate(
        torch.from_numpy(coefficients).permute(0, 3, 1, 2), size=tuple(record["grid"]), mode="bilinear",
        align_corners=False,
    ).permute(0, 2, 3, 1).numpy()  # fmt: skip
    return maps @ basis + mean  # (n, gh, gw, c)


def _encode_bits(mask: np.ndarray) -> dict[str, bytes]:
    return {"bits.npy": _npy(np.packbits(np.asarray(mask) > 0))}


def _decode_bits(entries: dict[str, bytes], shape: tuple[int, ...]) -> np.ndarray:
    bits = np.load(io.BytesIO(entries["bits.npy"]))
    return np.unpackbits(bits, count=math.prod(shape)).reshape(shape).astype(np.uint8)


# --- one store ---------------------------------------------------------------------------------------------------


def _pack_store(store: LabelStore, options: PackOptions) -> tuple[dict[str, bytes], dict]:
    """The entries (by name inside the store's folder) and the record of one label store."""
    name = str(store.dir)
    entries: dict[str, bytes] = {}
    codecs: dict[str, Any] = {}

    def add(stream: str, coded: dict[str, bytes], record: dict | None = None) -> None:
        entries.update({f"{stream}.{suffix}": data for suffix, data in coded.items()})
        codecs[stream] = record or {}

    for stream in store.streams:
        if stream == "frames":
            add(stream, _jpegs(np.asarray(store.stream(stream)), options.quality))
        elif stream == "depth":
            add(stream, *_encode_depth(np.asarray(store.stream(stream)), options.label_quality, name))
        elif stream.startswith("flow_"):
            flow = np.asarray(store.stream(stream))
            add(stream, *_encode_flow(flow, options.flow_factor, options.label_quality, name))
        elif stream == "teacher":
            add(stream, *_encode_teacher(store, options))
        elif stream in MASK_STREAMS:
            add(stream, _encode_bits(store.stream(stream)))
        else:
            raise ValueError(f"{name}: no pack codec for stream {stream!r}")
    if "sky" in store.streams:
        add("sky_grown", _encode_bits(sky_mask(store)))
    if "cars" in store.streams and "depth" in store.streams:
        add(SLABS, {"values.npy": _npy(np.asarray(slab_map(store)))})
    manifest = dict(store.manifest)
    return entries, {"folder": store.dir.name, "manifest": manifest, "codecs": codecs}


def _decode_store(entries: dict[str, bytes], record: dict) -> dict[str, np.ndarray]:
    """Every stream of one packed store as its label store holds it (plus the grown sky mask)."""
    manifest = record["manifest"]
    n = manifest["n_frames"]
    arrays = {}
    for stream, codec in record["codecs"].items():
        mine = {key[len(stream) + 1 :]: data for key, data in entries.items() if key.startswith(stream + ".")}
        if stream == "frames":
            arrays[stream] = _unjpegs(mine, n)
        elif stream == "depth":
            arrays[stream] = _decode_depth(mine, codec, n)
        elif stream.startswith("flow_"):
            arrays[stream] = _decode_flow(mine, codec, n)
        elif stream == "teacher":
            spec = manifest["streams"]["teacher"]
            values = _decode_teacher_values(mine, codec)
            scale, offset = spec["scale"], spec["offset"]
            arrays[stream] = np.clip(np.round((values - offset) / scale), 0, 255).astype(np.uint8)
        elif stream == SLABS:
            arrays[stream] = np.load(io.BytesIO(mine["values.npy"]))
        elif stream in MASK_STREAMS:
            arrays[stream] = _decode_bits(
                mine, (n, *manifest["streams"]["sky" if stream == "sky_grown" else stream]["shape"])
            )
    for stream, array in arrays.items():
        if len(array) != n:
            raise ValueError(f"{record['folder']}/{stream}: {len(array)} frames in the pack, its manifest says {n}")
    return arrays


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 10 * math.log10(255**2 / max(mse, 1e-10))


def _teacher_cosine(stored: np.ndarray, unpacked: np.ndarray, clip: int = 8) -> float:
    """Mean cosine similarity of two (n, gh, gw, c) feature sets after iREPA's normalisation per clip of
    `clip` frames (the alignment target training sees)."""
    from spokester_train.recipe.irepa import normalise_teacher

    usable = len(stored) // clip * clip or len(stored)
    a = torch.from_numpy(stored[:usable]).reshape(-1, min(clip, usable), *stored.shape[1:])
    b = torch.from_numpy(unpacked[:usable]).reshape(a.shape)
    return float(F.cosine_similarity(normalise_teacher(a), normalise_teacher(b), dim=-1).mean())


def _fidelity(store: LabelStore, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """How close the unpacked streams are to the store's."""
    figures: dict[str, Any] = {}
    for stream, array in arrays.items():
        derived = {"sky_grown": sky_mask, SLABS: slab_map}
        original = np.asarray(derived[stream](store) if stream in derived else store.stream(stream))
        if stream == "frames":
            figures["frames_psnr"] = round(_psnr(original, array), 2)
        elif stream == "depth":
            error = np.abs(array.astype(np.float32) / original.astype(np.float32) - 1)
            figures["depth_median_rel_error"] = round(float(np.median(error)), 4)
        elif stream.startswith("flow_"):
            rmse = float(np.sqrt(np.mean((array.astype(np.float32) - original.astype(np.float32)) ** 2)))
            figures[f"{stream}_rmse_px"] = round(rmse, 3)
        elif stream == "teacher":
            spec = store.spec("teacher")
            figures["teacher_cosine"] = round(_teacher_cosine(spec.decode(original), spec.decode(array)), 4)
        elif stream in MASK_STREAMS:
            figures[f"{stream}_agreement"] = round(float(np.mean((original > 0) == (array > 0))), 5)
        elif stream == SLABS:
            figures["car_slabs_exact"] = bool(np.array_equal(original, array))
    return figures


# --- packs -------------------------------------------------------------------------------------------------------


def make_pack(
    stores: Sequence[LabelStore | str | os.PathLike],
    out: str | os.PathLike,
    options: PackOptions = PackOptions(),
    *,
    scene: str = DEFAULT_SCENE,
    seed: int = 0,
    game_frames: int = GAME_STATS_FRAMES,
) -> dict[str, Any]:
    """Pack label stores, and the game's condition statistics at their frame size (every camera preset in
    `scene`, fitted on a ride of `game_frames` frames seeded `seed`: `game_sources_record`), into one zip at
    `out` (atomically); return what it holds: bytes per store and stream, and each store's fidelity (read
    back from the pack just written)."""
    out = check_output(out)
    stores = [LabelStore.of(store) for store in stores]
    folders = [store.dir.name for store in stores]
    if not stores or len(set(folders)) != len(folders):
        raise ValueError(f"stores: give one or more label stores, each once; got {folders}")
    sizes = {store.manifest["resolution"] for store in stores}
    if len(sizes) != 1:
        raise ValueError(f"stores: a pack holds stores of one frame size, got {sorted(sizes)} px")
    _pillow()
    game = game_sources_record(sizes.pop(), game_frames, seed, scene)
    records, report = [], []
    with atomic_path(out) as temporary:
        with zipfile.ZipFile(temporary, "w") as archive:
            for store in stores:
                entries, record = _pack_store(store, options)
                for key, data in entries.items():
                    # JPEGs are compressed already; the rest (codes, bit masks, offsets) deflate well
                    method = zipfile.ZIP_STORED if key.endswith(".jpg") else zipfile.ZIP_DEFLATED
                    archive.writestr(f"{record['folder']}/{key}", data, compress_type=method)
                records.append(record)
            manifest = {"version": PACK_VERSION, "options": asdict(options), "stores": records, "game": game}
            archive.writestr(PACK_MANIFEST, json.dumps(manifest, indent=1), compress_type=zipfile.ZIP_DEFLATED)
        with zipfile.ZipFile(temporary) as archive:
            stored = {info.filename: info.compress_size for info in archive.infolist()}
        for store, (record, entries) in zip(stores, read_pack(temporary)[0], strict=True):
            sizes: dict[str, int] = {}
            for key in entries:
                stream = key.split(".")[0]
                sizes[stream] = sizes.get(stream, 0) + stored[f"{record['folder']}/{key}"]
            arrays = _decode_store(entries, record)
            figures = _fidelity(store, arrays)
            report.append({"store": record["folder"], "frames": store.n_frames, "bytes": sizes, "fidelity": figures})
    fitted = {key: value for key, value in game.items() if key != "sources"}
    return {"pack": str(out), "bytes": out.stat().st_size, "options": asdict(options), "game": fitted, "stores": report}


def read_pack(pack: str | os.PathLike) -> tuple[list[tuple[dict, dict[str, bytes]]], dict]:
    """[(record, {entry name inside the store's folder: bytes}) of every store in a pack], and its game
    statistics (`game_sources_record`); a file that is not a readable pack of this version is a one-line
    ValueError naming it."""
    pack = Path(pack)
    try:
        with zipfile.ZipFile(pack) as archive:
            manifest = json.loads(archive.read(PACK_MANIFEST))
            if manifest.get("version") != PACK_VERSION:
                raise ValueError(f"pack version {manifest.get('version')!r}, this code reads {PACK_VERSION}")
            stores = []
            for record in manifest["stores"]:
                prefix = record["folder"] + "/"
                names = [name for name in archive.namelist() if name.startswith(prefix)]
                stores.append((record, {name[len(prefix) :]: archive.read(name) for name in names}))
            return stores, manifest["game"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{pack}: no such pack") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, ValueError, EOFError) as error:
        raise ValueError(f"{pack}: not a readable training pack ({' '.join(str(error).split())})") from None


def game_stats_name(game: dict) -> str:
    """The file name under which an unpacked pack's game statistics are written."""
    return f"game-{game['size']}px-{game['scene']}-seed{game['seed']}-{game['frames']}f.json"


def unpack(pack: str | os.PathLike, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Unpack every store of `pack` into label stores under `root` (None: the per-user label root), and its
    game statistics into a JSON file beside them (`TrainConfig.game_stats`); return {"stores": their
    folders, "game_stats": that file}. A store already there from the same pack is kept; a different one of
    the same name is an error."""
    root = check_output(root if root is not None else default_label_root(), folder=True, option="--labels")
    stores, game = read_pack(pack)
    root.mkdir(parents=True, exist_ok=True)
    folders = []
    for record, entries in stores:
        final = root / record["folder"]
        manifest = {**record["manifest"], "rows": record["manifest"]["n_frames"]}
        manifest["packed"] = {"version": PACK_VERSION, "pack": Path(pack).name}
        if (final / MANIFEST).is_file():
            if json.loads((final / MANIFEST).read_text()) != manifest:
                raise ValueError(f"--labels {final}: holds another label store of this name; delete it first")
            folders.append(final)
            continue
        remove_stale_temporaries(final)  # a killed unpack's folder
        temporary = root / f".{final.name}.{os.getpid()}.unpacking"
        try:
            temporary.mkdir()
            for stream, array in _decode_store(entries, record).items():
                derived = {"sky_grown": GROWN_SKY_FILE, SLABS: SLABS_FILE}
                name = derived[stream] if stream in derived else manifest["streams"][stream]["file"]
                np.save(temporary / name, array)
            (temporary / MANIFEST).write_text(json.dumps(manifest, indent=1))
            LabelStore(temporary)  # every stream verified against the manifest before it is published
            os.rename(temporary, final)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        folders.append(final)
    game_stats = root / game_stats_name(game)
    atomic_write_text(game_stats, json.dumps(game, indent=1))
    return {"stores": [str(folder) for folder in folders], "game_stats": str(game_stats)}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = CommandLine(prog="python -m spokester_train.data.pack", description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="*", help="label store folders to pack (the extract command prints them)")
    parser.add_argument("--out", help="the pack file to write (a .zip)")
    parser.add_argument("--unpack", metavar="PACK", help="unpack this pack into label stores instead")
    parser.add_argument("--labels", default=None, help=f"with --unpack: {LABEL_ROOT_HELP}")
    defaults = PackOptions()
    parser.add_argument("--quality", type=at_least(1), default=defaults.quality, help="JPEG quality of frames")
    parser.add_argument(
        "--label-quality", type=at_least(1), default=defaults.label_quality, help="JPEG quality of depth and flow"
    )
    parser.add_argument("--flow-factor", type=at_least(1), default=defaults.flow_factor, help="flow kept at 1/F side")
    parser.add_argument(
        "--teacher-components", type=at_least(1), default=defaults.teacher_components, help="teacher components kept"
    )
    parser.add_argument("--teacher-grid", type=at_least(1), default=defaults.teacher_grid, help="teacher grid side")
    parser.add_argument("--scene", choices=SCENE_PRESETS, default=DEFAULT_SCENE, help="game scene of the statistics")
    parser.add_argument("--seed", type=at_least(0), default=0, help="seed of the game ride (the run's --seed)")
    parser.add_argument(
        "--game-frames", type=at_least(2), default=GAME_STATS_FRAMES, help="frames of the game ride (statistics)"
    )
    args = parser.parse_args(argv)
    if bool(args.unpack) == bool(args.stores or args.out):
        parser.error("give label store folders and --out to make a pack, or --unpack PACK (and --labels DIR)")
    if not args.unpack and not (args.stores and args.out):
        parser.error("making a pack needs label store folders and --out")
    with user_errors(parser.prog):
        if args.unpack:
            unpacked = unpack(args.unpack, args.labels)
            print(json.dumps(unpacked))
            return unpacked
        options = PackOptions(
            args.quality, args.label_quality, args.flow_factor, args.teacher_components, args.teacher_grid
        )
        report = make_pack(
            args.stores, args.out, options, scene=args.scene, seed=args.seed, game_frames=args.game_frames
        )
        print(json.dumps(report))
        sys.stderr.write(f"{report['pack']}: {report['bytes'] / 2**20:.1f} MiB, {len(report['stores'])} stores\n")
        return report


if __name__ == "__main__":
    main()
