"""Lesson 10: From a classifier to an FCN: fully connected layers become convolutions

What this lesson teaches:
- Long et al.'s starting point: a classification network, the segmenters' encoder followed
  by fully connected layers fc6 and fc7 and a class score layer, trained on one label per
  image (here: which shape a 96 x 96 image shows, ShapeLabels), and what makes such a
  task learnable in minutes: shapes large enough, no dropout, the right learning rate;
- convolutionalization: a Linear layer that reads a flattened C x k x k map IS a k x k
  convolution with the same weights reshaped, and every Linear after it a 1x1 convolution;
  the converted network gives the classifier's scores to float rounding;
- on a larger image the converted network is a sliding-window classifier computed in one
  pass: a map of class scores, one per 96 x 96 window at stride 32, the encoder's work
  shared by overlapping windows (and why that is close to, not equal to, classifying each
  crop on its own); on nine validation images side by side, the windows that are one
  whole image get their shape named, the ones in between are a mix;
- fine-tuning: FCN-32s and FCN-8s started from the converted classifier (encoder, fc6 and
  fc7 copied; class scores, skips and up-sampling fresh) against the same networks from
  scratch, with few labelled masks; and what the project's benchmark measured over seeds.

New since lesson 09: nn.Linear, nn.Flatten, the Classifier (build_model("classifier")),
convolutionalize and FCN.from_classifier.

Run: python lessons/10_from_classifier.py [--quick] [--out DIR] [--device gpu]
"""

import os
import time

# One BLAS thread, set before NumPy loads: on a busy shared machine a second thread waits
# for a free core at every matrix product (see lesson 01).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import minifcn
from minifcn import course, nn
from minifcn.data import IGNORE_INDEX, PALETTE, DataLoader, ShapeLabels, Shapes
from minifcn.functional import softmax
from minifcn.metrics import ConfusionMatrix
from minifcn.models import FCN, build_model, convolutionalize, summary
from minifcn.optim import Adam, make_scheduler
from minifcn.train import recipe

lesson = course.start(__doc__)
WIDTHS = (4, 8, 16, 16, 32) if lesson.quick else (8, 16, 32, 32, 64)
HEAD = WIDTHS[-1]
WINDOW = 96  # the classifier's image size: pool5 is 3 x 3, the kernel of FCN's fc6
CLASSIFIER_STEPS = 30 if lesson.quick else 440
CLASSIFIER_IMAGES = 480 if lesson.quick else 7040  # each image seen once
FINETUNE_STEPS = 30 if lesson.quick else 120
MASKS = 200  # labelled masks for fine-tuning: the few-masks regime
VAL_IMAGES = 48 if lesson.quick else 200
BATCH, LR = 16, 1e-3
PRETRAIN_LR = recipe("classifier")["lr"]  # minifcn pretrain's rate over its 750 steps: 3e-4
SEG_SIZE, C_SEG = 64, Shapes.num_classes
# The project's benchmark, benchmarks/results/pretraining.md (FCN-8s at the default
# widths, 200 masks, 20 epochs; the classifier from minifcn pretrain at its defaults),
# quoted in section 5: validation mean IoU from scratch and from the classifier, per seed.
BENCHMARK = {"classifier accuracy": 0.998, "pretrain seconds": 405,
             "scratch": (0.400, 0.462, 0.404), "classifier": (0.596, 0.637, 0.576)}


def on_device(array, dtype=np.float32):
    return lesson.asarray(np.asarray(array, dtype=dtype))


