"""Lesson 12: Measuring a segmenter: confusion matrix, accuracy, IoU and void pixels

What this lesson teaches:
- the confusion matrix n_ij (pixels of true class i predicted as j), accumulated over a
  whole data set (minifcn.metrics.ConfusionMatrix), and the four measures the FCN paper
  reports, all read off it: pixel accuracy, mean accuracy, mean IoU (intersection over
  union) and frequency-weighted IoU, computed here by hand from their formulas and checked
  against the library;
- void pixels: the toy masks mark a 1-px band on each side of every edge with 255, as Pascal
  VOC does; those pixels are left out of every count, whatever the prediction says there;
- why pixel accuracy flatters: predicting "background" everywhere scores a high pixel
  accuracy and a low mean IoU (exactly a quarter of it, with four classes);
- how each measure reacts to typical mistakes, made on purpose from the true masks: objects
  grown, shrunk, shifted, drawn in coarse blocks, or given the wrong class;
- per-class IoU, and the rule for a class absent from both the truth and the prediction
  (left out of the means, not counted as 0 or 1);
- semantic segmentation does not tell instances apart, and neither do its measures:
  missing one of two circles still leaves a good circle IoU.

New since lesson 11: no training at all. The predictions are made from the true masks, so
every number below is exact and every claim is checked against it.

Run: python lessons/12_metrics.py [--quick] [--out DIR] [--device gpu]
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from minifcn import course
from minifcn.data import FOUR_NEIGHBOURS, IGNORE_INDEX, PALETTE, Shapes, colorize, shifted
from minifcn.metrics import ConfusionMatrix

lesson = course.start(__doc__, exercises=["metrics", "cross_entropy"])
NUM_IMAGES = 40 if lesson.quick else 400
C = Shapes.num_classes
CLASSES = Shapes.CLASSES
BACKGROUND, CIRCLE, SQUARE, TRIANGLE = range(C)

# The same images twice: masks with the void band (what training and evaluation use) and
# the raw labels underneath it (dense, what the made-up predictions start from).
shapes = Shapes(NUM_IMAGES, seed=0, split="val")
raw = Shapes(NUM_IMAGES, seed=0, split="val", void_band=False)
truth = shapes.masks.astype(np.int64)
labels = raw.masks.astype(np.int64)
truth_on_device = lesson.asarray(truth)


def measure(prediction):
    """A ConfusionMatrix filled with one prediction (N, H, W) of the whole set, on device."""
    confusion = ConfusionMatrix(C, ignore_index=IGNORE_INDEX)
    confusion.update(lesson.asarray(prediction), truth_on_device)
    return confusion


# ---------------------------------------------------------------------------------------
# Made-up predictions: each imitates one kind of mistake, on the host with NumPy
# (minifcn.data.shifted moves a mask by whole pixels).

def on_an_edge(a):
    """True where a 4-neighbour has another label (the image border is not an edge).

    Written out here rather than taken from minifcn.data.label_boundary, because this
    lesson uses it to check the library's void band independently."""
    edge = np.zeros(a.shape, dtype=bool)
    for rows, cols in FOUR_NEIGHBOURS:
        neighbour = shifted(a, rows, cols, -1)
        edge |= (neighbour != a) & (neighbour != -1)
    return edge


def grown(a, pixels):
    """Objects grown by ``pixels`` into the background (never into another object)."""
    for _ in range(pixels):
        nearest_object = np.max([shifted(a, r, c, BACKGROUND) for r, c in FOUR_NEIGHBOURS], axis=0)
        a = np.where(a == BACKGROUND, nearest_object, a)
    return a


def shrunk(a, pixels):
    """Objects shrunk by ``pixels``: their edge pixels handed to the background."""
    for _ in range(pixels):
        a = np.where((a != BACKGROUND) & on_an_edge(a), BACKGROUND, a)
    return a


