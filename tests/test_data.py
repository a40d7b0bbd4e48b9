"""The data module: the toy shapes, VOC-layout folders, the loader and class statistics."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from minifcn import data
from minifcn.backend import Generator
from minifcn.data import (
    CLASS_NAMES_FILE,
    PALETTE,
    VOC_CLASSES,
    VOID_COLOR,
    DataLoader,
    SegmentationFolder,
    Shapes,
    class_frequencies,
    colorize,
    image_files,
    load_image,
    median_frequency_weights,
    read_class_names,
    save_mask_png,
    voc_palette,
    write_voc_folder,
)


@pytest.fixture(scope="module")
def shapes200():
    return Shapes(200, image_size=32, seed=11)


@pytest.fixture
def pil():
    return pytest.importorskip("PIL.Image", reason="Pillow reads and writes the image files")


# ---------------------------------------------------------------------------------------
# Shapes

def test_shapes_arrays_and_indexing():
    ds = Shapes(12, image_size=24, seed=3)
    assert len(ds) == 12
    assert ds.images.shape == (12, 3, 24, 24) and ds.images.dtype == np.float32
    assert ds.masks.shape == (12, 24, 24) and ds.masks.dtype == np.uint8
    assert ds.images.min() >= 0.0 and ds.images.max() <= 1.0
    assert set(np.unique(ds.masks).tolist()) <= {0, 1, 2, 3, 255}
    image, mask = ds[5]
    np.testing.assert_array_equal(image, ds.images[5])
    np.testing.assert_array_equal(mask, ds.masks[5])
    assert ds.num_classes == len(ds.CLASSES) == len(ds.classes) == 4
    assert ds.ignore_index == 255


def test_shapes_deterministic_by_seed():
    first, again = Shapes(8, image_size=32, seed=4), Shapes(8, image_size=32, seed=4)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.masks, again.masks)
    other = Shapes(8, image_size=32, seed=5)
    assert not np.array_equal(first.masks, other.masks)
    assert not (first.images == other.images).all(axis=(1, 2, 3)).any()  # no image repeats


def _shared_images(a: np.ndarray, b: np.ndarray) -> int:
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return int((flat_a[:, None] == flat_b[None]).all(axis=-1).sum())


def test_train_and_val_splits_share_no_image():
    train, val = Shapes.splits(40, 30, image_size=24, seed=0)
    assert (len(train), len(val)) == (40, 30)
    assert _shared_images(train.images, val.images) == 0
    assert _shared_images(train.masks, val.masks) == 0
    np.testing.assert_array_equal(train.images, Shapes(40, 24, 0, "train").images)
    np.testing.assert_array_equal(val.images, Shapes(30, 24, 0, "val").images)
    # seed + split together pick the stream: no offset scheme that could collide
    assert _shared_images(Shapes(30, 24, 1, "train").images, val.images) == 0


def test_every_image_holds_its_objects(shapes200):
    ds = shapes200
    raw = Shapes(200, image_size=32, seed=11, void_band=False).masks
    np.testing.assert_array_equal(ds.masks[ds.masks != 255], raw[ds.masks != 255])
    assert ds.num_objects.min() >= 1 and ds.num_objects.max() <= 4
    scale = 32 / 64
    objects = ds.objects
    for i in range(len(ds)):
        used = objects.classes[i] > 0
        assert used.sum() == ds.num_objects[i]
        assert used[:ds.num_objects[i]].all()  # the used slots come first
        sizes = objects.sizes[i][used]
        assert sizes.min() >= 6 * scale and sizes.max() <= 20 * scale
        present = set(np.unique(raw[i]).tolist()) - {0}
        assert present <= set(objects.classes[i][used].tolist())
        last = objects.classes[i][used][-1]
        assert last in present  # nothing occludes the last object
        # Foreground: at least the last object's inscribed disc (always inside the image),
        # at most all objects' bounding discs; pixel sampling errs by up to a perimeter.
        inradius = sizes[-1] * (1.0 if last != 3 else data.TRIANGLE_SCALE / 2)
        circumradius = sizes * np.where(objects.classes[i][used] == 1, 1.0,
                                        np.where(objects.classes[i][used] == 2, math.sqrt(2),
                                                 data.TRIANGLE_SCALE))
        foreground = int((raw[i] > 0).sum())
        assert foreground >= math.pi * inradius ** 2 - 2 * math.pi * inradius
        assert foreground <= (math.pi * circumradius ** 2 + 2 * math.pi * circumradius).sum()


def test_shapes_have_their_areas():
    """A lone object fully inside the image covers its shape's area (circle pi r^2, square
    4 r^2 with r its half side, equilateral triangle 3 sqrt(3) / 4 R^2 with R its
    circumradius) to pixel accuracy."""
    ds = Shapes(300, image_size=64, seed=8, max_objects=1, void_band=False)
    kinds = ds.objects.classes[:, 0]
    sizes = ds.objects.sizes[:, 0].astype(np.float64)
    circumradius = sizes * np.select([kinds == 1, kinds == 2], [1.0, math.sqrt(2)],
                                     data.TRIANGLE_SCALE)
    area = np.select([kinds == 1, kinds == 2],
                     [math.pi * sizes ** 2, 4 * sizes ** 2],
                     3 * math.sqrt(3) / 4 * circumradius ** 2)
    centers = ds.objects.centers[:, 0]
    inside = ((centers - circumradius[:, None] >= 0) & (centers + circumradius[:, None] <= 64)
              ).all(axis=1)
    counts = (ds.masks == kinds[:, None, None]).sum(axis=(1, 2))
    assert ((ds.masks > 0).sum(axis=(1, 2)) == counts).all()  # one label per image
    for kind in (1, 2, 3):
        chosen = inside & (kinds == kind)
        assert chosen.sum() >= 10, f"too few whole objects of class {kind} to check"
        relative = abs(counts[chosen].sum() - area[chosen].sum()) / area[chosen].sum()
        assert relative < 0.02, (kind, relative)


def _boundary_by_loop(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another label, one pixel at a time."""
    count, height, width = labels.shape
    boundary = np.zeros(labels.shape, dtype=bool)
    for b in range(count):
        for i in range(height):
            for j in range(width):
                for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    ii, jj = i + di, j + dj
                    inside = 0 <= ii < height and 0 <= jj < width
                    if inside and labels[b, ii, jj] != labels[b, i, j]:
                        boundary[b, i, j] = True
    return boundary