def train_steps(model, loader, steps, lr=LR):
    """``steps`` Adam steps (cosine schedule) of cross-entropy; returns the mean loss of
    the last tenth of them."""
    criterion = nn.CrossEntropyLoss(ignore_index=getattr(loader.dataset, "ignore_index",
                                                         -100), device=lesson.device)
    optimizer = Adam(model.parameters(), lr=lr)
    schedule = make_scheduler("cosine", optimizer, steps)
    model.train()
    losses = []
    while len(losses) < steps:
        for images, targets in loader:
            losses.append(float(criterion(model(images), targets)))
            model.zero_grad()
            model.backward(criterion.backward())
            optimizer.step()
            schedule.step()
            if len(losses) == steps:
                break
    return float(np.mean(losses[-max(1, steps // 10):]))


# %% [markdown]
# ## 1. A classifier on the segmenters' encoder
#
# The encoder FCN uses, topped by fully connected layers fc6 and fc7 and a class score
# layer, trained to name the shape in a 96 x 96 image.

# %%
lesson.heading("1. A classifier on the segmenters' encoder")

train_labels, val_labels = ShapeLabels.splits(CLASSIFIER_IMAGES, VAL_IMAGES, WINDOW, seed=0)
balance = train_labels.class_balance()
majority = float(np.bincount(val_labels.labels, minlength=3).max() / len(val_labels))
minifcn.manual_seed(0)
classifier = build_model("classifier", 3, image_size=WINDOW, widths=WIDTHS,
                         head_channels=HEAD, device=lesson.device)  # dropout 0 by default
table = summary(classifier, (1, 3, WINDOW, WINDOW))
rows = {row.name: row for row in table.rows}
print(f"  {'layer':<16}{'type':<12}{'output shape':<20}{'params':>8}")
for name in ("encoder.pool5", "flatten", "fc6.0", "fc7.0", "score_fr"):
    row = rows[name]
    print(f"  {name:<16}{row.kind:<12}{str(row.output_shape):<20}{row.params:>8,}")
print()
assert rows["encoder.pool5"].output_shape == (1, HEAD, 3, 3), "96 / 32 = 3"
assert rows["fc6.0"].params == HEAD * 3 * 3 * HEAD + HEAD, "fc6 reads the whole 3x3 map"

loader = DataLoader(train_labels, BATCH, shuffle=True, drop_last=True, seed=0, hflip=True,
                    device=lesson.device)
started = time.perf_counter()
final_loss = train_steps(classifier, loader, CLASSIFIER_STEPS)
classifier_seconds = time.perf_counter() - started
classifier.eval()
val_images = on_device(val_labels.images)
val_scores = minifcn.to_numpy(lesson.xp.concatenate(
    [classifier(val_images[i:i + 50]) for i in range(0, len(val_labels), 50)]))
accuracy = float((val_scores.argmax(axis=1) == val_labels.labels).mean())
print(f"  {CLASSIFIER_STEPS} steps of {BATCH} images in {classifier_seconds:.1f} s: training "
      f"loss {final_loss:.3f} (log 3 = {np.log(3):.3f} is a uniform guess), validation "
      f"accuracy {accuracy:.3f} (always the most common class: {majority:.3f})")
print()
assert np.isfinite(final_loss)
if not lesson.quick:  # 30 quick steps are still on the plateau at log 3
    assert accuracy > majority + 0.15, f"the classifier learns: {accuracy} vs {majority}"
lesson.say(f"""
    The classifier is the segmenters' encoder (five conv-BN-ReLU stages, each halving the
    size) followed by what a classification network of 2014 ends with: Flatten, then fc6
    and fc7, fully connected layers (nn.Linear) with ReLU (and dropout, 0 by default), then
    score_fr, a Linear giving one score per class. It takes images of exactly
    {WINDOW} x {WINDOW}: pool5 is then {HEAD} x 3 x 3, flattened into {HEAD * 9} numbers,
    and fc6 has a weight for each of them. Its task, ShapeLabels: which shape (circle,
    square, triangle) a Shapes image shows, one shape per image, 12 to 40 pixels in size;
    the labels come from the masks, and the classes are {balance[0]:.0%} /
    {balance[1]:.0%} / {balance[2]:.0%} of the training images.

    After {CLASSIFIER_STEPS} steps this classifier scores {accuracy:.1%} on validation
    images, where always answering the most common class scores {majority:.1%}. One label
    per image is a much weaker signal than one per pixel, and this task had to be made
    learnable. Its first version (the segmenter's shapes, 6 to 20 pixels, up to 4 per image,
    dropout 0.5 after fc6 and fc7) stayed at the most common class's share for 2000 steps;
    in a PyTorch twin of this network, the small shapes alone, dropout alone (0.5, even 0.2)
    or Adam at 3e-3 alone kept it there for 5 epochs. The loss sits on a plateau at log 3 (a
    uniform guess) before it starts to fall. This short run uses Adam at {LR:g} to leave it
    sooner (at {PRETRAIN_LR:g} it was still there after 200 steps); minifcn pretrain uses
    {PRETRAIN_LR:g}, which left it early for every seed tried, over its longer run (750
    steps). Section 5 says what that reached. What follows does not depend on how good the
    classifier is: the conversion is exact for any weights.
""")


# %% [markdown]
# ## 2. Fully connected layers are convolutions
#
# fc6 reads the whole 3 x 3 pool5 map, so it is a 3 x 3 convolution; fc7 and the scores are
# 1 x 1 convolutions. The weights are reshaped, not retrained, and the outputs agree to
# rounding.

# %%
lesson.heading("2. Fully connected layers are convolutions")

dense = convolutionalize(classifier).eval()
fc6_linear, fc6_conv = classifier.fc6[0], dense.fc6[0]
print(f"  fc6     Linear weight {fc6_linear.weight.shape}  ->  Conv2d weight "
      f"{fc6_conv.weight.shape}, kernel {fc6_conv.kernel_size}, padding {fc6_conv.padding}")
print(f"  fc7     Linear weight {classifier.fc7[0].weight.shape}    ->  Conv2d weight "
      f"{dense.fc7[0].weight.shape}")
print(f"  score_fr Linear weight {classifier.score_fr.weight.shape}     ->  Conv2d weight "
      f"{dense.score_fr.weight.shape}")
print()
assert fc6_conv.weight.shape == (HEAD, HEAD, 3, 3) and fc6_conv.padding == (0, 0)
assert list(dense.state_dict()) == list(classifier.state_dict()), "a renaming: same keys"
assert np.array_equal(minifcn.to_numpy(fc6_conv.weight.data).reshape(HEAD, -1),
                      minifcn.to_numpy(fc6_linear.weight.data)), "the same numbers, reshaped"

some = val_images[:32]
scores = minifcn.to_numpy(classifier(some))
converted = minifcn.to_numpy(dense(some))
gap32 = float(np.abs(converted[:, :, 0, 0] - scores).max())
double = convolutionalize(classifier).to(dtype="float64").eval()
classifier64 = classifier.to(dtype="float64")
gap64 = float(np.abs(minifcn.to_numpy(double(some.astype("float64")))[:, :, 0, 0]
                     - minifcn.to_numpy(classifier64(some.astype("float64")))).max())
classifier.to(dtype="float32")
print(f"  largest difference in the scores of 32 images: {gap32:.1e} (float32), "
      f"{gap64:.1e} (float64)")
print()
assert converted.shape == (32, 3, 1, 1)
assert gap32 < 1e-4 and gap64 < 1e-10, (gap32, gap64)
lesson.say(f"""
    A Linear layer reading the flattened {HEAD} x 3 x 3 map computes, for each of its
    {HEAD} outputs, the dot product of a {HEAD} x 3 x 3 block of weights with the map (plus
    a bias). A 3 x 3 convolution with {HEAD} input channels computes exactly that, at the
    one position where its kernel fits a 3 x 3 map. Flatten orders the numbers channel by
    channel, then row by row, as NCHW stores them, so the Linear's weight ({HEAD},
    {HEAD * 9}) reshaped to ({HEAD}, {HEAD}, 3, 3) IS the convolution's weight. fc7 and
    score_fr read vectors, i.e. 1 x 1 maps: 1 x 1 convolutions, weights reshaped to
    (out, in, 1, 1). convolutionalize(classifier) does only this, and keeps the names:
    the state_dict has the same keys. The scores agree to {gap32:.0e} in float32 and
    {gap64:.0e} in float64, rounding and nothing else.
""")


# %% [markdown]
# ## 3. One pass over a large image: a map of class scores
#
# The converted network takes any image size: on a larger image it returns one score vector
# per 96 x 96 window, a sliding-window classifier computed in one pass.

# %%
lesson.heading("3. One pass over a large image: a map of class scores")

# Nine validation images side by side, 3 x 3: a scene whose windows at multiples of 96 px
# are exactly images of the classifier's task, and whose windows in between straddle two
# or four of them.
TILES = 3
SCENE = TILES * WINDOW


def tiled(batch):
    """(9, ..., 96, 96) -> (..., 288, 288): the nine images as a 3 x 3 grid."""
    grid = batch[:TILES * TILES].reshape(TILES, TILES, *batch.shape[1:])
    grid = np.moveaxis(grid, (0, 1), (-4, -2))  # (..., rows, 96, columns, 96)
    return grid.reshape(*grid.shape[:-4], SCENE, SCENE)


scene_image = tiled(val_labels.images)[None]  # (1, 3, 288, 288)
scene_mask = tiled(val_labels.shapes.masks)  # (288, 288)
image = on_device(scene_image)
started = time.perf_counter()
score_map = minifcn.to_numpy(dense(image))[0]  # (3, 7, 7)
dense_seconds = time.perf_counter() - started
side = SCENE // 32 - 2
assert score_map.shape == (3, side, side), "one score vector per 96 x 96 window, stride 32"

# the classifier run on each 96 x 96 crop at stride 32, one crop at a time
started = time.perf_counter()
crops = np.zeros_like(score_map)
for i in range(side):
    for j in range(side):
        crop = image[:, :, 32 * i:32 * i + WINDOW, 32 * j:32 * j + WINDOW]
        crops[:, i, j] = minifcn.to_numpy(classifier(crop))[0]
crop_seconds = time.perf_counter() - started
# the same head on each 3 x 3 window of the large image's own pool5 map: exact
pool5 = classifier.encoder(image).pooled[-1]
windows = np.zeros_like(score_map)
for i in range(side):
    for j in range(side):
        window = lesson.xp.ascontiguousarray(pool5[:, :, i:i + 3, j:j + 3])
        windows[:, i, j] = minifcn.to_numpy(
            classifier.score_fr(classifier.fc7(classifier.fc6(classifier.flatten(window)))))[0]
exact = float(np.abs(score_map - windows).max())
scale = float(np.abs(crops).mean())
crop_gap = float(np.abs(score_map - crops).mean())
agree = float((score_map.argmax(axis=0) == crops.argmax(axis=0)).mean())
assert exact < 1e-4, exact
assert 0 < crop_gap, "the crops differ, through the encoder's zero padding"

# what each window truly shows: the shape covering most of its pixels (none: background)
truth = np.full((side, side), -1)
for i in range(side):
    for j in range(side):
        cut = scene_mask[32 * i:32 * i + WINDOW, 32 * j:32 * j + WINDOW]
        counts = [(cut == k).sum() for k in (1, 2, 3)]
        truth[i, j] = int(np.argmax(counts)) if max(counts) > 0 else -1
labelled = truth >= 0
window_accuracy = float((score_map.argmax(axis=0) == truth)[labelled].mean())
# the windows that are exactly one of the nine images: every third, from the first
aligned = (score_map.argmax(axis=0) == truth)[::3, ::3]
aligned_right = int(aligned.sum())
tile_labels = val_labels.labels[:TILES * TILES].reshape(TILES, TILES)
assert np.array_equal(truth[::3, ::3], tile_labels), "those windows are the nine images"
if not lesson.quick:  # at 440 steps the classifier names 94.5% of validation images
    assert aligned_right >= 6, f"the map names the shape of most whole images: {aligned}"
print(f"  a {SCENE} x {SCENE} scene -> a {side} x {side} map of class scores in "
      f"{dense_seconds * 1000:.0f} ms; the classifier on each of the {side * side} crops: "
      f"{crop_seconds * 1000:.0f} ms")
print(f"  dense map vs the classifier's head on each 3 x 3 window of pool5: largest "
      f"difference {exact:.1e}")
print(f"  dense map vs the classifier on each pixel crop: mean difference {crop_gap:.3f} "
      f"(scores average {scale:.3f} in size); same winning class in {agree:.0%} of windows")
print(f"  the dense map's class is the window's largest shape in {aligned_right} of the "
      f"{aligned.size} windows that are one whole image, and in {window_accuracy:.0%} of all "
      f"{labelled.sum()} windows that hold a shape")
print()
lesson.say(f"""
    The converted network takes any image whose sides are multiples of 32 and at least
    {WINDOW}. On a {SCENE} x {SCENE} scene pool5 is {SCENE // 32} x {SCENE // 32}, the 3 x 3
    fc6 kernel fits at {side} x {side} positions, and the output is a {side} x {side} map
    of class scores: the classifier applied to every 96 x 96 window at a stride of 32
    pixels, in one pass ({dense_seconds * 1000:.0f} ms here, against
    {crop_seconds * 1000:.0f} ms for {side * side} separate crops, because overlapping
    windows share the encoder's work). It equals the classifier's head applied to each
    3 x 3 window of the scene's pool5 map to {exact:.0e}. It is close to, not equal to,
    the classifier run on each pixel crop (same winning class in {agree:.0%} of the
    windows): inside the encoder each 3 x 3 convolution pads its input with zeros, so a
    crop run alone sees zeros beyond its border where the scene has real pixels.

    The scene is nine validation images side by side, so every third window, from the
    first, is exactly one image of the classifier's task: the map names its shape in
    {aligned_right} of those {aligned.size} (the classifier alone: {accuracy:.1%} of its
    validation images). The windows in between hold parts of two or four images, and the
    classifier never saw such a window in training: over all
    {labelled.sum()} windows the map's class is the largest shape's in
    {window_accuracy:.0%}. A map of scores at a stride of 32 pixels is coarse, and it is
    only as good as the classifier on what each window shows; FCN's skips and learned
    up-sampling (lesson 09) are what turn it into a mask.

    The converted fc6 has no padding: it scores only windows that lie wholly inside the
    image, so its map is (H/32 - 2) x (W/32 - 2). FCN's fc6 (lesson 09) is the same 3 x 3
    convolution with padding 1, so that its map keeps pool5's size, H/32 x W/32, which its
    up-sampling needs; at the border it scores windows whose missing cells are zeros.
    Same weights and same names: copying one into the other is a renaming.
""")


def save_score_map_figure(path):
    """The scene with its windows | the dense map's class per window | the truth."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), layout="constrained")
    axes[0].imshow(np.clip(scene_image[0].transpose(1, 2, 0), 0, 1))
    for i, j in ((0, 0), (side - 1, side - 1)):
        axes[0].add_patch(plt.Rectangle((32 * j - 0.5, 32 * i - 0.5), WINDOW, WINDOW,
                                        fill=False, color="white", lw=1.5, ls="--"))
    centres = 32 * np.arange(side) + WINDOW // 2 - 0.5
    rows_, cols_ = np.meshgrid(centres, centres, indexing="ij")
    axes[0].scatter(cols_.ravel(), rows_.ravel(), s=9, color="white", edgecolor="black",
                    linewidth=0.5)
    axes[0].set_title(f"nine validation images as one {SCENE} x {SCENE} scene\n(windows "
                      f"96 x 96 at stride 32; dots: their centres; dashed: two of the "
                      f"{side * side})", fontsize=9)
    colours = np.vstack([PALETTE[1:] / 255.0, [[0.2, 0.2, 0.2]]])  # shapes, then "none"
    predicted = colours[score_map.argmax(axis=0)]
    confidence = softmax(score_map[None], dim=1)[0].max(axis=0)
    axes[1].imshow(predicted * (0.35 + 0.65 * confidence[..., None]))
    for (i, j), p in np.ndenumerate(confidence):
        axes[1].text(j, i, f"{p:.2f}", ha="center", va="center", color="white", fontsize=8)
    calls = np.bincount(score_map.argmax(axis=0).ravel(), minlength=3)
    tally = ", ".join(f"{n} {name}" for n, name in zip(calls, ShapeLabels.CLASSES,
                                                         strict=True) if n)
    axes[1].set_title(f"converted classifier: class per window ({tally})\n(brighter = "
                      f"surer; number = its probability)", fontsize=9)
    axes[2].imshow(colours[truth])
    axes[2].set_title("truth: the shape covering most of each window\n(white squares: the "
                      f"{aligned.size} windows that are one whole image)", fontsize=9)
    for ax in axes[1:]:  # the windows that are exactly one of the nine images
        for i, j in np.ndindex(TILES, TILES):
            ax.add_patch(plt.Rectangle((3 * j - 0.45, 3 * i - 0.45), 0.9, 0.9, fill=False,
                                       color="white", lw=1.2))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    names = ["circle", "square", "triangle", "no shape"][:4 if (truth < 0).any() else 3]
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours[:len(names)]]
    fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False,
               bbox_to_anchor=(0.5, -0.06))
    fig.suptitle("A classifier made fully convolutional scores every window in one pass")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


path = lesson.figure("dense_score_map.png")
save_score_map_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 4. Fine-tuning into FCN-32s and FCN-8s, few masks
#
# As Long et al. did: the classifier's encoder, fc6 and fc7 start FCN-32s and FCN-8s, which
# are then trained on only a few labelled masks, beside the same models started from
# scratch.

# %%
lesson.heading("4. Fine-tuning into FCN-32s and FCN-8s, few masks")

masks_train = Shapes(MASKS, SEG_SIZE, seed=0, split="train")
masks_val = Shapes(VAL_IMAGES, SEG_SIZE, seed=0, split="val")
starts = {}
for variant in ("32s", "8s"):
    minifcn.manual_seed(1)
    starts[f"fcn{variant} scratch"] = FCN(C_SEG, variant, widths=WIDTHS, head_channels=HEAD,
                                          dropout=0.0, upsample="bilinear",
                                          device=lesson.device)
    minifcn.manual_seed(1)  # the same fresh layers: only the copied ones differ
    starts[f"fcn{variant} classifier"] = FCN.from_classifier(
        classifier, C_SEG, variant, dropout=0.0, upsample="bilinear")
copied = starts["fcn8s classifier"].state_dict()
fresh = starts["fcn8s scratch"].state_dict()
assert np.array_equal(minifcn.to_numpy(copied["score_pool3.weight"]),
                      minifcn.to_numpy(fresh["score_pool3.weight"])), "same fresh layers"
assert np.array_equal(minifcn.to_numpy(copied["fc7.0.weight"]),
                      minifcn.to_numpy(dense.fc7[0].weight.data))

# Before any fine-tuning: at 96 px, the centre of FCN's padded fc6/fc7 map is the
# classifier's own fc7 output.
start = starts["fcn8s classifier"].eval()
centre = minifcn.to_numpy(start.fc7(start.fc6(start.encoder(some).pooled[-1])))[:, :, 1, 1]
own = minifcn.to_numpy(classifier.fc7(classifier.fc6(classifier.flatten(
    classifier.encoder(some).pooled[-1]))))
assert np.abs(centre - own).max() < 1e-4

seg_loader = DataLoader(masks_train, 8, shuffle=True, drop_last=True, seed=0, hflip=True,
                        device=lesson.device)
val_seg_images = on_device(masks_val.images)
val_seg_masks = lesson.asarray(masks_val.masks.astype(np.int64))
results = {}
started = time.perf_counter()
for name, model in starts.items():
    seg_loader.set_epoch(0)  # every model sees the same batches in the same order
    loss = train_steps(model, seg_loader, FINETUNE_STEPS, lr=3e-3)
    model.eval()
    confusion = ConfusionMatrix(C_SEG, ignore_index=IGNORE_INDEX)
    for i in range(0, VAL_IMAGES, 50):
        confusion.update(model(val_seg_images[i:i + 50]).argmax(axis=1),
                         val_seg_masks[i:i + 50])
    results[name] = (loss, confusion.compute()["mean_iou"])
finetune_seconds = time.perf_counter() - started
print(f"  {FINETUNE_STEPS} steps of 8 images from {MASKS} labelled masks each, Adam lr 3e-3 "
      f"({finetune_seconds:.1f} s for the four)")
print(f"  {'model':<22}{'last training loss':>20}{'val mean IoU':>14}")
for name, (loss, iou) in results.items():
    print(f"  {name:<22}{loss:20.3f}{iou:14.3f}")
print()
gain = {v: results[f"fcn{v} classifier"][1] - results[f"fcn{v} scratch"][1]
        for v in ("32s", "8s")}
assert all(np.isfinite(v) for v in gain.values())
lesson.say(f"""
    FCN.from_classifier builds an FCN with the classifier's widths and copies what the two
    share, by name: the encoder, fc6 and fc7 (convolutionalized). The class score layer is
    initialised afresh, as Long et al. did when going from ImageNet's 1000 classes to
    PASCAL's 21: the classifier's classes (which shape an image shows) are not the
    segmenter's (background, circle, square, triangle). The skip and up-sampling layers are new too.
    Before fine-tuning, the centre of the FCN's fc7 map on a 96 x 96 image is exactly the
    classifier's fc7 output (checked above).

    Each pair was built after the same seed, so its fresh layers are identical, and
    trained on the same {FINETUNE_STEPS} batches: FCN-32s {results['fcn32s scratch'][1]:.3f}
    from scratch against {results['fcn32s classifier'][1]:.3f} from the classifier
    ({gain['32s']:+.3f}); FCN-8s {results['fcn8s scratch'][1]:.3f} against
    {results['fcn8s classifier'][1]:.3f} ({gain['8s']:+.3f}). One run of each, at this
    small size and budget, is within the spread that changing the seed gives, so this
    lesson does not assert which start wins; the benchmark in section 5 repeats the
    comparison over three seeds, longer.
""")


# %% [markdown]
# ## 5. What the benchmark measured
#
# The project's benchmark of the same comparison over three seeds, quoted and checked here.

# %%
lesson.heading("5. What the benchmark measured")

scratch, started_ = np.array(BENCHMARK["scratch"]), np.array(BENCHMARK["classifier"])
differences = started_ - scratch
print(f"  {'seed':<8}{'from scratch':>14}{'from the classifier':>22}{'difference':>12}")
for seed, (a, b) in enumerate(zip(scratch, started_, strict=True)):
    print(f"  {seed:<8}{a:14.3f}{b:22.3f}{b - a:+12.3f}")
print(f"  {'mean':<8}{scratch.mean():14.3f}{started_.mean():22.3f}"
      f"{differences.mean():+12.3f}   (sd of the differences {differences.std(ddof=1):.3f})")
print()
assert (differences > 0).all(), "ahead in every seed"
assert differences.mean() > 3 * differences.std(ddof=1), "by far more than the spread"
assert differences.mean() > 2 * max(scratch.std(ddof=1), started_.std(ddof=1)), \
    "and more than the seed-to-seed spread of either start"
lesson.say(f"""
    benchmarks/pretraining.py makes the comparison properly: the classifier from minifcn
    pretrain at its defaults (6 epochs of 2000 images, {BENCHMARK['pretrain seconds']} s on
    one core, validation accuracy {BENCHMARK['classifier accuracy']:.3f}), then FCN-8s at
    the default widths trained on 200 labelled masks for 20 epochs, from scratch and from
    the converted classifier, for three seeds, the same data in the same order within each
    seed. Mean IoU {scratch.mean():.3f} from scratch, {started_.mean():.3f} from the
    classifier: {differences.mean():+.3f}, ahead in every seed, and far more than the
    spread of the difference over the seeds ({differences.std(ddof=1):.3f}).

    With few masks, an encoder that has learned to tell the shapes apart from image labels
    is a better start than random weights, even though its shapes were twice the size of
    the segmenter's. That is Long et al.'s argument at toy scale; they started from VGG-16,
    trained on the 1.2 million labelled images of ImageNet. It also shows the limit:
    transfer is only as good as what the classifier learned, and the first version of this
    task, which the classifier could not learn, passed nothing on (mean IoU 0.395 from
    scratch, 0.399 from it, over three seeds, at this lesson's widths and 15 epochs). The
    same two commands, on your machine:
""")
print("    minifcn pretrain --out runs/classifier")
print("    minifcn train --init-from runs/classifier/best.npz --train-size 200 --epochs 20")
print()

lesson.done()
