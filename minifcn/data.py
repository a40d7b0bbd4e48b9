"""Data: a toy shapes dataset, VOC-layout folders on disk, and a batching loader.

Everything here runs on the host in NumPy; only the loader's finished batches move to the
device (once per batch). A dataset is anything with ``len(ds)`` and ``ds[i] -> (image,
mask)``:

- ``image``: float32 (3, H, W), RGB in [0, 1];
- ``mask``:  uint8 (H, W) class indices, ``255`` (``IGNORE_INDEX``) for void pixels, which
  the loss and the metrics skip (the Pascal VOC convention). The loader delivers masks as
  int64, the dtype the loss takes.

The datasets here also say ``classes`` (names), ``num_classes`` and ``ignore_index``.

    train, val = Shapes.splits(2000, 500)               # generated in about a second
    loader = DataLoader(train, batch_size=16, shuffle=True, hflip=True, device="gpu")
    for images, masks in loader:                        # (16, 3, 64, 64), (16, 64, 64)
        ...

    voc = SegmentationFolder("VOCdevkit/VOC2012", split="val", image_size=256,
                             classes=VOC_CLASSES)

Pillow (``pip install "minifcn[train]"``) is needed only for the functions that read or
write image files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

from .backend import (
    Generator,
    array_module,
    default_device,
    derive_seed,
    is_array,
    np,
    resolve_dtype,
    to_device,
    to_numpy,
)
from .checks import as_pair
from .functional.parallel import even_slices

__all__ = [
    "IGNORE_INDEX",
    "PALETTE",
    "CLASS_NAMES_FILE",
    "VOC_CLASSES",
    "VOID_COLOR",
    "FOUR_NEIGHBOURS",
    "DataLoader",
    "SegmentationFolder",
    "ShapeLabels",
    "ShapeObjects",
    "Shapes",
    "class_frequencies",
    "colorize",
    "label_boundary",
    "image_files",
    "load_image",
    "median_frequency_weights",
    "objects_only",
    "read_class_names",
    "save_mask_png",
    "shifted",
    "voc_palette",
    "write_voc_folder",
]

IGNORE_INDEX = 255
"""The label of void pixels (object borders, "don't care"): the loss and the metrics skip
them, as VOC's masks and PyTorch's ``ignore_index=255`` do."""

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
"""Pascal VOC's 21 class names, label 0 (background) to 20 (tvmonitor)."""


# ---------------------------------------------------------------------------------------
# Colours

def voc_palette(num_colors: int = 256) -> np.ndarray:
    """Pascal VOC's colour map: (num_colors, 3) uint8 RGB, colour ``i`` for label ``i``.

    The bits of ``i`` are dealt out to R, G, B in turn and written from the most significant
    bit down, so neighbouring labels get very different colours. Entry 255 is VOC's cream
    void colour (224, 224, 192).
    """
    labels = np.arange(num_colors)
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for level in range(8):
        for channel in range(3):
            bit = (labels >> (3 * level + channel)) & 1
            palette[:, channel] |= (bit << (7 - level)).astype(np.uint8)
    return palette


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# The toy classes wear VOC's first four colours, so a Shapes mask written as a VOC PNG
# (``write_voc_folder``) looks the same in any image viewer as in ``colorize``.
PALETTE = _read_only(voc_palette(4))
"""The colours of the toy classes 0-3, (4, 3) uint8 RGB, read-only: VOC's first four."""
VOID_COLOR = _read_only(voc_palette(256)[IGNORE_INDEX])
"""The colour of void pixels (label 255), (3,) uint8 RGB, read-only: VOC's cream (224, 224,
192)."""


def _palette_table(palette, labels: np.ndarray) -> np.ndarray:
    """A (256, 3) uint8 lookup table from ``palette`` ((K, 3) RGB; ``None``: VOC's), with
    the void colour at 255; ``ValueError`` when ``labels`` use an index it has no colour for."""
    if palette is None:
        return voc_palette(256)
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.ndim != 2 or palette.shape[1] != 3 or not 0 < len(palette) <= IGNORE_INDEX:
        raise ValueError(f"palette must be a (K, 3) array of RGB colours with K <= 255, "
                         f"got shape {palette.shape}")
    uncolored = np.unique(labels[(labels >= len(palette)) & (labels != IGNORE_INDEX)])
    if uncolored.size:
        raise ValueError(f"labels {uncolored.tolist()} have no colour in a palette of "
                         f"{len(palette)}; pass palette=voc_palette() for up to 255 classes")
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:len(palette)] = palette
    table[IGNORE_INDEX] = VOID_COLOR
    return table


def _host_labels(mask, where: str) -> np.ndarray:
    mask = to_numpy(mask)
    if mask.dtype.kind not in "iu":
        raise TypeError(f"{where}: expected an integer mask, got dtype {mask.dtype}")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) > IGNORE_INDEX):
        raise ValueError(f"{where}: mask values must be in [0, 255], got "
                         f"[{int(mask.min())}, {int(mask.max())}]")
    return mask.astype(np.uint8)


def colorize(mask, palette=None) -> np.ndarray:
    """RGB picture of a mask: (..., H, W) labels -> (..., H, W, 3) uint8 on the host.

    ``palette``: (K, 3) RGB colours for labels 0..K-1 (e.g. ``PALETTE``); ``None`` takes
    VOC's colour map, whose first four colours are ``PALETTE``. Void (255) is ``VOID_COLOR``.
    """
    labels = _host_labels(mask, "colorize")
    return _palette_table(palette, labels)[labels]


def _pil():
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError('reading and writing images needs Pillow: pip install '
                          '"minifcn[train]"') from error
    return Image


def save_mask_png(path, mask, palette=None) -> None:
    """Write a (H, W) label mask as a palette ('P' mode) PNG, as VOC stores its masks.

    The pixel values are the labels themselves (read back exactly); ``palette`` (as in
    :func:`colorize`) only sets how viewers show them.
    """
    labels = _host_labels(mask, "save_mask_png")
    if labels.ndim != 2:
        raise ValueError(f"save_mask_png: expected a (H, W) mask, got shape {labels.shape}")
    image = _pil().fromarray(labels)  # mode 'L'; a palette turns it into 'P'
    image.putpalette(_palette_table(palette, labels).tobytes())
    image.save(path, format="PNG")


# ---------------------------------------------------------------------------------------
# The toy dataset

