"""Image inputs: a folder of PNG / JPEG files, an ``.npy`` array, or an HDF5 file.

- **Folder**: every ``.png``, ``.jpg`` and ``.jpeg`` under it (any depth), in sorted order of
  their relative paths, which are the ids. When every image sits in a sub-folder, the first
  sub-folder is its label (``digits/3/img_0001.png`` -> ``3``), used only by ``evaluate``.
  Grayscale images give one channel, anything else RGB (alpha dropped); when both occur, the
  grayscale ones are repeated to three channels. Decoding needs Pillow (``pip install
  'diffaug-genomics[images]'``; matplotlib brings it too).
- **.npy**: ``(N, H, W)`` or ``(N, H, W, C)`` with C in 1, 3, 4 (channels last), any numeric
  dtype; ids are ``"0"``, ``"1"``, ...
- **HDF5**: a dataset ``/images`` shaped as for ``.npy``, optional ``/ids`` and ``/labels``
  (strings, one per image).

Values are returned as read, ``(N, H, W, C)``: the modality scales them to [-1, 1] (integer
dtypes by their full range, floats by the training data's range). All images must have one
size: a different one is an :class:`InputError` naming the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffaug_genomics.errors import InputError
from diffaug_genomics.io.samples import ReadOptions, Samples, list_images, load_npy, npy_kind
from diffaug_genomics.io.values import check_real_dtype, first_bad_value


def _no_label_options(path: Path, options: ReadOptions) -> None:
    if options.label_column is not None or options.obs_key is not None:
        raise InputError("--label-column / --obs-key do not apply to images (labels come from "
                         "sub-folder names or /labels)", path=path)


def _pillow():  # noqa: ANN202 - the PIL.Image module
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading PNG/JPEG needs Pillow: pip install 'diffaug-genomics[images]' "
                         "(or pillow)") from None
    return Image


def _as_nhwc(arr: np.ndarray, path: Path) -> np.ndarray:
    kind = npy_kind(tuple(arr.shape))
    if kind != "image" or arr.shape[0] == 0:
        raise InputError(f"array of shape {arr.shape}: expected (N, H, W) or (N, H, W, C) with "
                         "C in 1, 3, 4 and N > 0", path=path)
    check_real_dtype(arr.dtype, path, "pixel values")
    found = first_bad_value(arr)
    if found is not None:
        what = "NaN or infinite values" if "finite" in found[3] else "values beyond float32"
        raise InputError(f"image {found[0]} holds {what} ({found[2]})", path=path)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.shape[-1] == 4:  # RGBA: drop alpha
        arr = arr[..., :3]
    return arr


def read_image_folder(folder: Path) -> Samples:
    """Read every PNG / JPEG under ``folder`` (rules in the module docstring)."""
    files = list_images(folder)
    if not files:
        raise InputError("folder holds no PNG or JPEG images", path=folder)
    image = _pillow()
    arrays: list[np.ndarray] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for file in files:
        try:
            with image.open(file) as im:
                im.load()
                gray = im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
                if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    arr = np.asarray(im, dtype=np.float32)
                    arr = arr / (65535.0 if im.mode.startswith("I") else max(1.0, float(arr.max())))
                    arr = (arr * 255.0).round().clip(0, 255).astype(np.uint8)
                else:
                    arr = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read image ({exc.__class__.__name__}: {exc})",
                             path=file) from None
        if arr.ndim == 2:
            arr = arr[..., None]
        size = (arr.shape[0], arr.shape[1])
        if first is None:
            first = (file, size)
        elif size != first[1]:
            raise InputError(f"image is {size[0]}x{size[1]} (height x width) but "
                             f"{first[0].relative_to(folder).as_posix()} is "
                             f"{first[1][0]}x{first[1][1]}; all images must have one size",
                             path=file)
        arrays.append(arr)
    channels = {a.shape[-1] for a in arrays}
    if channels == {1, 3}:
        arrays = [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in arrays]
    ids = [f.relative_to(folder).as_posix() for f in files]
    nested = [len(Path(i).parts) > 1 for i in ids]
    labels = [Path(i).parts[0] for i in ids] if all(nested) else None
    return Samples(np.stack(arrays), ids, labels, "image-folder", label_key="folder")


def read_images(path: Path, options: ReadOptions) -> Samples:
    """Read an image folder, ``.npy`` or HDF5 file into ``(N, H, W, C)`` samples."""
    _no_label_options(path, options)
    if path.is_dir():
        return read_image_folder(path)
    if path.suffix.lower() == ".npy":
        arr = load_npy(path)
        arr = _as_nhwc(arr, path)
        return Samples(arr, [str(i) for i in range(len(arr))], None, "image-npy")
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"expected an image folder, .npy or HDF5 file with /images "
                         f"({exc.__class__.__name__})", path=path) from None
    with f:
        if "images" not in f or not isinstance(f["images"], h5py.Dataset):
            raise InputError("HDF5 file has no /images dataset", path=path)
        arr = _as_nhwc(f["images"][()], path)
        n = len(arr)
        ids = [str(i) for i in range(n)]
        labels = None
        for name in ("ids", "labels"):
            if name in f:
                values = [v.decode() if isinstance(v, bytes) else str(v) for v in f[name][()]]
                if len(values) != n:
                    raise InputError(f"/{name} has {len(values)} entries for {n} images", path=path)
                if name == "ids":
                    ids = values
                else:
                    labels = values
    return Samples(arr, ids, labels, "image-h5", label_key="labels" if labels else None)


def write_images_h5(path: str | Path, images: np.ndarray, ids: list[str] | None = None,
                    labels: list[str] | None = None) -> None:
    """Write ``images (N, H, W[, C])`` (and ids, labels) in the layout :func:`read_images` reads."""
    from diffaug_genomics.io.atomic import create_hdf5
    from diffaug_genomics.io.h5 import STR_DTYPE

    with create_hdf5(path) as f:
        f.create_dataset("images", data=images)
        if ids is not None:
            f.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=STR_DTYPE)
        if labels is not None:
            f.create_dataset("labels", data=np.asarray(labels, dtype=object), dtype=STR_DTYPE)
        f.attrs["schema"] = "diffaug-genomics/images/1"