def test_void_band_is_exactly_the_label_boundary():
    with_band = Shapes(6, image_size=24, seed=2)
    raw = Shapes(6, image_size=24, seed=2, void_band=False)
    np.testing.assert_array_equal(with_band.images, raw.images)
    expected = _boundary_by_loop(raw.masks)
    assert expected.any()
    np.testing.assert_array_equal(with_band.masks == 255, expected)
    np.testing.assert_array_equal(with_band.masks[~expected], raw.masks[~expected])


def test_class_balance_and_colour_independent_of_class(shapes200):
    ds = shapes200
    kinds = ds.objects.classes[ds.objects.classes > 0]
    for kind in (1, 2, 3):
        assert 0.25 < (kinds == kind).mean() < 0.42
        in_images = (ds.masks == kind).any(axis=(1, 2)).mean()
        assert in_images > 0.35, (kind, in_images)
        assert (ds.masks == kind).mean() > 0.02
    # colour is drawn independently of the class: mean colours per class agree
    pixels = ds.images.transpose(0, 2, 3, 1)  # (N, H, W, 3)
    means = np.stack([pixels[ds.masks == kind].mean(axis=0) for kind in (1, 2, 3)])
    assert np.ptp(means, axis=0).max() < 0.15, means


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=-1), ValueError, "n and seed must be >= 0"),
    (dict(n=2, seed=-3), ValueError, "n and seed must be >= 0"),
    (dict(n=2.0), TypeError, "n must be an int"),
    (dict(n=2, image_size=8), ValueError, "image_size must be >= 16"),
    (dict(n=2, min_objects=3, max_objects=2), ValueError, "min_objects <= max_objects"),
    (dict(n=2, split="dev"), ValueError, "split must be one of"),
    (dict(n=2, noise=-0.1), ValueError, "noise must be"),
])
def test_shapes_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Shapes(**kwargs)


# ---------------------------------------------------------------------------------------
# Colours and mask files

def test_voc_palette_matches_the_devkit():
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    # colours from the VOC devkit's labelling (aeroplane, person, void)
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[15].tolist() == [192, 128, 128]
    assert palette[255].tolist() == [224, 224, 192] == VOID_COLOR.tolist()
    np.testing.assert_array_equal(PALETTE, palette[:4])
    assert len(np.unique(palette[:21], axis=0)) == 21


