"""ShapeLabels, the toy classification task: labels from masks, seeds, splits, the loader."""

from __future__ import annotations

import numpy as np
import pytest

from minifcn.data import DataLoader, ShapeLabels, Shapes


@pytest.fixture(scope="module")
def labels300():
    """The harder task: up to 4 objects of 64 x 64 Shapes sizes, the largest shape wins."""
    return ShapeLabels(300, image_size=64, seed=5, max_objects=4, object_scale=1.0)


def test_images_and_labels(labels300):
    ds = labels300
    assert len(ds) == 300 and ds.num_classes == len(ds.classes) == 3
    assert ds.images.shape == (300, 3, 64, 64) and ds.images.dtype == np.float32
    assert ds.labels.shape == (300,) and ds.labels.dtype == np.int64
    image, label = ds[7]
    np.testing.assert_array_equal(image, ds.images[7])
    assert label == ds.labels[7]
    assert ShapeLabels(4).images.shape == (4, 3, 96, 96), "96 px by default (pool5 3 x 3)"


def test_label_is_the_shape_covering_most_pixels(labels300):
    """Recount each image's pixels by a loop over the images: the label is the class with
    the most, and every image holds at least one object."""
    masks = labels300.shapes.masks
    assert not (masks == 255).any(), "counted on masks without the void band"
    for i in range(len(labels300)):
        counts = [int((masks[i] == k).sum()) for k in (1, 2, 3)]
        assert max(counts) > 0
        assert counts == labels300.pixels[i].tolist()
        assert labels300.labels[i] == counts.index(max(counts))


def test_labels_follow_the_objects_drawn():
    """With one object per image the label is that object's class (classes 1..3 -> 0..2)."""
    ds = ShapeLabels(50, image_size=64, seed=2, min_objects=1, max_objects=1)
    np.testing.assert_array_equal(ds.labels, ds.shapes.objects.classes[:, 0] - 1)


def test_deterministic_by_seed_and_split():
    first, again = ShapeLabels(20, 48, seed=3), ShapeLabels(20, 48, seed=3)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.labels, again.labels)
    other = ShapeLabels(20, 48, seed=4)
    assert not np.array_equal(first.images, other.images)


def test_splits_share_no_images_with_each_other_or_with_the_segmentation_data():
    train, val = ShapeLabels.splits(40, 40, image_size=48, seed=0)
    test = ShapeLabels(40, 48, seed=0, split="test")
    segmentation = Shapes(40, 48, seed=0, object_scale=1.0)  # the same scale, same seed
    flat = {name: ds.images.reshape(len(ds), -1)
            for name, ds in (("train", train), ("val", val), ("test", test),
                             ("shapes", segmentation))}
    for a in flat:
        for b in flat:
            if a < b:
                # the nearest pair of images of two sets is far apart: no image repeats
                distance = ((flat[a][:, None] - flat[b][None]) ** 2).mean(axis=2).min()
                assert distance > 1e-3, (a, b, distance)


def test_classes_are_roughly_balanced():
    """One object per image (the default): each class a third of the images, within 3
    standard deviations of 2000 draws. With up to 4 objects, squares (area 4 s^2) beat
    circles (pi s^2) and triangles a little more often; no class falls below a quarter."""
    balance = ShapeLabels(2000, image_size=48, seed=0).class_balance()
    assert balance.sum() == pytest.approx(1.0)
    assert np.abs(balance - 1 / 3).max() < 3 * np.sqrt(2 / 9 / 2000), balance
    balance = ShapeLabels(2000, image_size=48, seed=0, max_objects=4).class_balance()
    assert balance.min() > 0.25 and balance.max() < 0.42, balance


def test_one_object_of_twice_the_64_px_sizes_by_default():
    """The default task the classifier learns: one shape per image, its size 12 to 40 px at
    96 x 96 (object_scale image_size / 48), the label that shape's class."""
    ds = ShapeLabels(200, seed=1)
    assert (ds.shapes.num_objects == 1).all()
    np.testing.assert_array_equal(ds.labels, ds.shapes.objects.classes[:, 0] - 1)
    sizes = ds.shapes.objects.sizes[:, 0]
    assert sizes.min() >= 12.0 and sizes.max() <= 40.0 and sizes.max() > 30.0
    small = ShapeLabels(50, 48, seed=1).shapes.objects.sizes[:, 0]
    assert small.min() >= 6.0 and small.max() <= 20.0, "scale 1 at 48 px"


def test_object_scale_keeps_pixel_sizes_at_any_image_size():
    small, large = Shapes(50, 64, seed=1), ShapeLabels(50, 96, seed=1, object_scale=1.0)
    assert large.shapes.objects.sizes.max() <= 20.0
    scaled = Shapes(50, 96, seed=1)
    assert scaled.objects.sizes.max() > 20.0, "by default sizes grow with the image"
    assert small.objects.sizes.max() <= 20.0
    with pytest.raises(ValueError, match="object_scale"):
        Shapes(2, 32, object_scale=2.0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="split"):
        ShapeLabels(2, split="holdout")
    with pytest.raises(ValueError, match="seed"):
        ShapeLabels(2, seed=-1)


def test_loader_batches_labels_and_flips_leave_them(labels300):
    loader = DataLoader(labels300, batch_size=32, shuffle=True, seed=1, hflip=True, vflip=True,
                        crop_padding=4, device="cpu")
    seen = []
    for images, labels in loader:
        assert images.shape[1:] == (3, 64, 64) and labels.dtype == np.int64
        assert labels.ndim == 1 and len(labels) == len(images)
        seen.append(labels)
    # the labels are the dataset's, in the loader's order: the same multiset
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.sort(labels300.labels))