def blocky(a, block):
    """One label per ``block`` x ``block`` square, the most frequent one in it: what a
    decoder at output stride ``block`` with no up-sampling skill would draw."""
    N, H, W = a.shape
    onehot = a[:, None] == np.arange(C)[None, :, None, None]
    counts = onehot.reshape(N, C, H // block, block, W // block, block).sum(axis=(3, 5))
    return counts.argmax(axis=1).repeat(block, axis=1).repeat(block, axis=2)


predictions = {
    "perfect": labels,
    "all background": np.zeros_like(labels),
    "objects grown 2 px": grown(labels, 2),
    "objects shrunk 2 px": shrunk(labels, 2),
    "shifted 3 px right": shifted(labels, 0, 3, BACKGROUND),
    "16 x 16 blocks": blocky(labels, 16),
    "triangles called squares": np.where(labels == TRIANGLE, SQUARE, labels),
}
results = {name: measure(p) for name, p in predictions.items()}


# %% [markdown]
# ## 1. Void pixels: the band nobody is graded on
#
# The masks have a void band along every outline (label 255): those pixels are ignored by
# the loss and by the scores.

# %%
lesson.heading("1. Void pixels: the band nobody is graded on")

void = truth == IGNORE_INDEX
assert np.array_equal(shapes.images, raw.images), "the two data sets must hold the same images"
assert np.array_equal(void, on_an_edge(labels)), "void = every pixel beside another label"
assert np.array_equal(truth[~void], labels[~void]), "void only hides labels, changes none"

wrong_on_void = np.where(void, (labels + 1) % C, labels)  # wrong on every void pixel
perfect, sloppy = results["perfect"], measure(wrong_on_void)
assert np.array_equal(sloppy.matrix, perfect.matrix), "void pixels must not be counted"
assert perfect.matrix.sum() == (~void).sum(), "every non-void pixel counted exactly once"
assert sloppy.pixel_accuracy() == 1.0, "wrong only on void pixels is still perfect"
lesson.say(f"""
    The toy masks mark a 1-px band on each side of every edge with {IGNORE_INDEX} ("void"), as
    Pascal VOC marks its object outlines: where two regions meet, the true label is a
    matter of opinion, so nobody is graded there. In these {NUM_IMAGES} validation images
    {void.mean():.1%} of the pixels are void, exactly the pixels with a 4-neighbour of
    another label. ConfusionMatrix(num_classes={C}, ignore_index={IGNORE_INDEX}) leaves them
    out: a prediction wrong on every void pixel and right everywhere else gets the very
    same confusion matrix as a perfect one ({perfect.matrix.sum():,} pixels counted, the
    non-void ones), and pixel accuracy {sloppy.pixel_accuracy():.3f}. The loss skips them
    too (CrossEntropyLoss(ignore_index=255)).
""")


def save_void_figure(path, index=0, zoom=20):
    """Image | mask with its void band | a zoom on the band around an object."""
    mask = truth[index]
    rows, cols = np.nonzero(labels[index] != BACKGROUND)
    top = int(np.clip(rows.mean() - zoom / 2, 0, mask.shape[0] - zoom))
    left = int(np.clip(cols.mean() - zoom / 2, 0, mask.shape[1] - zoom))
    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    axes[0].imshow(np.clip(shapes.images[index].transpose(1, 2, 0), 0, 1))
    axes[0].set_title("image")
    axes[1].imshow(colorize(mask, PALETTE), interpolation="nearest")
    axes[1].add_patch(plt.Rectangle((left - 0.5, top - 0.5), zoom, zoom, fill=False,
                                    edgecolor="red", linewidth=1.5))
    axes[1].set_title(f"mask: void ({IGNORE_INDEX}) in cream")
    axes[2].imshow(colorize(mask[top:top + zoom, left:left + zoom], PALETTE),
                   interpolation="nearest")
    axes[2].set_title(f"zoom ({zoom} x {zoom} px): one pixel\nof void on each side of the edge")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Void pixels are left out of the loss and of every metric")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("void_band.png")
save_void_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 2. The confusion matrix and the four measures
#
# The confusion matrix, and the four measures of the FCN paper computed from it: pixel
# accuracy, mean accuracy, mean IoU and frequency-weighted IoU.

# %%
lesson.heading("2. The confusion matrix and the four measures")

example = "16 x 16 blocks"
confusion = results[example]
counted = ~void
by_hand = np.bincount(C * truth[counted] + predictions[example][counted],
                      minlength=C * C).reshape(C, C)
assert np.array_equal(by_hand, confusion.matrix), "n_ij must count (truth i, prediction j)"

n = confusion.matrix.astype(np.float64)
t = n.sum(axis=1)                 # t_i: pixels of true class i
predicted = n.sum(axis=0)         # sum_j n_ji: pixels predicted as class i
correct = np.diag(n)              # n_ii
iou = correct / (t + predicted - correct)
formulas = {
    "pixel_acc": correct.sum() / t.sum(),
    "mean_acc": np.mean(correct / t),
    "mean_iou": np.mean(iou),
    "fw_iou": (t * iou).sum() / t.sum(),
}
library = confusion.compute()
for key, value in formulas.items():
    assert np.isclose(value, library[key], rtol=1e-12), f"{key}: {value} vs {library[key]}"
assert (t > 0).all(), "every class occurs in the validation set"
to_background = n[1:, BACKGROUND]
to_other_objects = n[1:, 1:].sum(axis=1) - np.diag(n)[1:]
assert (to_background > 2 * to_other_objects).all(), "blocks mostly confuse objects and background"

print(f"  confusion matrix of the prediction '{example}' (rows: truth, columns: prediction)")
print("  " + " " * 12 + "".join(f"{name:>12}" for name in CLASSES))
for name, row in zip(CLASSES, confusion.matrix, strict=True):
    print(f"  {name:>12}" + "".join(f"{count:12,}" for count in row))
print()
lesson.say("""
    Every measure starts from one table. n_ij counts the (non-void) pixels of true class i
    that the model labelled j, summed over the WHOLE data set, not averaged per image; the
    diagonal is what it got right. Above, for a prediction that draws one label per
    16 x 16 block: most errors are objects called background and background called an
    object, along the outlines; one shape called another is rarer (for each shape, less
    than half as often). With t_i = sum_j n_ij (the pixels of class i) and IoU_i =
    n_ii / (t_i + sum_j n_ji - n_ii), the FCN paper's four measures are:
""")
print(f"    pixel accuracy           sum_i n_ii / sum_i t_i          {formulas['pixel_acc']:.4f}")
print(f"    mean accuracy            (1/C) sum_i n_ii / t_i          {formulas['mean_acc']:.4f}")
print(f"    mean IoU                 (1/C) sum_i IoU_i               {formulas['mean_iou']:.4f}")
print(f"    frequency-weighted IoU   sum_i t_i IoU_i / sum_i t_i     {formulas['fw_iou']:.4f}")
print()
lesson.say("""
    The IoU of a class divides the pixels that are that class in both the truth and the
    prediction (the intersection, n_ii) by those that are that class in either (the
    union, t_i + sum_j n_ji - n_ii): it punishes misses and false alarms alike. Each
    number above was computed here from n_ij and equals ConfusionMatrix.compute()'s.
""")


# %% [markdown]
# ## 3. How each measure reacts
#
# Different mistakes on the same masks, and how each measure reacts; why pixel accuracy
# flatters.

# %%
lesson.heading("3. How each measure reacts")

metrics = {name: confusion.compute() for name, confusion in results.items()}
print(f"  {'':<26}{'pixel':>7}{'mean':>7}{'mean':>7}{'fw':>7}   IoU per class")
print(f"  {'prediction':<26}{'acc':>7}{'acc':>7}{'IoU':>7}{'IoU':>7}   "
      + "".join(f"{name:>11}" for name in CLASSES))
for name, m in metrics.items():
    print(f"  {name:<26}{m['pixel_acc']:7.3f}{m['mean_acc']:7.3f}{m['mean_iou']:7.3f}"
          f"{m['fw_iou']:7.3f}   " + "".join(f"{v:11.3f}" for v in m["per_class_iou"]))
print()

per_class_acc = {name: confusion.per_class_accuracy() for name, confusion in results.items()}
for key in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou"):
    assert metrics["perfect"][key] == 1.0, f"a perfect prediction scores 1 on {key}"

lazy = metrics["all background"]
background_share = (truth == BACKGROUND).sum() / counted.sum()
assert np.isclose(lazy["pixel_acc"], background_share), "all-background accuracy = its share"
assert lazy["pixel_acc"] > 0.6 and lazy["mean_iou"] < 0.25, f"pixel acc must flatter: {lazy}"
assert np.isclose(lazy["mean_iou"], lazy["pixel_acc"] / C), "mean IoU = pixel acc / C"
assert np.isclose(lazy["mean_acc"], 1 / C), "mean accuracy = 1 / C"
assert np.isclose(lazy["fw_iou"], lazy["pixel_acc"] ** 2), "fw IoU = pixel acc squared"
lesson.say(f"""
    WHY PIXEL ACCURACY FLATTERS. {background_share:.1%} of the graded pixels are background,
    so a "model" that answers background everywhere scores a pixel accuracy of
    {lazy['pixel_acc']:.3f} without finding a single object. Mean IoU sees through it: the
    background IoU equals that same share, each object class gets 0, and the mean is
    exactly a quarter of the pixel accuracy, {lazy['mean_iou']:.3f}. Mean accuracy is 1/C
    = {lazy['mean_acc']:.2f}, and frequency-weighted IoU, which weights each class by its
    share of the pixels, is the pixel accuracy squared ({lazy['fw_iou']:.3f}): it mostly
    grades the background, as pixel accuracy does.
""")

objects = [CIRCLE, SQUARE, TRIANGLE]
grown_, shrunk_ = "objects grown 2 px", "objects shrunk 2 px"
assert np.allclose(per_class_acc[grown_][objects], 1.0), "growing finds every object pixel"
assert metrics[grown_]["mean_acc"] > metrics[grown_]["mean_iou"] + 0.05, (
    "mean accuracy ignores false alarms, IoU does not")
assert np.allclose(metrics[shrunk_]["per_class_iou"][objects], per_class_acc[shrunk_][objects]), (
    "with no false alarms an object's IoU is its accuracy")
lesson.say(f"""
    GROWN OBJECTS find every object pixel: the accuracy of circles, squares and triangles
    is exactly 1, and mean accuracy ({metrics[grown_]['mean_acc']:.3f}) barely notices the
    false alarms around them. Mean IoU does ({metrics[grown_]['mean_iou']:.3f}): the extra
    pixels enlarge each union. SHRUNK OBJECTS raise no false alarm at all, so each object
    IoU equals its accuracy; both drop with the pixels lost
    (mean IoU {metrics[shrunk_]['mean_iou']:.3f}). The objects are small (radius 6 to 20
    px), so a 2-px band along the outline is a large share of each.
""")

shift_steps = (1, 2, 4, 8)
shift_iou = [measure(shifted(labels, 0, s, BACKGROUND)).mean_iou() for s in shift_steps]
assert shift_iou[0] > 0.999, f"a 1-px shift moves edges only within the void band {shift_iou}"
assert all(a > b for a, b in zip(shift_iou, shift_iou[1:], strict=False)), (
    f"IoU must fall as the shift grows {shift_iou}")
swapped = metrics["triangles called squares"]
triangle_share = (truth == TRIANGLE).sum() / counted.sum()
assert np.isclose(1 - swapped["pixel_acc"], triangle_share), "pixel acc loses the triangles only"
assert 1 - swapped["mean_iou"] > 0.25, f"mean IoU drops hard when a class is lost {swapped}"
assert swapped["per_class_iou"][TRIANGLE] == 0.0, "no triangle predicted: triangle IoU 0"
lesson.say(f"""
    A SHIFTED mask (every object drawn a few pixels to the right, as a mis-aligned skip
    connection or crop would draw it) loses IoU fast: mean IoU
    {', '.join(f'{v:.3f}' for v in shift_iou)} for shifts of
    {', '.join(str(s) for s in shift_steps)} px. The first is no typo: a 1-px shift moves
    every edge within its void band, where nothing is graded; the band forgives an
    outline placed one pixel off. Lesson 05 computes crop offsets rather than guessing them
    for this reason. 16 x 16 BLOCKS keep the right classes in the right places and still
    lose {1 - metrics['16 x 16 blocks']['mean_iou']:.0%} of the mean IoU along the outlines:
    coarseness, the subject of lesson 09. TRIANGLES CALLED SQUARES are a pure
    classification error with perfect outlines: pixel accuracy drops only by the
    triangles' share ({triangle_share:.1%}), to {swapped['pixel_acc']:.3f}, but the triangle
    IoU is 0 and the square IoU falls to {swapped['per_class_iou'][SQUARE]:.3f}, so mean
    IoU falls to {swapped['mean_iou']:.3f}. Mean IoU weighs every class equally, however
    few pixels it has: that is why it is the headline number.
""")


def save_reactions_figure(path, index=3):
    fig, axes = plt.subplots(2, 4, figsize=(13, 7.4), layout="constrained")
    axes = axes.ravel()
    axes[0].imshow(np.clip(shapes.images[index].transpose(1, 2, 0), 0, 1))
    axes[0].set_title(f"validation image {index}", fontsize=10)
    for ax, (name, prediction) in zip(axes[1:], predictions.items(), strict=True):
        ax.imshow(colorize(prediction[index], PALETTE), interpolation="nearest")
        m = metrics[name]
        ax.set_title(f"{name}\npixel acc {m['pixel_acc']:.2f}, mean IoU {m['mean_iou']:.2f}",
                     fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=PALETTE[i] / 255.0) for i in range(C)]
    fig.legend(handles, CLASSES, loc="outside lower center", ncol=C, frameon=False)
    fig.suptitle("Made-up predictions (scores over the whole validation set)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_confusion_figure(path, names=("16 x 16 blocks", "triangles called squares")):
    """Row-normalised confusion matrices (each row: where one true class went)."""
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 5))
    for ax, name in zip(axes, names, strict=True):
        counts = results[name].matrix
        shares = counts / counts.sum(axis=1, keepdims=True)
        shown = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i in range(C):
            for j in range(C):
                ax.text(j, i, f"{shares[i, j]:.2f}\n({counts[i, j]:,})", ha="center",
                        va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
        ax.set_xticks(range(C), CLASSES)
        ax.set_yticks(range(C), CLASSES)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"'{name}': mean IoU {metrics[name]['mean_iou']:.3f}")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.suptitle("Confusion matrices, rows normalised (pixel counts in brackets)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("predictions.png")
save_reactions_figure(path)
lesson.saved(path)
path = lesson.figure("confusion_matrices.png")
save_confusion_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 4. A class that is not there
#
# A class absent from the truth: its IoU is undefined when it is not predicted either, and 0
# after a false alarm; what each does to the mean.

# %%
lesson.heading("4. A class that is not there")

only_circles = next(i for i in range(NUM_IMAGES)
                    if set(np.unique(labels[i])) == {BACKGROUND, CIRCLE})
single = ConfusionMatrix(C)
single.update(lesson.asarray(labels[only_circles][None]), lesson.asarray(truth[only_circles][None]))
iou_absent = single.per_class_iou()
assert np.isnan(iou_absent[[SQUARE, TRIANGLE]]).all(), "absent and unpredicted: IoU undefined"
mean_alone = single.mean_iou()
assert mean_alone == 1.0, "the undefined IoUs are left out of the mean"

false_alarm = labels[only_circles].copy()
false_alarm[:2, :2] = TRIANGLE  # four pixels of a triangle that is not there
single.reset()
single.update(lesson.asarray(false_alarm[None]), lesson.asarray(truth[only_circles][None]))
iou_alarm = single.per_class_iou()
assert iou_alarm[TRIANGLE] == 0.0 and np.isnan(iou_alarm[SQUARE]), "a false alarm scores 0"
assert np.isclose(single.mean_iou(), np.nanmean(iou_alarm)), "mean over the defined classes"
assert single.mean_iou() < 0.7, "one false class costs a third of the mean"
lesson.say(f"""
    Image {only_circles} holds circles only. Scored alone against itself, squares and
    triangles have IoU 0/0: undefined (NaN in per_class_iou: {np.round(iou_absent, 3)}),
    and left out of the mean, which stays {mean_alone:.1f}
    rather than being dragged to 0.5 by classes nobody asked about. Paint four pixels of a
    triangle into the corner, and the triangle IoU becomes 0/4 = 0, a defined failure that
    counts: the mean falls to {np.nanmean(iou_alarm):.3f} (per class
    {np.round(iou_alarm, 3)}). This is one reason to sum one confusion matrix over all
    images, as ConfusionMatrix.update does batch after batch, rather than to average
    per-image scores: over the whole set every class is present (section 2), and a
    missing class in one image neither helps nor hurts.
""")


# %% [markdown]
# ## 5. One label per class, not per object
#
# Semantic segmentation scores cannot tell two touching objects of one class from one.

# %%
lesson.heading("5. One label per class, not per object")


def two_separate_circles():
    """The first image with two circles that are far apart and fully visible, and the two
    circles' disks (from the objects the generator placed)."""
    centres = np.arange(shapes.image_size) + 0.5
    rows, cols = centres[:, None], centres[None, :]
    for index, classes in enumerate(shapes.objects.classes):
        circles = np.flatnonzero(classes == CIRCLE)
        for first, second in zip(circles, circles[1:], strict=False):
            (r0, c0), (r1, c1) = shapes.objects.centers[index, [first, second]]
            s0, s1 = shapes.objects.sizes[index, [first, second]]
            disks = [(rows - r0) ** 2 + (cols - c0) ** 2 <= s0 ** 2,
                     (rows - r1) ** 2 + (cols - c1) ** 2 <= s1 ** 2]
            visible = all(set(np.unique(truth[index][disk])) - {IGNORE_INDEX} == {CIRCLE}
                          for disk in disks)
            if visible and np.hypot(r0 - r1, c0 - c1) > s0 + s1 + 4:
                return index, disks
    raise RuntimeError("no image with two separate circles: use more images")


index, disks = two_separate_circles()
mask = truth[index]
for disk in disks:
    assert set(np.unique(mask[disk])) - {IGNORE_INDEX} == {CIRCLE}, "both circles are 'circle'"
assert not (disks[0] & disks[1]).any(), "two separate objects"
small = min(disks, key=np.sum)
one_missed = np.where(small, BACKGROUND, labels[index])  # the smaller circle not found at all
scored = ConfusionMatrix(C)
scored.update(lesson.asarray(one_missed[None]), lesson.asarray(mask[None]))
circle_iou = scored.per_class_iou()[CIRCLE]
circles_in_image = int((shapes.objects.classes[index] == CIRCLE).sum())
circles_text = ("two circles, far apart and in full view" if circles_in_image == 2 else
                f"{circles_in_image} circles, two of them far apart and in full view")
assert circle_iou > 0.5, f"a whole circle missed, yet circle IoU {circle_iou:.3f}"
lesson.say(f"""
    Image {index} has {circles_text}, and its mask labels every circle pixel 1:
    semantic segmentation gives each pixel a class, not an object (lesson 05), and its
    measures count pixels per class. A prediction that misses the smaller of the two
    entirely, and is perfect everywhere else, still scores a circle IoU of
    {circle_iou:.3f}, since the circle pixels it did find far outnumber those it missed.
    Whether every object was found is a question for instance-level measures, which
    belong to instance segmentation.
""")


lesson.done()