def test_colorize_looks_labels_up_in_the_palette():
    mask = np.array([[0, 1, 2], [3, 255, 1]], dtype=np.int64)
    expected = np.array([[VOID_COLOR if v == 255 else PALETTE[v] for v in row] for row in mask])
    np.testing.assert_array_equal(colorize(mask, PALETTE), expected)
    np.testing.assert_array_equal(colorize(mask), expected)  # VOC's colours start as PALETTE's
    batch = colorize(np.stack([mask, mask]))
    assert batch.shape == (2, 2, 3, 3) and batch.dtype == np.uint8
    with pytest.raises(ValueError, match=r"labels \[3\] have no colour in a palette of 3"):
        colorize(mask, PALETTE[:3])
    with pytest.raises(TypeError, match="integer mask"):
        colorize(mask.astype(np.float32))


def test_save_mask_png_writes_a_palette_png(tmp_path, pil):
    mask = np.array([[0, 1, 2, 3], [255, 3, 2, 1]], dtype=np.uint8)
    path = tmp_path / "mask.png"
    save_mask_png(path, mask)
    with pil.open(path) as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.array(image), mask)
        colours = np.array(image.getpalette()).reshape(-1, 3)
    np.testing.assert_array_equal(colours[:4], PALETTE)
    np.testing.assert_array_equal(colours[255], VOID_COLOR)
    with pytest.raises(ValueError, match=r"expected a \(H, W\) mask"):
        save_mask_png(path, mask[None])