# Object size ("size": a circle's radius, a square's half side) in pixels at 64 x 64,
# scaled in proportion to image_size.
SIZE_RANGE = (6.0, 20.0)
# A triangle of circumradius ``size`` would cover only 41% of a same-size circle's area;
# 1.4 x brings it to 81%, so no class is systematically tiny.
TRIANGLE_SCALE = 1.4
MIN_IMAGE_SIZE = 16
# Object colours are redrawn until this far (Euclidean, in RGB [0, 1]^3) from the
# background under the object's centre, so every object is visible in the image.
MIN_CONTRAST = 0.3
_CONTRAST_ROUNDS = 20
_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ShapeObjects:
    """What the generator drew, slot by slot: K = max_objects slots per image, drawn in
    order (later slots occlude earlier ones); unused slots have class 0.

    classes: (N, K) int64 in {0, 1, 2, 3}; centers: (N, K, 2) float32 (row, column) in
    pixels (pixel (i, j) has its centre at (i + 0.5, j + 0.5)); sizes: (N, K) float32;
    angles: (N, K) float32 radians; colors: (N, K, 3) float32 RGB.
    """

    classes: np.ndarray
    centers: np.ndarray
    sizes: np.ndarray
    angles: np.ndarray
    colors: np.ndarray


class Shapes:
    """Toy segmentation: circles, squares and triangles on a noisy colour gradient.

    Generated in memory, vectorised over the images (about a second for 2500 at 64 x 64),
    deterministic by ``(seed, split)``, no download.

    - Background: a linear gradient between two random colours along a random direction.
    - 1 to 4 objects (``min_objects``, ``max_objects``) per image, each a circle (class 1),
      square (2; half of them rotated by a random angle) or equilateral triangle (3, random
      rotation, circumradius ``TRIANGLE_SCALE`` x size), of size 6 to 20 px at 64 x 64
      (scaled with ``image_size``, or by ``object_scale`` when given: 1.0 keeps the sizes
      in pixels of 64 x 64 images at any image size), at a random position, in a random
      colour that does not depend on the class: the class is in the shape alone. Later
      objects occlude earlier ones, in the image and in the mask.
    - Gaussian pixel noise of standard deviation ``noise``, then clipped to [0, 1].
    - Masks: 0 background, 1 circle, 2 square, 3 triangle, and, with ``void_band``, 255 on
      every pixel with a 4-neighbour of another label (a 1-px band on each side of every
      edge, as VOC marks object outlines).

    Attributes: ``images`` (N, 3, S, S) float32, ``masks`` (N, S, S) uint8, ``objects``
    (a :class:`ShapeObjects`), ``num_objects`` (N,) int64. ``ds[i] -> (images[i], masks[i])``.

    Splits: ``split`` ("train", "val" or "test") and ``seed`` together seed the generator,
    so ``Shapes(n, seed=0, split="val")`` shares no images with the train split of any
    seed. :meth:`splits` builds a train and a validation set at once.
    """

    CLASSES = ("background", "circle", "square", "triangle")
    classes = CLASSES  # the name every dataset here shares (SegmentationFolder.classes)
    num_classes = 4
    ignore_index = IGNORE_INDEX

    def __init__(self, n: int, image_size: int = 64, seed: int = 0, split: str = "train", *,
                 min_objects: int = 1, max_objects: int = 4, noise: float = 0.05,
                 void_band: bool = True, object_scale: float | None = None):
        where = f"Shapes(n={n!r}, image_size={image_size!r})"
        for name, value in (("n", n), ("image_size", image_size), ("seed", seed),
                            ("min_objects", min_objects), ("max_objects", max_objects)):
            if not isinstance(value, Integral) or isinstance(value, bool):
                raise TypeError(f"{where}: {name} must be an int, got {value!r}")
        if n < 0 or seed < 0:
            raise ValueError(f"{where}: n and seed must be >= 0, got n={n}, seed={seed}")
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"{where}: image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
        if not 1 <= min_objects <= max_objects:
            raise ValueError(f"{where}: need 1 <= min_objects <= max_objects, got "
                             f"min_objects={min_objects}, max_objects={max_objects}")
        if split not in _SPLITS:
            raise ValueError(f"{where}: split must be one of {_SPLITS}, got {split!r}")
        if not isinstance(noise, Real) or not 0.0 <= noise < 1.0:
            raise ValueError(f"{where}: noise must be a number in [0, 1), got {noise!r}")
        if object_scale is None:
            object_scale = image_size / 64.0
        if (not isinstance(object_scale, Real) or isinstance(object_scale, bool)
                or not 0.0 < object_scale <= image_size / (2.0 * SIZE_RANGE[1])):
            raise ValueError(f"{where}: object_scale must be a number in (0, "
                             f"{image_size / (2.0 * SIZE_RANGE[1]):g}] (objects must fit in "
                             f"the image), got {object_scale!r}")

        self.image_size, self.seed, self.split = int(image_size), int(seed), split
        rng = Generator(derive_seed(seed, _SPLITS.index(split)))
        gradient = _draw_background(rng, int(n))
        self.objects = _draw_objects(rng, int(n), self.image_size, min_objects, max_objects,
                                     gradient, float(object_scale))
        self.num_objects = (self.objects.classes > 0).sum(axis=1)
        self.images, labels = _render(self.objects, gradient, self.image_size)
        # Noise a block of images at a time: the temporary stays small at any n.
        for block in np.array_split(self.images, max(1, len(self.images) // 256)):
            block += float(noise) * rng.standard_normal(block.shape, dtype="float32")
        np.clip(self.images, 0.0, 1.0, out=self.images)
        self.masks = labels
        if void_band:
            self.masks = np.where(label_boundary(labels), np.uint8(IGNORE_INDEX), labels)

    @classmethod
    def splits(cls, train_size: int, val_size: int, image_size: int = 64, seed: int = 0,
               **kwargs) -> tuple[Shapes, Shapes]:
        """``(train, val)``: the "train" and "val" splits of ``seed`` (no shared images)."""
        return (cls(train_size, image_size, seed, "train", **kwargs),
                cls(val_size, image_size, seed, "val", **kwargs))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.masks[index]

    def __repr__(self) -> str:
        return (f"Shapes(n={len(self)}, image_size={self.image_size}, seed={self.seed}, "
                f"split={self.split!r})")


class ShapeLabels:
    """Toy classification from the world of :class:`Shapes`: one label per image, the
    shape class that covers the most pixels (0 circle, 1 square, 2 triangle).

    The images are Shapes images (same generator, same options), so a classifier trained
    here has seen exactly the kind of picture a segmenter will; the label is derived from
    the mask (without void band, occlusion included): ``pixels[i, k]`` counts the pixels of
    shape class ``k`` in image ``i`` and ``labels = pixels.argmax(axis=1)`` (an exact tie
    goes to the lower class; :attr:`ties` counts them). Every image holds at least one
    object, so every image has a label. Nothing tells the classes apart but their shape:
    colours and sizes are drawn independently of the class.

    Defaults suit :func:`minifcn.models.classifier` and are the task it learns in minutes
    on a CPU: 96 x 96 images (pool5 is 3 x 3, the kernel of FCN's fc6), ONE object per
    image (``max_objects=1``: the label is simply its shape), twice the pixel size of the
    objects of 64 x 64 Shapes images (``object_scale=None``: ``image_size / 48``, 2.0 at
    96 px, objects 12 to 40 px). Measured with the PyTorch twin of the classifier (1000
    images, 5 epochs, Adam lr 1e-3, batch 16, no dropout): 94% validation accuracy at these
    defaults; with objects of 64 x 64 Shapes sizes (``object_scale=1.0``) or at 1.5 it
    stayed near the share of the most common class (a third); with up to 4 objects at 2.0
    ("which shape covers the most pixels") it reached 67%. Every option of Shapes remains
    available (``max_objects=4, object_scale=1.0`` is the harder task).

    Splits: ``(seed, split)`` seeds the generator through a stream of its own, so no
    ShapeLabels split shares images with another, nor with ``Shapes(..., seed, split)``: a
    classifier pre-trained here has never seen the segmentation images.

    Attributes: ``images`` (N, 3, S, S) float32, ``labels`` (N,) int64, ``pixels`` (N, 3)
    int64, ``shapes`` (the underlying :class:`Shapes`, masks without void band).
    ``ds[i] -> (images[i], labels[i])``.
    """

    CLASSES = ("circle", "square", "triangle")
    classes = CLASSES
    num_classes = 3
    ignore_index = -100  # no image is unlabelled; CrossEntropyLoss's default

    STREAM = 9  # mixed into the seed: a stream of random numbers no Shapes split uses

    def __init__(self, n: int, image_size: int = 96, seed: int = 0, split: str = "train", *,
                 max_objects: int = 1, object_scale: float | None = None,
                 **shape_options):
        if not isinstance(seed, Integral) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"ShapeLabels(n={n!r}): seed must be an int >= 0, got {seed!r}")
        if split not in _SPLITS:
            raise ValueError(f"ShapeLabels(n={n!r}): split must be one of {_SPLITS}, got "
                             f"{split!r}")
        own_seed = derive_seed(seed, self.STREAM, _SPLITS.index(split))
        self.seed, self.split = int(seed), split
        if object_scale is None and isinstance(image_size, Real):
            object_scale = image_size / 48.0  # 2.0 at 96 px: see the class docstring
        self.shapes = Shapes(n, image_size, own_seed, "train", max_objects=max_objects,
                             object_scale=object_scale, void_band=False, **shape_options)
        self.image_size = self.shapes.image_size
        self.images = self.shapes.images
        masks = self.shapes.masks
        self.pixels = np.stack([(masks == k + 1).sum(axis=(1, 2)) for k in range(3)],
                               axis=1).astype(np.int64)
        self.labels = self.pixels.argmax(axis=1).astype(np.int64)
        top = self.pixels.max(axis=1, keepdims=True)
        self.ties = int(((self.pixels == top).sum(axis=1) > 1).sum())

    @classmethod
    def splits(cls, train_size: int, val_size: int, image_size: int = 96, seed: int = 0,
               **kwargs) -> tuple[ShapeLabels, ShapeLabels]:
        """``(train, val)``: the "train" and "val" splits of ``seed`` (no shared images)."""
        return (cls(train_size, image_size, seed, "train", **kwargs),
                cls(val_size, image_size, seed, "val", **kwargs))

    def class_balance(self) -> np.ndarray:
        """The share of images of each class, (3,) float64 summing to 1."""
        return np.bincount(self.labels, minlength=self.num_classes) / max(len(self), 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.int64]:
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        return (f"ShapeLabels(n={len(self)}, image_size={self.image_size}, seed={self.seed}, "
                f"split={self.split!r})")


def _draw_background(rng: Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: the gradient's two end colours (N, 3) and its direction (N,) in radians."""
    start = rng.random((n, 3))
    end = rng.random((n, 3))
    direction = rng.uniform(0.0, 2.0 * math.pi, n)
    return start, end, direction


def _gradient_color(gradient, rows, cols, image_size: int) -> np.ndarray:
    """Background colour at pixel positions ``rows``, ``cols`` (arrays broadcasting against
    (N, 1, ...)): (N, 3, ...) float32.

    The colour goes linearly from ``start`` to ``end`` along the direction; the position
    along it, ``t``, is the projection normalised so that it spans (0, 1) over the image.
    """
    start, end, direction = gradient
    along_x, along_y = np.cos(direction), np.sin(direction)
    half = image_size / 2.0
    extent = (np.abs(along_x) + np.abs(along_y)) * image_size  # 2 x the largest projection
    shape = (-1,) + (1,) * (np.ndim(rows) - 1)
    t = 0.5 + ((cols - half) * along_x.reshape(shape) + (rows - half) * along_y.reshape(shape)
               ) / extent.reshape(shape)
    channels = (-1, 3) + (1,) * (t.ndim - 1)
    color = (end - start).reshape(channels) * t[:, None]  # float32 throughout
    color += start.reshape(channels)
    return color


def _draw_objects(rng: Generator, n: int, image_size: int, min_objects: int,
                  max_objects: int, gradient, scale: float) -> ShapeObjects:
    slots = np.arange(max_objects)
    counts = rng.integers(min_objects, max_objects + 1, size=n)
    classes = rng.integers(1, 4, size=(n, max_objects))
    classes = np.where(slots < counts[:, None], classes, 0)

    sizes = rng.uniform(SIZE_RANGE[0] * scale, SIZE_RANGE[1] * scale, (n, max_objects))
    # The centre stays ``size`` away from the border: the inscribed circle is always inside.
    room = image_size - 2.0 * sizes[..., None]
    centers = sizes[..., None] + rng.random((n, max_objects, 2)) * room
    angles = rng.uniform(0.0, 2.0 * math.pi, (n, max_objects))
    axis_aligned = (classes == 2) & (rng.random((n, max_objects)) < 0.5)
    angles = np.where(axis_aligned, np.float32(0.0), angles)

    behind = _gradient_color(gradient, centers[..., 0], centers[..., 1], image_size)
    behind = behind.transpose(0, 2, 1)  # (N, K, 3), like colors
    colors = rng.random((n, max_objects, 3))
    for _ in range(_CONTRAST_ROUNDS):  # each round redraws, at once, every colour too close
        close = np.sqrt(((colors - behind) ** 2).sum(axis=-1)) < MIN_CONTRAST
        if not close.any():
            break
        colors[close] = rng.random((int(close.sum()), 3))
    return ShapeObjects(classes=classes.astype(np.int64), centers=centers.astype(np.float32),
                        sizes=sizes, angles=angles, colors=colors)


def _inside(kind: int, rows, cols, centers, sizes, angles) -> np.ndarray:
    """Which pixels each object covers: (B, S, S) bool for B objects of one kind.

    rows (S, 1), cols (1, S): pixel centres; centers (B, 2); sizes, angles (B,).
    A circle is every point within ``size`` of its centre. A regular polygon is every point
    whose projection onto each side's outward normal is at most the inradius: a square has
    4 normals and inradius ``size``, an equilateral triangle 3 normals and inradius half its
    circumradius.
    """
    dy = rows[None] - centers[:, 0, None, None]
    dx = cols[None] - centers[:, 1, None, None]
    size = sizes[:, None, None]
    if kind == 1:
        return dx * dx + dy * dy <= size * size
    sides, inradius = (4, size) if kind == 2 else (3, 0.5 * TRIANGLE_SCALE * size)
    reach = None
    for side in range(sides):
        normal = angles[:, None, None] + 2.0 * math.pi * side / sides
        projection = dx * np.cos(normal) + dy * np.sin(normal)
        reach = projection if reach is None else np.maximum(reach, projection)
    return reach <= inradius


def _render(objects: ShapeObjects, gradient, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free images (N, 3, S, S) float32 and labels (N, S, S) uint8.

    First find, per pixel, the slot of the object in front (slots painted in order, each
    over all images at once, one kind at a time, so each pixel test runs only on the images
    that hold that kind in that slot); then look up that object's class and colour.
    """
    n = len(objects.classes)
    pixel_centers = np.arange(image_size, dtype=np.float32) + 0.5
    rows, cols = pixel_centers[:, None], pixel_centers[None, :]
    front = np.full((n, image_size, image_size), -1, dtype=np.int8)  # -1: background
    for slot in range(objects.classes.shape[1]):
        for kind in (1, 2, 3):
            hit = np.flatnonzero(objects.classes[:, slot] == kind)
            if hit.size == 0:
                continue
            inside = _inside(kind, rows, cols, objects.centers[hit, slot],
                             objects.sizes[hit, slot], objects.angles[hit, slot])
            front[hit] = np.where(inside, np.int8(slot), front[hit])

    covered = front >= 0
    index = (np.arange(n)[:, None, None], np.maximum(front, 0))  # (image, slot) per pixel
    labels = np.where(covered, objects.classes.astype(np.uint8)[index], np.uint8(0))
    images = _gradient_color(gradient, rows[None], cols[None], image_size)
    for channel in range(3):
        np.copyto(images[:, channel], objects.colors[..., channel][index], where=covered)
    return images, labels


def label_boundary(labels: np.ndarray) -> np.ndarray:
    """(..., H, W) bool: pixels with a 4-neighbour (up, down, left, right) of another label.

    The image border is no boundary. The toy masks' void band is exactly these pixels.
    """
    boundary = np.zeros(labels.shape, dtype=bool)
    vertical = labels[..., 1:, :] != labels[..., :-1, :]  # pixel vs the one below it
    boundary[..., 1:, :] |= vertical
    boundary[..., :-1, :] |= vertical
    horizontal = labels[..., :, 1:] != labels[..., :, :-1]  # pixel vs the one to its right
    boundary[..., :, 1:] |= horizontal
    boundary[..., :, :-1] |= horizontal
    return boundary


FOUR_NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))
"""The (rows, cols) shifts to a pixel's 4-neighbours: below, above, right, left."""


def shifted(a: np.ndarray, rows: int, cols: int, fill) -> np.ndarray:
    """``a`` (..., H, W) moved by ``rows`` down and ``cols`` right (negative: up, left); the
    pixels uncovered get ``fill``, those moved past the border are dropped.

    ``shifted(a, r, c, fill)[..., i, j] == a[..., i - r, j - c]`` wherever that is inside
    ``a``: with the shifts of :data:`FOUR_NEIGHBOURS`, each pixel meets one neighbour's
    value, for whole-mask comparisons without loops (lessons 09 and 12).
    """
    out = np.full_like(a, fill)
    H, W = a.shape[-2:]
    if abs(rows) >= H or abs(cols) >= W:  # moved wholly out of the frame
        return out
    out[..., max(rows, 0):H + min(rows, 0), max(cols, 0):W + min(cols, 0)] = \
        a[..., max(-rows, 0):H + min(-rows, 0), max(-cols, 0):W + min(-cols, 0)]
    return out


def objects_only(masks: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Masks for "object or background": 1 where any object class is, 0 on background
    (label 0), ``ignore_index`` kept where it was. Same shape and dtype as ``masks``.

    Where an object is drawn, blind to which class it is: lessons 09 and 11 score where
    outlines fall with it (object IoU), and lesson 11 trains on it.
    """
    return np.where(masks == ignore_index, ignore_index, masks > 0).astype(masks.dtype)


# ---------------------------------------------------------------------------------------
# Datasets on disk (the Pascal VOC layout)

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# A folder's class names, one a line, label 0 first (see read_class_names).
CLASS_NAMES_FILE = "class_names.txt"
"""The file of a dataset folder that names its classes, one a line (see
``read_class_names``)."""


def read_class_names(path) -> tuple[str, ...]:
    """Class names from a text file: one name a line, the name of label 0 on the first.

    Spaces around a name are dropped and empty lines at the end are ignored. An empty line
    before the last name, a repeated name, or more than 255 names (255 marks void) is a
    ``ValueError`` naming the file and the line: each would silently give labels the wrong
    names.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"class names file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"class names file {path} is not a regular file")
    names = [line.strip() for line in _text_lines(path, "class names file")]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ValueError(f"class names file {path} holds no names (expected one a line, "
                         f"label 0 first)")
    seen = {}
    for line, name in enumerate(names, start=1):
        if not name:
            raise ValueError(f"class names file {path}: line {line} is empty; every label "
                             f"from 0 to {len(names) - 1} needs a name, one a line")
        if name in seen:
            raise ValueError(f"class names file {path}: {name!r} on line {line} repeats "
                             f"line {seen[name]}")
        seen[name] = line
    if len(names) > IGNORE_INDEX:
        raise ValueError(f"class names file {path}: {len(names)} names, but labels stop at "
                         f"{IGNORE_INDEX - 1} ({IGNORE_INDEX} marks void)")
    return tuple(names)


def _is_voc_devkit(root: Path) -> bool:
    """A Pascal VOC release folder (VOCdevkit/VOC2007 ... VOC2012): named VOC and a year,
    with VOC's segmentation split lists."""
    name = root.resolve().name
    return (len(name) == 7 and name.startswith("VOC") and name[3:].isdigit()
            and (root / "ImageSets" / "Segmentation").is_dir())


class SegmentationFolder:
    """Image/mask pairs on disk in the Pascal VOC layout::

        root/JPEGImages/<id>.jpg (or .png)            the image (any mode; read as RGB)
        root/SegmentationClass/<id>.png               its mask: a palette ('P') PNG whose
                                                      indices are the labels, or a grayscale
                                                      ('L') PNG of labels; 255 = void
        root/ImageSets/Segmentation/<split>.txt       optional lists of ids, one per line

    ``split=None`` takes every mask in SegmentationClass (VOC's JPEGImages also holds
    detection-only images, which have no mask); ``split="train"`` the ids in train.txt.

    ``image_size`` (an int or (H, W)): scale so the image covers that size (bilinear for
    images, nearest for masks, which must keep whole labels), then crop the centre. Without
    it, each pair keeps its own size (batch it with ``batch_size=1``).

    ``classes``: the class names, label 0 first. When not given, the folder's own
    ``class_names.txt`` (one name a line, see :func:`read_class_names`) if it has one, else
    ``VOC_CLASSES`` if the folder is a Pascal VOC release (named ``VOC2007`` ... ``VOC2012``,
    with ``ImageSets/Segmentation``), else none: the names are then "0", "1", ...
    ``classes_from`` says which it was.

    ``num_classes``: labels must lie in [0, num_classes) or be 255. Default: the number of
    names when there are names, else one more than the largest label in the masks of every
    split of the folder (every ``ImageSets/Segmentation/*.txt``, or every mask when there
    are no split files), so the train and val splits of a folder always agree. Inferring
    reads those masks once, up front; :meth:`check_labels` reads them to check a given count.

    ``ds[i] -> (image (3, H, W) float32 in [0, 1], mask (H, W) uint8)``, read from disk on
    each call. Missing folders or files are ``FileNotFoundError``; unreadable files and
    labels out of range are ``ValueError``; each names the path.
    """

    ignore_index = IGNORE_INDEX

    def __init__(self, root, split: str | None = None, image_size=None,
                 num_classes: int | None = None, classes: Sequence[str] | None = None):
        self.root = Path(root)
        self._where = f"SegmentationFolder({str(root)!r})"
        self.image_size = None if image_size is None else as_pair(
            self._where, "image_size", image_size, minimum=1)
        image_dir, mask_dir = self.root / "JPEGImages", self.root / "SegmentationClass"
        for folder in (self.root, image_dir, mask_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"{self._where}: folder {folder} does not exist (expected "
                                        f"root/JPEGImages and root/SegmentationClass)")
        self.split = split
        if split is None:
            self.ids = sorted(path.stem for path in mask_dir.glob("*.png"))
        else:
            listing = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
            if not listing.is_file():
                raise FileNotFoundError(f"{self._where}: split file {listing} does not exist")
            lines = _text_lines(listing, f"{self._where}: split file")
            self.ids = [line.strip() for line in lines if line.strip()]
            if not self.ids:
                raise ValueError(f"{self._where}: split file {listing} lists no ids (expected "
                                 f"the ids of its images, one a line)")
        if not self.ids:
            raise ValueError(f"{self._where}: no image/mask pairs found in {mask_dir}")
        self.image_paths = [self._image_path(image_dir, name) for name in self.ids]
        self.mask_paths = [mask_dir / f"{name}.png" for name in self.ids]
        for image_path, mask_path in zip(self.image_paths, self.mask_paths, strict=True):
            if not mask_path.is_file():
                raise FileNotFoundError(f"{self._where}: image {image_path} has no mask "
                                        f"{mask_path}")

        if num_classes is not None and (not isinstance(num_classes, Integral)
                                        or isinstance(num_classes, bool)
                                        or not 1 <= num_classes <= IGNORE_INDEX):
            raise ValueError(f"{self._where}: num_classes must be an int in [1, 255], "
                             f"got {num_classes!r}")
        names_file = self.root / CLASS_NAMES_FILE
        self._counted = False  # num_classes counted from the masks (so they are checked)
        if classes is not None:
            classes, self.classes_from = tuple(classes), "the names given"
        elif names_file.is_file():
            classes, self.classes_from = read_class_names(names_file), str(names_file)
        elif _is_voc_devkit(self.root) and num_classes in (None, len(VOC_CLASSES)):
            classes, self.classes_from = VOC_CLASSES, "Pascal VOC's (a VOC devkit folder)"
        if classes is not None:
            if num_classes is not None and num_classes != len(classes):
                raise ValueError(f"{self._where}: num_classes={num_classes} but "
                                 f"{len(classes)} class names from {self.classes_from}")
            if not 1 <= len(classes) <= IGNORE_INDEX:
                raise ValueError(f"{self._where}: expected 1 to 255 class names, got "
                                 f"{len(classes)}")
            num_classes = len(classes)
        elif num_classes is not None:
            self.classes_from = f"num_classes={num_classes}"
        else:
            largest, path = _largest_label(self, self._folder_mask_paths())
            num_classes, self._counted = largest + 1, True
            self.classes_from = (f"the largest label in the folder's masks, {largest} in "
                                 f"{path}" if path else "the folder's masks: every pixel void")
        self.num_classes = int(num_classes)
        self.classes = classes if classes is not None else tuple(map(str, range(num_classes)))

    def _folder_mask_paths(self) -> list[Path]:
        """The masks of every split of the folder (each once; ids without a mask skipped),
        or every mask if it has no split files."""
        mask_dir = self.root / "SegmentationClass"
        listings = sorted((self.root / "ImageSets" / "Segmentation").glob("*.txt"))
        if not listings:
            return sorted(mask_dir.glob("*.png"))
        ids = dict.fromkeys(line.strip() for listing in listings
                            for line in _text_lines(listing, f"{self._where}: split file")
                            if line.strip())
        # A split without masks (VOC's test.txt) has no labels to count.
        return [path for path in (mask_dir / f"{name}.png" for name in ids) if path.is_file()]

    def check_labels(self) -> None:
        """Read the masks of every split of the folder once; a ``ValueError`` naming the
        mask with the largest label if that label is not below ``num_classes`` (255, void,
        aside). Nothing to read when ``num_classes`` was counted from those masks."""
        if self._counted:
            return
        largest, path = _largest_label(self, self._folder_mask_paths())
        if largest >= self.num_classes:
            raise ValueError(f"{self._where}: mask {path} has label {largest}, but the folder "
                             f"has {self.num_classes} classes ({self.classes_from}); labels "
                             f"must lie in [0, {self.num_classes}), 255 marks void")

    def _image_path(self, image_dir: Path, name: str) -> Path:
        for suffix in _IMAGE_SUFFIXES:
            path = image_dir / f"{name}{suffix}"
            if path.is_file():
                return path
        raise FileNotFoundError(f"{self._where}: no image {image_dir / name}"
                                f"{{{','.join(_IMAGE_SUFFIXES)}}} for mask or id {name!r}")

    def _read_mask(self, path: Path):
        mask = _open_image(path, self._where, "mask")
        if mask.mode not in ("P", "L"):
            raise ValueError(f"{self._where}: mask {path} has mode {mask.mode!r}; expected a "
                             f"palette ('P') or grayscale ('L') PNG of class indices")
        return mask

    def _fit(self, image, resample):
        """Scale ``image`` (a Pillow image) to cover ``image_size``, then crop the centre."""
        height, width = self.image_size
        scale = max(height / image.height, width / image.width)
        scaled = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        if scaled != image.size:
            image = image.resize(scaled, resample=resample)
        left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
        return image.crop((left, top, left + width, top + height))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.image_paths[index], self.mask_paths[index]
        image = _unit_image(_open_image(image_path, self._where, "image"))
        mask = self._read_mask(mask_path)
        if image.size != mask.size:
            raise ValueError(f"{self._where}: image {image_path} is {image.width}x"
                             f"{image.height} but its mask {mask_path} is {mask.width}x"
                             f"{mask.height}")
        if self.image_size is not None:
            resampling = _pil().Resampling
            image = self._fit(image, resampling.BILINEAR)
            mask = self._fit(mask, resampling.NEAREST)
        labels = np.array(mask, dtype=np.uint8)
        bad = np.unique(labels[(labels >= self.num_classes) & (labels != IGNORE_INDEX)])
        if bad.size:
            raise ValueError(f"{self._where}: mask {mask_path} has values {bad.tolist()} "
                             f"outside [0, {self.num_classes}) (255 marks void)")
        return _unit_array(image), labels

    def __repr__(self) -> str:
        return (f"SegmentationFolder({str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"num_classes={self.num_classes})")


def _open_image(path: Path, where: str, what: str):
    """The Pillow image in file ``path``, loaded and detached from the file; a corrupt or
    unreadable file is a ``ValueError`` naming it.

    A PNG's chunks are checked against their CRCs first: Pillow's ``load`` does not check
    those of the pixel data, where a damaged byte would give other pixels (another mask)
    unnoticed. (JPEG has no checksums: a damaged JPEG that still decodes cannot be told.)
    """
    Image = _pil()
    try:
        with Image.open(path) as image:
            if image.format == "PNG":
                image.verify()  # reads every chunk; the image must then be opened again
        with Image.open(path) as image:
            image.load()
            return image.copy()  # the with-block closes the file and frees ``image``
    # Damaged bytes raise many kinds in Pillow's decoders (OSError, SyntaxError, ValueError,
    # and also TypeError, NotImplementedError, struct.error, DecompressionBombError for a
    # size in a damaged header ...): each is a file that cannot be read.
    except Exception as error:  # only Pillow's calls are inside
        raise ValueError(f"{where}: cannot read {what} {path}: "
                         f"{str(error) or type(error).__name__}") from None


def _text_lines(path: Path, what: str) -> list[str]:
    """The lines of the text file ``path``, e.g. a split file (``what``); a file that is not
    UTF-8 text is a ``ValueError`` naming it."""
    try:
        # utf-8-sig: Windows editors start a UTF-8 file with a byte-order mark, which would
        # otherwise become part of the first id
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path} is not UTF-8 text ({error.reason} at byte "
                         f"{error.start}); expected plain text, one entry a line") from None


def _rgb_array(image) -> np.ndarray:
    """A Pillow RGB image as (3, H, W) float32 in [0, 1], made in one float array (a
    12-megapixel photo is 144 MB of them: no temporary copies)."""
    pixels = np.asarray(image)  # (H, W, 3) uint8
    out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    np.divide(pixels.transpose(2, 0, 1), 255.0, out=out, dtype=np.float32)
    return out


# Pillow's modes of more than 8 bits per pixel (one channel: grey) and their full scale.
_WIDE_GREY = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def load_image(path) -> np.ndarray:
    """An image file (any format and mode Pillow reads) as (3, H, W) float32 RGB in [0, 1].

    As a photo should look: turned upright by its EXIF orientation (phones store pixels
    sideways and say so in the file); palette, grey, CMYK and images with alpha converted
    to RGB (alpha dropped); 16-bit grey scaled by 65535, 32-bit integer grey ("I") by
    65535 or by 255 when its values fit in 8 bits, float grey ("F") clipped to [0, 1]. A
    file Pillow cannot read is a ``ValueError`` naming it.
    """
    from PIL import ImageOps

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_image: no image file {path}")
    image = _open_image(path, "load_image", "image")
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as error:  # a corrupt EXIF block
        raise ValueError(f"load_image: cannot read the orientation of {path}: {error}") from None
    return _unit_array(_unit_image(image))


def _unit_image(image):
    """A Pillow image of any mode as one whose pixels map to [0, 1] plainly: "RGB" (8 bits a
    channel), or "F" grey already in [0, 1] for grey of more than 8 bits, which converting
    to RGB would clip at 255 (16-bit grey would turn white). Either can be resized."""
    if image.mode in _WIDE_GREY or image.mode in ("I", "F"):
        grey = np.array(image, dtype=np.float32)  # a copy of its own: scaled in place
        if image.mode != "F":
            full = _WIDE_GREY.get(image.mode) or (255.0 if grey.max(initial=0) <= 255 else 65535.0)
            grey /= full
        np.clip(grey, 0.0, 1.0, out=grey)
        return _pil().fromarray(grey)  # float32 (H, W): mode "F"
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow converts a transparent palette through RGBA
    return image if image.mode == "RGB" else image.convert("RGB")


def _unit_array(image) -> np.ndarray:
    """A :func:`_unit_image` as (3, H, W) float32 in [0, 1] (grey repeated in each channel)."""
    if image.mode == "F":
        grey = np.asarray(image, dtype=np.float32)
        return np.ascontiguousarray(np.broadcast_to(grey, (3, *grey.shape)))
    return _rgb_array(image)


def image_files(paths) -> list[Path]:
    """The image files ``paths`` name: a file as it is, a folder as the files in it (not its
    subfolders) whose extension Pillow reads, sorted by name. A path that does not exist is a
    ``FileNotFoundError``; a folder with no images a ``ValueError``."""
    image = _pil()
    image.init()
    readable = set(image.registered_extensions())
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in readable)
            if not inside:
                raise ValueError(f"{path} holds no image files (extensions Pillow reads: "
                                 f".png, .jpg, ...)")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no image file or folder {path}")
    return found


def _largest_label(folder: SegmentationFolder, paths) -> tuple[int, Path | None]:
    """The largest label (void aside) in the masks at ``paths``, and the first mask that
    holds it; (0, None) when every pixel is void."""
    largest, where = 0, None
    for path in paths:
        labels = np.unique(np.array(folder._read_mask(path), dtype=np.uint8))
        labels = labels[labels != IGNORE_INDEX]
        if labels.size and (where is None or int(labels.max()) > largest):
            largest, where = int(labels.max()), path
    return largest, where


def write_voc_folder(root, dataset, split: str = "train", image_format: str = "png",
                     palette=None) -> list[str]:
    """Export a dataset into the VOC layout that :class:`SegmentationFolder` reads.

    Writes ``root/JPEGImages/<split>_<i>.<image_format>`` ("png" is lossless, "jpg" lossy),
    ``root/SegmentationClass/<split>_<i>.png`` (palette PNG, see :func:`save_mask_png`) and
    ``root/ImageSets/Segmentation/<split>.txt``; returns the ids. Call once per split to
    put several splits in one folder.
    """
    if image_format not in ("png", "jpg"):
        raise ValueError(f"write_voc_folder: image_format must be 'png' or 'jpg', "
                         f"got {image_format!r}")
    root = Path(root)
    folders = [root / "JPEGImages", root / "SegmentationClass", root / "ImageSets" / "Segmentation"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    Image = _pil()
    ids = []
    for index in range(len(dataset)):
        image, mask = dataset[index]
        name = f"{split}_{index:05d}"
        pixels = np.round(np.clip(to_numpy(image), 0.0, 1.0) * 255.0).astype(np.uint8)
        Image.fromarray(pixels.transpose(1, 2, 0)).save(folders[0] / f"{name}.{image_format}")
        save_mask_png(folders[1] / f"{name}.png", mask, palette)
        ids.append(name)
    (folders[2] / f"{split}.txt").write_text("".join(f"{name}\n" for name in ids))
    return ids


# ---------------------------------------------------------------------------------------
# Batching

class DataLoader:
    """Batches of a dataset as device arrays: images (B, 3, H, W) float32 and masks
    (B, H, W) int64, or, for a classification dataset (``ds[i] -> (image, label)``, e.g.
    :class:`ShapeLabels`), labels (B,) int64, which flips and crops leave unchanged.

    Each ``for batch in loader`` is one epoch. With ``shuffle`` the order is a permutation
    drawn from ``(seed, epoch)``: every epoch differs, and the same seed gives the same
    sequence of batches in every run (``set_epoch`` restarts from a given epoch, e.g. after
    resuming). ``drop_last`` drops a final batch smaller than ``batch_size``.

    Augmentation (random, from the same per-epoch stream), applied identically to each
    image and its mask:

    - ``hflip`` / ``vflip``: flip left-right / upside-down with probability 1/2;
    - ``crop_padding=p``: pad by ``p`` pixels (images with 0, masks with void) and crop a
      random window of the original size: a random shift of up to ``p`` pixels;

    - ``augment``: your own ``augment(images, masks, rng) -> (images, masks)``, called on
      each host batch after the above, with ``rng`` a :class:`minifcn.backend.Generator`
      of its own for each batch, seeded from ``(seed, epoch, batch)``.

    A batch is gathered on the host (fancy indexing into ``dataset.images`` and
    ``dataset.masks`` when the dataset has them, else ``dataset[i]`` per sample), augmented
    there, vectorised over the batch, and moved to ``device`` once (default:
    ``backend.default_device()``). ``dtype`` is the images' float dtype (float32).

    Data parallel (``num_replicas`` ranks, this one ``rank``; as PyTorch's
    ``DistributedSampler``): ``batch_size`` stays the *global* batch, and each rank gets its
    consecutive share of every batch, sizes differing by at most one (8 over 3 ranks: 3, 3,
    2; a final short batch may leave a rank an empty share). Every rank draws the same order
    and the whole batch's flips and shifts from ``(seed, epoch)`` and keeps its share, so
    each image is augmented as it would be in one process. ``len(loader)`` counts global
    batches, the same on every rank. A custom ``augment`` sees only the rank's share.
    """

    def __init__(self, dataset, batch_size: int = 16, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, *, hflip: bool = False,
                 vflip: bool = False, crop_padding: int = 0,
                 augment: Callable | None = None, device: str | None = None, dtype=None,
                 num_replicas: int = 1, rank: int = 0):
        where = f"DataLoader(batch_size={batch_size!r})"
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"{where}: dataset must support len() and indexing, got "
                            f"{type(dataset).__name__}")
        for name, value in (("batch_size", batch_size), ("seed", seed),
                            ("crop_padding", crop_padding), ("num_replicas", num_replicas),
                            ("rank", rank)):
            if not isinstance(value, Integral) or isinstance(value, bool):
                raise TypeError(f"{where}: {name} must be an int, got {value!r}")
        if batch_size < 1:
            raise ValueError(f"{where}: batch_size must be >= 1, got {batch_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"{where}: expected num_replicas >= 1 and 0 <= rank < "
                             f"num_replicas, got num_replicas={num_replicas}, rank={rank}")
        if crop_padding < 0:
            raise ValueError(f"{where}: crop_padding must be >= 0, got {crop_padding}")
        if augment is not None and not callable(augment):
            raise TypeError(f"{where}: augment must be a callable (images, masks, rng) -> "
                            f"(images, masks), got {type(augment).__name__}")
        self.dataset = dataset
        self.batch_size, self.seed, self.crop_padding = int(batch_size), int(seed), crop_padding
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.hflip, self.vflip, self.augment = bool(hflip), bool(vflip), augment
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.device = device or default_device()
        array_module(self.device)  # an unknown or unavailable device fails here, not mid-epoch
        self.dtype = resolve_dtype(dtype)
        self.epoch = 0

    def __len__(self) -> int:
        """The number of batches in an epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The next ``for`` loop over the loader is epoch ``epoch`` (its order, its flips)."""
        self.epoch = int(epoch)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def _batches(self, epoch: int):
        rng = Generator(derive_seed(self.seed, epoch))
        n = len(self.dataset)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        for batch in range(len(self)):
            indices = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            share = even_slices(len(indices), self.num_replicas)[self.rank]
            # The whole batch's draws, whatever this rank's share: the same stream on
            # every rank, and each image's flips as in one process.
            draws = self._draw_flips_and_shifts(len(indices), rng)
            images, masks = self._gather(indices[share])
            if draws is not None:
                images, masks = self._flip_and_crop(images, masks, draws[share])
            if self.augment is not None:
                own_rng = Generator(derive_seed(self.seed, epoch, batch))
                images, masks = self.augment(images, masks, own_rng)
            yield (to_device(np.asarray(images, dtype=self.dtype), self.device),
                   to_device(np.asarray(masks, dtype=np.int64), self.device))

    def _gather(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Host batch: images (B, 3, H, W), masks (B, H, W) or labels (B,)."""
        targets = getattr(self.dataset, "masks", getattr(self.dataset, "labels", None))
        if hasattr(self.dataset, "images") and targets is not None:
            return self.dataset.images[indices], targets[indices]
        pairs = [self.dataset[int(i)] for i in indices]
        shapes = {(tuple(image.shape), tuple(mask.shape)) for image, mask in pairs}
        if len(shapes) > 1:
            raise ValueError(f"DataLoader: samples of different sizes in one batch "
                             f"{sorted(shapes)}; give the dataset an image_size or use "
                             f"batch_size=1")
        return (np.stack([to_numpy(image) for image, _ in pairs]),
                np.stack([to_numpy(mask) for _, mask in pairs]))

    def _draw_flips_and_shifts(self, batch: int, rng: Generator):
        """The random part of flips and shifted crops for ``batch`` samples: a (batch, 4)
        array of (row shift, column shift, upside down, left-right) per sample, or None
        when the loader neither flips nor crops. The draws do not depend on the image
        size, so a share of the rows applies to any share of the batch."""
        if not (self.hflip or self.vflip or self.crop_padding):
            return None
        draws = np.zeros((batch, 4), dtype=np.int64)
        pad = self.crop_padding
        if pad:
            draws[:, 0:1] = rng.integers(0, 2 * pad + 1, size=(batch, 1))
            draws[:, 1:2] = rng.integers(0, 2 * pad + 1, size=(batch, 1))
        if self.vflip:
            draws[:, 2:3] = rng.random((batch, 1)) < 0.5
        if self.hflip:
            draws[:, 3:4] = rng.random((batch, 1)) < 0.5
        return draws

    def _flip_and_crop(self, images: np.ndarray, masks: np.ndarray, draws: np.ndarray):
        """Flips and shifted crops, as one row index and one column index per sample.

        Output row ``i`` of sample ``b`` is input row ``rows[b, i]`` (the same for the image
        and its mask, which is what keeps them aligned); a flip reverses ``rows[b]``, a crop
        offsets it. Two ``take_along_axis`` gathers then apply everything to the whole batch.
        """
        batch, _, height, width = images.shape
        pad = self.crop_padding
        rows = np.arange(height) + draws[:, 0:1]
        cols = np.arange(width) + draws[:, 1:2]
        rows = np.where(draws[:, 2:3] == 1, rows[:, ::-1], rows)
        cols = np.where(draws[:, 3:4] == 1, cols[:, ::-1], cols)
        per_pixel = masks.ndim == 3  # (B,) image labels: a flip or shift leaves them as they are
        if pad:
            images = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            fill = getattr(self.dataset, "ignore_index", IGNORE_INDEX)
            if per_pixel:
                masks = np.pad(masks, ((0, 0), (pad, pad), (pad, pad)), constant_values=fill)
        images = np.take_along_axis(images, rows[:, None, :, None], axis=2)
        images = np.take_along_axis(images, cols[:, None, None, :], axis=3)
        if per_pixel:
            masks = np.take_along_axis(masks, rows[:, :, None], axis=1)
            masks = np.take_along_axis(masks, cols[:, None, :], axis=2)
        return images, masks


# ---------------------------------------------------------------------------------------
# Class statistics

def class_frequencies(masks, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """SegNet's class frequencies: (num_classes,) float64 on the host.

    ``freq[c]`` = pixels of class ``c`` / pixels of the images in which ``c`` is present,
    counting labelled pixels only (``ignore_index`` is neither a class nor a pixel of the
    image). 0 for a class present nowhere. ``masks``: an (N, H, W) array, or a sequence of
    (H, W) masks whose sizes may differ; host or device.
    """
    if not isinstance(num_classes, Integral) or num_classes < 1:
        raise ValueError(f"class_frequencies: num_classes must be an int >= 1, got "
                         f"{num_classes!r}")
    if is_array(masks):
        masks = to_numpy(masks)  # one copy to the host rather than one per image
    counts = np.zeros((len(masks), num_classes), dtype=np.int64)  # pixels per image and class
    for index, mask in enumerate(masks):
        labels = to_numpy(mask).ravel()
        labels = labels[labels != ignore_index]
        bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
        if bad.size:
            raise ValueError(f"class_frequencies: mask {index} has labels {bad.tolist()} "
                             f"outside [0, {num_classes}) (ignore_index={ignore_index})")
        counts[index] = np.bincount(labels.astype(np.int64), minlength=num_classes)
    image_pixels = counts.sum(axis=1, keepdims=True)
    pixels_of_images_with_class = np.where(counts > 0, image_pixels, 0).sum(axis=0)
    return counts.sum(axis=0) / np.maximum(pixels_of_images_with_class, 1)


def median_frequency_weights(masks, num_classes: int,
                             ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """SegNet's median-frequency balancing: ``weight[c] = median(freq) / freq[c]``
    (:func:`class_frequencies`), the median over the classes present; rare classes weigh
    more, the median class 1. (num_classes,) float64 on the host, 0 for absent classes;
    move it to the loss's device with ``minifcn.to_device``."""
    freq = class_frequencies(masks, num_classes, ignore_index)
    present = freq > 0
    if not present.any():
        raise ValueError("median_frequency_weights: the masks hold no labelled pixel")
    return np.where(present, np.median(freq[present]) / np.where(present, freq, 1.0), 0.0)