def test_load_image(tmp_path, pil):
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    pil.fromarray(pixels).save(tmp_path / "x.png")
    image = load_image(tmp_path / "x.png")
    assert image.shape == (3, 2, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, pixels.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


# ---------------------------------------------------------------------------------------
# SegmentationFolder

def _quantised(images: np.ndarray) -> np.ndarray:
    return np.round(images * 255.0) / 255.0


def test_folder_round_trip_with_palette_masks(tmp_path, pil):
    shapes = Shapes(5, image_size=24, seed=2)
    ids = write_voc_folder(tmp_path, shapes, split="train")
    assert ids == [f"train_{i:05d}" for i in range(5)]
    folder = SegmentationFolder(tmp_path, split="train")
    assert len(folder) == 5 and folder.ids == ids
    assert folder.num_classes == int(shapes.masks[shapes.masks != 255].max()) + 1
    with pil.open(tmp_path / "SegmentationClass" / f"{ids[0]}.png") as mask_file:
        assert mask_file.mode == "P"
    for i in range(5):
        image, mask = folder[i]
        assert image.dtype == np.float32 and image.shape == (3, 24, 24)
        np.testing.assert_allclose(image, _quantised(shapes.images[i]), atol=1e-6)
        np.testing.assert_array_equal(mask, shapes.masks[i])
    images, masks = next(iter(DataLoader(folder, batch_size=4)))  # per-sample loading
    np.testing.assert_allclose(images, _quantised(shapes.images[:4]), atol=1e-6)
    np.testing.assert_array_equal(masks, shapes.masks[:4])
    assert masks.dtype == np.int64


def test_folder_reads_jpg_images_and_grayscale_masks(tmp_path, pil):
    shapes = Shapes(3, image_size=32, seed=9)
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    for i in range(3):
        pixels = np.round(shapes.images[i].transpose(1, 2, 0) * 255).astype(np.uint8)
        pil.fromarray(pixels).save(tmp_path / "JPEGImages" / f"img{i}.jpg", quality=95)
        pil.fromarray(shapes.masks[i]).save(tmp_path / "SegmentationClass" / f"img{i}.png")
    folder = SegmentationFolder(tmp_path, classes=VOC_CLASSES)  # no split: every mask
    assert folder.ids == ["img0", "img1", "img2"]
    assert folder.num_classes == 21 and folder.classes == VOC_CLASSES
    for i in range(3):
        image, mask = folder[i]
        np.testing.assert_array_equal(mask, shapes.masks[i])
        with pil.open(tmp_path / "JPEGImages" / f"img{i}.jpg") as decoded:
            expected = np.array(decoded.convert("RGB")).transpose(2, 0, 1) / 255.0
        np.testing.assert_allclose(image, expected, atol=1e-6)
        assert np.abs(image - shapes.images[i]).mean() < 0.06  # JPEG is lossy


@pytest.mark.parametrize("mode", ["I;16", "L", "P"])  # what a .png can hold
def test_folder_reads_images_of_every_mode_as_load_image_does(tmp_path, pil, mode):
    """Regression: the folder converted its images to RGB with Pillow, which clips 16-bit
    grey at 255: a 16-bit grey image came out white. Its images now equal load_image's,
    also after a resize to image_size."""
    grey = np.tile(np.array([0, 64, 128, 255], dtype=np.uint8), (8, 2))  # (8, 8)
    if mode == "I;16":
        picture = pil.fromarray(grey.astype(np.uint16) * 257)  # 16 bits: 0 .. 65535
    else:
        picture = pil.fromarray(grey).convert(mode)
    assert picture.mode == mode
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    path = tmp_path / "JPEGImages" / "a.png"
    picture.save(path)
    save_mask_png(tmp_path / "SegmentationClass" / "a.png", np.zeros((8, 8), np.uint8))
    image, _ = SegmentationFolder(tmp_path)[0]
    np.testing.assert_array_equal(image, load_image(path))
    np.testing.assert_allclose(image, np.broadcast_to(grey / 255.0, (3, 8, 8)), atol=0.02)
    smaller, _ = SegmentationFolder(tmp_path, image_size=4)[0]
    assert smaller.shape == (3, 4, 4) and 0.3 < smaller.mean() < 0.5  # not white (1.0)


def test_folder_splits(tmp_path):
    train_ids = write_voc_folder(tmp_path, Shapes(3, 16, seed=0), split="train")
    val_ids = write_voc_folder(tmp_path, Shapes(2, 16, seed=0, split="val"), split="val")
    assert SegmentationFolder(tmp_path, split="train").ids == train_ids
    assert SegmentationFolder(tmp_path, split="val").ids == val_ids
    assert SegmentationFolder(tmp_path).ids == sorted(train_ids + val_ids)
    with pytest.raises(FileNotFoundError, match=r"test\.txt"):
        SegmentationFolder(tmp_path, split="test")


def test_folder_resizes_and_crops_the_centre(tmp_path, pil):
    """A 20 x 30 pair with three vertical bands (labels 0, 1, 2; red = label / 2): at 10 x 10
    it is scaled by 1/2 to 10 x 15 and cropped to its middle 10 columns."""
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    labels = np.repeat(np.arange(30) // 10, 20).reshape(30, 20).T.astype(np.uint8)  # (20, 30)
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[..., 0] = labels * 127
    pil.fromarray(pixels).save(tmp_path / "JPEGImages" / "a.png")
    save_mask_png(tmp_path / "SegmentationClass" / "a.png", labels)
    for size, shape in ((10, (10, 10)), ((12, 8), (12, 8))):
        image, mask = SegmentationFolder(tmp_path, image_size=size)[0]
        assert image.shape == (3, *shape) and mask.shape == shape
        assert (mask == mask[:1]).all()  # still vertical bands
        assert set(np.unique(mask).tolist()) == {0, 1, 2}
        # the crop kept the middle: fewer columns of the outer bands than of the middle
        assert (mask[0] == 1).sum() > (mask[0] == 0).sum()
        assert (mask[0] == 1).sum() > (mask[0] == 2).sum()
        # image and mask crop the same window: inside each band red matches its label
        interior = np.ones(shape[1], dtype=bool)
        interior[1:] &= mask[0, 1:] == mask[0, :-1]
        interior[:-1] &= mask[0, :-1] == mask[0, 1:]
        np.testing.assert_allclose(image[0][:, interior], (mask[:, interior] * 127) / 255.0,
                                   atol=0.02)


def _voc_folder(root, n=2, size=16):
    write_voc_folder(root, Shapes(n, size, seed=1), split="train")
    return root


def test_folder_mask_value_out_of_range(tmp_path):
    _voc_folder(tmp_path)
    bad = np.zeros((16, 16), dtype=np.uint8)
    bad[3, 4], bad[5, 6] = 7, 9
    save_mask_png(tmp_path / "SegmentationClass" / "train_00001.png", bad)
    folder = SegmentationFolder(tmp_path, split="train", num_classes=4)
    folder[0]  # the good one loads
    with pytest.raises(ValueError, match=r"train_00001\.png has values \[7, 9\] outside \[0, 4\)"):
        folder[1]
    assert SegmentationFolder(tmp_path, split="train").num_classes == 10  # inferred


def test_folder_image_without_mask(tmp_path):
    _voc_folder(tmp_path)
    (tmp_path / "SegmentationClass" / "train_00001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no mask .*train_00001\.png"):
        SegmentationFolder(tmp_path, split="train")


def test_folder_mask_without_image(tmp_path):
    _voc_folder(tmp_path)
    (tmp_path / "JPEGImages" / "train_00000.png").unlink()
    with pytest.raises(FileNotFoundError, match="no image .*train_00000"):
        SegmentationFolder(tmp_path)


def test_folder_corrupt_files(tmp_path):
    _voc_folder(tmp_path)
    (tmp_path / "JPEGImages" / "train_00000.png").write_bytes(b"not an image at all")
    folder = SegmentationFolder(tmp_path, split="train", num_classes=4)
    with pytest.raises(ValueError, match=r"cannot read image .*train_00000\.png"):
        folder[0]
    (tmp_path / "SegmentationClass" / "train_00001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match=r"cannot read mask .*train_00001\.png"):
        SegmentationFolder(tmp_path, split="train")  # inferring num_classes reads every mask


def test_folder_refuses_rgb_masks_and_mismatched_sizes(tmp_path, pil):
    _voc_folder(tmp_path)
    pil.new("RGB", (16, 16)).save(tmp_path / "SegmentationClass" / "train_00000.png")
    pil.new("L", (8, 16)).save(tmp_path / "SegmentationClass" / "train_00001.png")
    folder = SegmentationFolder(tmp_path, split="train", num_classes=4)
    with pytest.raises(ValueError, match=r"train_00000\.png has mode 'RGB'"):
        folder[0]
    with pytest.raises(ValueError, match=r"is 16x16 but its mask .*train_00001\.png is 8x16"):
        folder[1]


def _two_splits(root, last_class_in="val", images: int = 3, size: int = 16):
    """A VOC-layout folder of ``images`` toy images a split, ``size`` pixels square, whose
    labels 0..3 all occur, class 3 only in ``last_class_in``."""
    for split in ("train", "val"):
        shapes = Shapes(images, size, seed=4, split=split)
        masks = shapes.masks.copy()
        if split != last_class_in:
            masks[masks == 3] = 0
        assert (masks == 3).any() == (split == last_class_in)
        write_voc_folder(root, list(zip(shapes.images, masks, strict=True)), split=split)
    return root


@pytest.mark.parametrize("last_class_in", ["train", "val"])
def test_folder_counts_classes_over_every_split(tmp_path, last_class_in):
    """A split that lacks the last class still gets the folder's class count."""
    _two_splits(tmp_path, last_class_in)
    for split in ("train", "val", None):
        folder = SegmentationFolder(tmp_path, split=split)
        assert folder.num_classes == 4 and folder.classes == ("0", "1", "2", "3")
        assert f"{last_class_in}_" in folder.classes_from  # names the mask holding label 3


def test_folder_count_skips_split_files_without_masks(tmp_path):
    """VOC's test.txt lists images whose masks are not published."""
    _two_splits(tmp_path)
    (tmp_path / "ImageSets" / "Segmentation" / "test.txt").write_text("secret_0\n")
    assert SegmentationFolder(tmp_path, split="train").num_classes == 4


def test_folder_check_labels_names_the_mask(tmp_path):
    _two_splits(tmp_path)
    folder = SegmentationFolder(tmp_path, split="train", num_classes=3)
    assert folder.classes_from == "num_classes=3"
    with pytest.raises(ValueError, match=r"mask .*val_0000\d\.png has label 3, but the folder "
                                         r"has 3 classes \(num_classes=3\)"):
        folder.check_labels()
    SegmentationFolder(tmp_path, split="train", num_classes=4).check_labels()  # all fit
    SegmentationFolder(tmp_path, split="train", num_classes=9).check_labels()  # absent: fine


def test_read_class_names(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text(" background\ncat \ndog\n\n\n")
    assert read_class_names(path) == ("background", "cat", "dog")
    for text, message in (("a\n\nb\n", "line 2 is empty"), ("a\nb\na\n", "'a' on line 3 "
                          "repeats line 1"), ("\n\n", "holds no names"),
                          ("".join(f"c{i}\n" for i in range(256)), "256 names")):
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_class_names(path)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_class_names(tmp_path / "missing.txt")


def test_folder_names_from_its_class_names_file(tmp_path):
    _two_splits(tmp_path)
    (tmp_path / CLASS_NAMES_FILE).write_text("sky\nball\nbox\ncone\nrope\n")
    folder = SegmentationFolder(tmp_path, split="val")
    assert folder.classes == ("sky", "ball", "box", "cone", "rope") and folder.num_classes == 5
    assert folder.classes_from == str(tmp_path / CLASS_NAMES_FILE)
    folder.check_labels()
    given = SegmentationFolder(tmp_path, split="val", classes=["a", "b", "c", "d"])
    assert given.classes == ("a", "b", "c", "d")  # names given win over the file
    with pytest.raises(ValueError, match=r"num_classes=4 but 5 class names from .*class_names"):
        SegmentationFolder(tmp_path, split="val", num_classes=4)
    (tmp_path / CLASS_NAMES_FILE).write_text("sky\nball\nbox\n")  # too few for label 3
    with pytest.raises(ValueError, match=r"has label 3, but the folder has 3 classes \(.*"
                                         r"class_names\.txt\)"):
        SegmentationFolder(tmp_path, split="val").check_labels()


def test_a_voc_devkit_folder_gets_voc_names(tmp_path):
    voc = _two_splits(tmp_path / "VOCdevkit" / "VOC2012")
    folder = SegmentationFolder(voc, split="train")
    assert folder.classes == VOC_CLASSES and folder.num_classes == 21
    assert "VOC" in folder.classes_from
    assert SegmentationFolder(voc, split="train", num_classes=4).classes == ("0", "1", "2", "3")
    other = _two_splits(tmp_path / "VOC_mine")  # not a VOC release: the labels decide
    assert SegmentationFolder(other, split="train").num_classes == 4


def test_folder_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SegmentationFolder(tmp_path / "nowhere")
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(FileNotFoundError, match="SegmentationClass does not exist"):
        SegmentationFolder(tmp_path)
    (tmp_path / "SegmentationClass").mkdir()
    with pytest.raises(ValueError, match="no image/mask pairs"):
        SegmentationFolder(tmp_path)


# ---------------------------------------------------------------------------------------
# DataLoader

class ArraySet:
    """Images whose pixels say who they are: channel 0 is the pixel's number + 1 (0 marks
    padding), channel 1 the sample's number + 1 (in 1/1000ths); the mask is the pixel's
    number, so any geometric transform shows, and image and mask must agree."""

    ignore_index = 255

    def __init__(self, n: int, height: int = 6, width: int = 5):
        pixel = np.arange(height * width).reshape(height, width)
        self.images = np.zeros((n, 3, height, width), dtype=np.float32)
        self.images[:, 0] = (pixel + 1) / 1000.0
        self.images[:, 1] = (np.arange(n)[:, None, None] + 1) / 1000.0
        self.masks = np.broadcast_to(pixel.astype(np.uint8), (n, height, width)).copy()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.masks[index]


class ItemsOnly:
    """The same samples, reachable only through ``ds[i]`` (the loader's general path)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]


def _sample_ids(images: np.ndarray) -> list[int]:
    return (np.round(images[:, 1].max(axis=(1, 2)) * 1000.0).astype(int) - 1).tolist()


@pytest.mark.parametrize("wrap", [False, True], ids=["arrays", "items"])
def test_loader_batches_and_drop_last(wrap):
    dataset = ArraySet(10)
    source = ItemsOnly(dataset) if wrap else dataset
    loader = DataLoader(source, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(images) for images, _ in batches] == [4, 4, 2]
    for images, masks in batches:
        assert images.dtype == np.float32 and images.shape[1:] == (3, 6, 5)
        assert masks.dtype == np.int64 and masks.shape == (len(images), 6, 5)
    assert sum((_sample_ids(images) for images, _ in batches), []) == list(range(10))
    np.testing.assert_array_equal(np.concatenate([m for _, m in batches]), dataset.masks)

    dropping = DataLoader(source, batch_size=4, drop_last=True)
    assert len(dropping) == 2
    assert [len(images) for images, _ in dropping] == [4, 4]
    assert len(DataLoader(source, batch_size=5, drop_last=True)) == 2


def test_loader_shuffles_reproducibly_and_differently_each_epoch():
    def orders(seed, epochs=3):
        loader = DataLoader(ArraySet(20), batch_size=6, shuffle=True, seed=seed)
        return [sum((_sample_ids(images) for images, _ in loader), []) for _ in range(epochs)]

    first = orders(seed=3)
    assert first == orders(seed=3)
    for order in first:
        assert sorted(order) == list(range(20))
    assert first[0] != first[1] and first[1] != first[2] and first[0] != list(range(20))
    assert orders(seed=4)[0] != first[0]

    replay = DataLoader(ArraySet(20), batch_size=6, shuffle=True, seed=3)
    replay.set_epoch(1)
    assert sum((_sample_ids(images) for images, _ in replay), []) == first[1]


def _transforms(image: np.ndarray, pad: int):
    """Every flip-and-shift the loader may apply to one (C, H, W) array, padded with 0."""
    height, width = image.shape[-2:]
    padded = np.pad(image, [(0, 0)] * (image.ndim - 2) + [(pad, pad), (pad, pad)])
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            window = padded[..., top:top + height, left:left + width]
            for vflip in (False, True):
                for hflip in (False, True):
                    flipped = window[..., ::-1, :] if vflip else window
                    yield (vflip, hflip, top, left), (flipped[..., ::-1] if hflip else flipped)


def test_flips_and_crops_move_image_and_mask_together():
    dataset = ArraySet(32)
    pad = 2
    loader = DataLoader(dataset, batch_size=8, shuffle=True, seed=1, hflip=True, vflip=True,
                        crop_padding=pad)
    seen = set()
    for _ in range(2):
        for images, masks in loader:
            for image, mask in zip(images, masks, strict=True):
                # the mask moved exactly as the image's pixel numbers did; padding is void
                pixel = np.round(image[0] * 1000.0).astype(np.int64) - 1
                np.testing.assert_array_equal(mask, np.where(pixel < 0, 255, pixel))
                # and the image is one flip-and-shift of its source sample
                source = dataset.images[_sample_ids(image[None])[0]]
                matches = [how for how, out in _transforms(source, pad)
                           if np.array_equal(out, image)]
                assert matches, "the batch image is no flip-and-shift of its sample"
                seen.update((vflip, hflip) for vflip, hflip, _, _ in matches)
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


def test_custom_augment_runs_on_host_batches():
    calls = []

    def invert(images, masks, rng):
        calls.append((type(images), type(rng)))
        return 1.0 - images, masks

    dataset = ArraySet(4)
    images, masks = next(iter(DataLoader(dataset, batch_size=4, augment=invert)))
    np.testing.assert_allclose(images, 1.0 - dataset.images)
    np.testing.assert_array_equal(masks, dataset.masks)
    assert calls == [(np.ndarray, Generator)]


def test_loader_delivers_to_the_device(bk):
    dataset = Shapes(6, image_size=16, seed=0)
    kwargs = dict(batch_size=4, shuffle=True, seed=2, hflip=True, crop_padding=1)
    on_host = list(DataLoader(dataset, device="cpu", **kwargs))
    on_device = list(DataLoader(dataset, device=bk.device, **kwargs))
    assert len(on_device) == len(on_host) == 2
    for (images, masks), (host_images, host_masks) in zip(on_device, on_host, strict=True):
        assert bk.owns(images) and bk.owns(masks)
        assert images.dtype == np.float32 and masks.dtype == np.int64
        np.testing.assert_array_equal(bk.numpy(images), host_images)
        np.testing.assert_array_equal(bk.numpy(masks), host_masks)


def test_loader_dtype():
    images, _ = next(iter(DataLoader(ArraySet(2), dtype="float64")))
    assert images.dtype == np.float64


def test_loader_refuses_mixed_sizes():
    class Mixed:
        def __len__(self):
            return 2

        def __getitem__(self, index):
            size = 4 + index
            return np.zeros((3, size, size), np.float32), np.zeros((size, size), np.uint8)

    with pytest.raises(ValueError, match="samples of different sizes"):
        next(iter(DataLoader(Mixed(), batch_size=2)))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(batch_size="4"), TypeError, "batch_size must be an int"),
    (dict(crop_padding=-1), ValueError, "crop_padding must be >= 0"),
    (dict(augment="flip"), TypeError, "augment must be a callable"),
    (dict(device="tpu"), ValueError, "unknown device 'tpu'"),
])
def test_loader_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(ArraySet(2), **kwargs)
    with pytest.raises(TypeError, match="must support len"):
        DataLoader(object())


# ---------------------------------------------------------------------------------------
# Class statistics

def test_median_frequency_weights_by_hand():
    masks = [np.array([[0, 0, 1], [1, 255, 0]]),   # sizes may differ between images
             np.array([[2, 2], [0, 255]]),
             np.array([[0, 0, 0], [0, 0, 1]])]
    num_classes = 4  # class 3 appears nowhere
    freq = []
    for c in range(num_classes):
        pixels = sum(int((m == c).sum()) for m in masks)
        total = sum(int((m != 255).sum()) for m in masks if (m == c).any())
        freq.append(pixels / total if total else 0.0)
    median = statistics.median(f for f in freq if f > 0)
    expected = [median / f if f > 0 else 0.0 for f in freq]

    np.testing.assert_allclose(class_frequencies(masks, num_classes), freq, rtol=1e-12)
    weights = median_frequency_weights(masks, num_classes)
    assert weights.dtype == np.float64
    np.testing.assert_allclose(weights, expected, rtol=1e-12)
    assert sorted(weights[:3].tolist())[1] == pytest.approx(1.0)  # the median class


def test_class_frequencies_of_an_array_equal_those_of_its_images(shapes200):
    masks = shapes200.masks[:20]
    np.testing.assert_array_equal(class_frequencies(masks, 4), class_frequencies(list(masks), 4))
    with pytest.raises(ValueError, match=r"mask 1 has labels \[5\]"):
        class_frequencies([np.zeros((2, 2), int), np.full((2, 2), 5)], 4)
    with pytest.raises(ValueError, match="no labelled pixel"):
        median_frequency_weights([np.full((2, 2), 255)], 4)


def test_objects_only_merges_the_classes_and_keeps_void():
    from minifcn.data import objects_only

    masks = np.array([[0, 1, 2], [3, 255, 0]], dtype=np.uint8)
    merged = objects_only(masks)
    assert merged.dtype == masks.dtype and merged.shape == masks.shape
    assert merged.tolist() == [[0, 1, 1], [1, 255, 0]]
    assert objects_only(np.array([0, 2, -1]), ignore_index=-1).tolist() == [0, 1, -1]


@pytest.mark.parametrize("rows,cols", [(0, 0), (1, 0), (-2, 1), (0, -3), (2, 2), (4, 0), (0, -6)])
def test_shifted_moves_a_mask_by_whole_pixels_and_fills_what_it_uncovers(rows, cols):
    from minifcn.data import shifted

    a = np.arange(2 * 4 * 5).reshape(2, 4, 5)
    moved = shifted(a, rows, cols, -1)
    assert moved.shape == a.shape and moved.dtype == a.dtype
    for n, i, j in np.ndindex(a.shape):
        inside = 0 <= i - rows < 4 and 0 <= j - cols < 5
        assert moved[n, i, j] == (a[n, i - rows, j - cols] if inside else -1), (n, i, j)


def test_the_four_neighbours_are_one_pixel_away_each_way():
    from minifcn.data import FOUR_NEIGHBOURS, shifted

    assert sorted(FOUR_NEIGHBOURS) == [(-1, 0), (0, -1), (0, 1), (1, 0)]
    dot = np.zeros((3, 3), dtype=int)
    dot[1, 1] = 1
    spread = sum(shifted(dot, r, c, 0) for r, c in FOUR_NEIGHBOURS)
    assert spread.tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]


def test_load_image_turns_phone_photos_upright(tmp_path, pil):
    """A photo stored sideways with EXIF orientation 6 ("turn 90 degrees clockwise to
    view") comes back upright, as the phone showed it."""
    stored = np.zeros((32, 48, 3), dtype=np.uint8)  # 32 rows x 48 columns as stored
    stored[:16, :16] = (255, 0, 0)  # red in the stored top-left corner
    exif = pil.Exif()
    exif[0x0112] = 6
    pil.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    image = load_image(tmp_path / "phone.jpg")
    assert image.shape == (3, 48, 32)  # upright: 48 rows x 32 columns
    assert image[0, 4, 28] > 0.9 and image[0, 4, 4] < 0.1  # red moved to the top-right


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "L", "LA", "RGBA", "CMYK", "P",
                                  "P with transparency"])
def test_load_image_reads_every_mode_as_rgb_in_zero_one(tmp_path, pil, mode):
    grey = np.array([[0, 64], [128, 255]], dtype=np.uint8)
    save = {}
    if mode in ("I;16", "I"):
        picture = pil.fromarray(grey.astype(np.uint16) * 257)  # 16 bits: 0 .. 65535
        picture = picture.convert("I") if mode == "I" else picture
    elif mode == "F":
        picture = pil.fromarray(grey.astype(np.float32) / 255.0)
    elif mode.startswith("P"):
        picture = pil.fromarray(np.stack([grey] * 3, axis=-1)).convert(
            "P", palette=pil.Palette.ADAPTIVE, colors=4)
        if mode != "P":
            save = {"transparency": 0}
    else:
        picture = pil.fromarray(np.stack([grey] * 3, axis=-1)).convert(mode)
    assert picture.mode == mode.split()[0]
    path = tmp_path / ("x.tiff" if mode in ("I;16", "I", "F", "CMYK") else "x.png")
    picture.save(path, **save)
    image = load_image(path)
    assert image.shape == (3, 2, 2) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    np.testing.assert_allclose(image[0], grey / 255.0, atol=0.02)  # the picture's greys


def test_a_corrupt_image_is_one_clear_error(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        load_image(tmp_path / "broken.jpg")


def test_image_files_expands_folders(tmp_path, pil):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in image_files([tmp_path])] == ["a.jpg", "b.png"]
    assert image_files([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]  # as given
    with pytest.raises(FileNotFoundError, match="no image file or folder"):
        image_files([tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="holds no image files"):
        image_files([tmp_path / "sub"])
