"""Lesson 09: FCN-32s, FCN-16s, FCN-8s: a classifier made fully convolutional, then skips

What this lesson teaches:
- the FCN of Long, Shelhamer and Darrell (2015): a classification CNN turned fully
  convolutional (its fully connected layers become convolutions, "fc6" and "fc7", and a
  1x1 "score" layer gives one coarse map per class), whose last map is 32 times smaller
  than the image; FCN-32s brings it back with ONE x32 up-sampling layer;
- what that coarse map knows: at 64 x 64 it is a 2 x 2 grid, so the network can say "there
  is an object somewhere in the lower left" and not much more; and what a stride-32 map
  could draw at best, against stride 16 and stride 8;
- skip connections: FCN-16s adds class scores computed from pool4 (stride 16), FCN-8s also
  from pool3 (stride 8), each before a smaller final up-sampling;
- the three trained in stages, as Long et al. trained theirs: FCN-32s first, FCN-16s
  started from it (FCN.from_coarser, the new skip's score layer zero), FCN-8s from
  FCN-16s; pixel accuracy and mean IoU beside the paper's ordering, and how the skips
  restore edges, measured by a boundary F-score and the (class-blind) object IoU;
- blobs and fragments: connected regions counted per predicted mask, against the truth
  (a vectorised connected-components helper written here).

New since lesson 08: whole segmenters trained in stages and compared; measures of edges
and regions.

Run: python lessons/09_fcn.py [--quick] [--out DIR] [--device gpu]
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
from minifcn.data import (
    FOUR_NEIGHBOURS,
    IGNORE_INDEX,
    PALETTE,
    DataLoader,
    Shapes,
    colorize,
    objects_only,
    shifted,
)
from minifcn.functional import softmax
from minifcn.metrics import ConfusionMatrix, boundary_f_score
from minifcn.models import FCN, build_model, summary
from minifcn.optim import Adam, make_scheduler
from minifcn.viz import show_panels

lesson = course.start(__doc__, exercises=["skip", "capstone"])
VARIANTS = ("fcn32s", "fcn16s", "fcn8s")
SEED = 0
SIZE, BATCH, LR = 64, 8, 3e-3
WIDTHS = (4, 8, 16, 16, 32) if lesson.quick else (8, 16, 32, 32, 64)
# Training steps of each stage; each stage goes on from the one before (section 3).
STAGES = dict(zip(VARIANTS, (60, 60, 120) if lesson.quick else (200, 200, 800), strict=True))
TRAIN_IMAGES = 480 if lesson.quick else 2000
VAL_IMAGES = 48 if lesson.quick else 200
C = Shapes.num_classes
BACKGROUND = 0


def on_device(array, dtype=np.float32):
    return lesson.asarray(np.asarray(array, dtype=dtype))


def build(name):
    """An FCN with learned up-sampling layers, initialised to bilinear interpolation
    (lesson 07), and no dropout: a short training has nothing to over-fit yet."""
    minifcn.manual_seed(SEED)
    return build_model(name, C, widths=WIDTHS, head_channels=WIDTHS[-1], dropout=0.0,
                       device=lesson.device)


# %% [markdown]
# ## 1. A classifier made fully convolutional
#
# The FCN turns a classifier's fully connected layers into convolutions, so it takes images
# of any size and returns a map of class scores.

# %%
lesson.heading("1. A classifier made fully convolutional")

fcn32s = build("fcn32s")
table = summary(fcn32s, (1, 3, SIZE, SIZE))
rows = {row.name: row for row in table.rows}
head = ["encoder.pool5", "fc6.0", "fc7.0", "score_fr", "upscore32"]
print(f"  {'layer':<16}{'type':<18}{'output shape':<20}{'stride':>7}{'RF':>6}")
for name in head:
    row = rows[name]
    print(f"  {name:<16}{row.kind:<18}{str(row.output_shape):<20}{row.geometry.jump:>7g}"
          f"{row.geometry.rf:>6g}")
print()
coarse = SIZE // 32
assert rows["score_fr"].output_shape == (1, C, coarse, coarse), "a 2x2 map of class scores"
assert rows["score_fr"].geometry.jump == 32, "FCN-32s scores on a stride-32 grid"
assert rows["score_fr"].geometry.rf > SIZE, "each score sees more than the whole image"
assert table.output.output_shape == (1, C, SIZE, SIZE), "one x32 step back to every pixel"
assert rows["upscore32"].kind == "ConvTranspose2d", "a learned x32 layer (lesson 07)"

fcn32s.eval()
wide = fcn32s(on_device(np.zeros((1, 3, 96, 160))))
assert tuple(wide.shape) == (1, C, 96, 160), "a fully convolutional net takes any size / 32"
lesson.say(f"""
    A classifier ends in fully connected layers that want a feature map of one fixed size.
    The FCN replaces them with convolutions: fc6 a 3x3 convolution, fc7 a 1x1, and a 1x1
    "score" layer that gives one map per class. Nothing is tied to the image size any
    more: the same FCN-32s maps a {SIZE} x {SIZE} image to {SIZE} x {SIZE} scores and a
    96 x 160 image to 96 x 160 scores. The encoder's five poolings give an overall stride
    of 32, so at {SIZE} x {SIZE} the score map is only {coarse} x {coarse}; the receptive
    field of each score (RF, as summary() computes it) spans
    {rows['score_fr'].geometry.rf:g} px, more than the whole image. FCN-32s then has ONE
    up-sampling layer, x32, from that grid straight to the pixels. (Long et al. started
    from a classifier pre-trained on ImageNet; these toy networks start from scratch here,
    and lesson 10 starts them from a classifier.)
""")


# %% [markdown]
# ## 2. What bilinear interpolation of a coarse grid can draw
#
# Before training anything: the best a stride-32, -16 or -8 grid could draw after bilinear
# interpolation.

# %%
lesson.heading("2. What bilinear interpolation of a coarse grid can draw")

val_set = Shapes(VAL_IMAGES, image_size=SIZE, seed=0, split="val")
raw_val = Shapes(VAL_IMAGES, image_size=SIZE, seed=0, split="val", void_band=False)
val_masks = lesson.asarray(val_set.masks.astype(np.int64))
true_shares = on_device(raw_val.masks[:, None] == np.arange(C)[None, :, None, None])


def scores(prediction, masks=val_masks, num_classes=C):
    """The four measures of a prediction (N, H, W) on the lesson's device."""
    confusion = ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
    confusion.update(prediction, masks)
    return confusion.compute()


ceilings = {}
for stride in (32, 16, 8):
    # each coarse pixel holds the true share of each class in its stride x stride block
    shares = nn.AvgPool2d(stride)(true_shares)
    drawn = nn.Upsample(scale_factor=stride, mode="bilinear")(shares)
    ceilings[stride] = scores(drawn.argmax(axis=1))["mean_iou"]
assert ceilings[32] < ceilings[16] < ceilings[8], f"finer grids draw finer masks {ceilings}"
assert ceilings[32] < 0.5 < 0.9 < ceilings[8], f"stride 32 is too coarse at 64 px {ceilings}"
lesson.say(f"""
    How much detail can survive a grid of stride s? Give every coarse pixel the perfect
    answer, the true share of each class in its s x s block (AvgPool2d(s) of the one-hot
    masks), interpolate bilinearly back up (Upsample(scale_factor=s)), and take the
    arg-max: mean IoU {ceilings[32]:.3f} at stride 32, {ceilings[16]:.3f} at stride 16 and
    {ceilings[8]:.3f} at stride 8. Objects here are 12 to 40 px across (triangles up to
    56): a 32 px grid cell holds a whole object, and interpolating four cells can only
    draw a soft bump, never a triangle. A learned up-sampling layer can paint more than a
    bump (lesson 07), but the information it paints from is the same 2 x 2 grid. FCN-16s
    and FCN-8s lower the stride of the LAST up-sampling to 16 and 8, by first merging in
    scores computed from the finer pool4 and pool3 maps.
""")


# %% [markdown]
# ## 3. Three FCNs trained in stages
#
# FCN-32s first, then FCN-16s started from it, then FCN-8s from FCN-16s, as Long et al.
# trained theirs; compared with each other and with the paper.

# %%
lesson.heading("3. Three FCNs trained in stages")

train_set = Shapes(TRAIN_IMAGES, image_size=SIZE, seed=SEED, split="train")
criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX, device=lesson.device)
loader = DataLoader(train_set, BATCH, shuffle=True, drop_last=True, seed=SEED, hflip=True,
                    device=lesson.device)


def train(model, steps):
    """``steps`` steps of Adam with a cosine schedule, in place; returns the seconds."""
    optimizer = Adam(model.parameters(), lr=LR)
    schedule = make_scheduler("cosine", optimizer, steps)
    model.train()
    started, step = time.perf_counter(), 0
    while step < steps:
        for images, masks in loader:
            criterion(model(images), masks)
            model.zero_grad()
            model.backward(criterion.backward())
            optimizer.step()
            schedule.step()
            step += 1
            if step == steps:
                break
    return time.perf_counter() - started


# Stage 1 trains FCN-32s from scratch. Each later stage builds the next finer FCN from the
# trained one before it (FCN.from_coarser: every shared layer copied, the new skip's score
# layer set to zero, so the skip adds nothing at first) and trains it further. The parent
# is left as it was: the three models below are the three stages' results.
models = {"fcn32s": build("fcn32s")}
seconds = {"fcn32s": train(models["fcn32s"], STAGES["fcn32s"])}
for coarser, finer in zip(VARIANTS[:-1], VARIANTS[1:], strict=True):
    models[finer] = FCN.from_coarser(models[coarser])
    seconds[finer] = train(models[finer], STAGES[finer])
total_steps = dict(zip(VARIANTS, np.cumsum(list(STAGES.values())).tolist(), strict=True))


def probabilities(model, images, batch=50):
    """Softmax class probabilities (N, C, H, W) on the device, in evaluation mode."""
    model.eval()
    return lesson.xp.concatenate([softmax(model(images[i:i + batch]), dim=1)
                                  for i in range(0, len(images), batch)])


val_images = on_device(val_set.images)
predictions = {name: probabilities(model, val_images).argmax(axis=1)
               for name, model in models.items()}
results = {name: scores(p) for name, p in predictions.items()}
host_predictions = {name: minifcn.to_numpy(p) for name, p in predictions.items()}

# The Long et al. (2015) figures: PASCAL VOC 2011 validation subset, their Table 2.
PAPER = {"fcn32s": (89.1, 59.4), "fcn16s": (90.0, 62.4), "fcn8s": (90.3, 62.7)}
print(f"  batches of {BATCH}, Adam lr {LR:g} with a cosine schedule per stage, widths "
      f"{WIDTHS}")
for name in VARIANTS:
    start = "from scratch" if name == "fcn32s" else f"from the {VARIANTS[VARIANTS.index(name) - 1]}"
    print(f"  {name}: {STAGES[name]:>4} steps {start:<16} ({total_steps[name]:>4} in all), "
          f"{seconds[name]:5.1f} s")
print(f"  {'':<8}{'this run':>20}{'IoU per class':>30}{'Long et al., VOC':>33}")
print(f"  {'model':<8}{'pixel acc':>10}{'mean IoU':>10}   "
      + "".join(f"{name[:8]:>9}" for name in val_set.classes)
      + f"{'pixel acc':>12}{'mean IoU':>10}")
for name, r in results.items():
    print(f"  {name:<8}{r['pixel_acc']:10.3f}{r['mean_iou']:10.3f}   "
          + "".join(f"{v:9.3f}" for v in r["per_class_iou"])
          + f"{PAPER[name][0]:11.1f}%{PAPER[name][1]:9.1f}%")
print()
iou = {name: r["mean_iou"] for name, r in results.items()}
accuracy = {name: r["pixel_acc"] for name, r in results.items()}
# Over seeds 0-3 FCN-16s beat FCN-32s by 0.077 to 0.145 and FCN-8s beat FCN-16s by 0.31 to
# 0.41; the quick run's short stages leave FCN-32s answering "background" everywhere.
margins = (0.0, 0.03) if lesson.quick else (0.05, 0.15)
assert iou["fcn32s"] + margins[0] < iou["fcn16s"], f"the pool4 skip must help: {iou}"
assert iou["fcn16s"] + margins[1] < iou["fcn8s"], f"the pool3 skip and stage 3: {iou}"
assert accuracy["fcn32s"] < accuracy["fcn16s"] < accuracy["fcn8s"], accuracy
lesson.say(f"""
    Long et al. did not train FCN-16s and FCN-8s from scratch. They trained FCN-32s first,
    then built FCN-16s on top of it: every layer the two share copied, and the new layer
    (score_pool4, the class scores read from pool4) set to zero, so that the skip adds
    nothing at first and FCN-16s starts where FCN-32s ended. Then FCN-8s from FCN-16s the
    same way. minifcn's FCN.from_coarser does that step; above, FCN-32s trained
    {STAGES['fcn32s']} steps from scratch, FCN-16s {STAGES['fcn16s']} more and FCN-8s
    {STAGES['fcn8s']} more. Every up-sampling layer is a transposed convolution
    initialised to bilinear interpolation and then learned (lesson 07; Long et al. kept
    their final one fixed, but their stride-32 grid on PASCAL images is some 16 x 16
    cells, where ours is 2 x 2).

    Mean IoU: FCN-32s {iou['fcn32s']:.3f}, FCN-16s {iou['fcn16s']:.3f}, FCN-8s
    {iou['fcn8s']:.3f}; the paper's ordering. Mind what is compared: each stage goes on
    from the one before, so FCN-8s has had all {total_steps['fcn8s']} steps of training
    and FCN-32s {STAGES['fcn32s']}; that was true in the paper too. Part of the gap no
    training closes (section 2): interpolated from a stride-32 grid, even perfect coarse
    scores reach {ceilings[32]:.3f} here, and a learned x32 layer paints from the same
    four cells. (For scale: the default `minifcn train`, FCN-8s with twice these widths
    trained for 7 epochs of 2000 toy images in batches of 8, reached 0.861 in the
    README's measurement, and 0.886 with an eighth epoch.) Long et al. report 59.4 / 62.4 /
    62.7% on PASCAL VOC: smaller gaps, since their images are large and their objects span
    many stride-32 cells.
""")


# %% [markdown]
# ## 4. What the 2 x 2 map knows
#
# FCN-32s's whole opinion of a 64 x 64 image is a 2 x 2 grid of class scores: what does it
# know?

# %%
lesson.heading("4. What the 2 x 2 map knows")

model = models["fcn32s"]
model.eval()
features = model.encoder(val_images[:50])
coarse_scores = model.score_fr(model.fc7(model.fc6(features.pooled[-1])))  # (N, C, 2, 2)
assert tuple(coarse_scores.shape[1:]) == (C, coarse, coarse), "16 numbers per image"
drawn_object = 1.0 - probabilities(model, val_images[:50])[:, BACKGROUND:BACKGROUND + 1]
# What FCN-32s paints from those 16 numbers, summed up per 32 x 32 quadrant, beside the
# true share of object pixels in the same quadrant.
cell_object = minifcn.to_numpy(nn.AvgPool2d(32)(drawn_object))[:, 0]
object_share = minifcn.to_numpy(nn.AvgPool2d(32)(
    on_device(raw_val.masks[:50, None] != BACKGROUND)))[:, 0]
agreement = float(np.corrcoef(cell_object.ravel(), object_share.ravel())[0, 1])
cells = np.arange(len(cell_object))
by_confidence = cell_object.reshape(len(cells), -1).argsort(axis=1)
shares = object_share.reshape(len(cells), -1)
surest, least_sure = shares[cells, by_confidence[:, -1]], shares[cells, by_confidence[:, 0]]
objects_drawn = float((predictions["fcn32s"] > 0).mean())
true_objects = float((raw_val.masks > 0).mean())
# r was 0.70 to 0.90 over seeds 0-3
assert agreement > (0.1 if lesson.quick else 0.6), f"the coarse map knows where: r = {agreement}"
assert surest.mean() > 1.5 * least_sure.mean(), "its surest cell should hold more objects"
assert objects_drawn < (1.0 if lesson.quick else 0.75) * true_objects, (
    f"FCN-32s's blobs should cover less than the objects: {objects_drawn:.1%}")
lesson.say(f"""
    FCN-32s's whole opinion of an image is its {coarse} x {coarse} x {C} score map, the
    output of score_fr (computed above by calling its layers in turn): 16 numbers, from
    which the x32 layer paints all {SIZE * SIZE} pixels. Averaged over each 32 x 32
    quadrant, the probability of "some object" it paints does know roughly where things
    are: over {len(cells)} validation images it correlates with the true share of object
    pixels in the quadrant at r = {agreement:.2f}; the quadrant it is surest about is
    {surest.mean():.0%} object on average, the one it is least sure about
    {least_sure.mean():.0%}. That is the seed text's network that knows "there is a person
    somewhere in the bottom left" and not much more precisely. What it paints is a blob
    near where the objects are, never their outlines (figure): FCN-32s labels
    {objects_drawn:.0%} of the pixels as an object, where the truth has
    {true_objects:.0%}; where it cannot tell which cells' objects end where, it says
    background.
""")


def save_coarse_figure(path, indices=(0, 1, 2)):
    """Image | P(object) per 32x32 cell | P(object) painted | prediction | truth."""
    drawn = minifcn.to_numpy(probabilities(model, val_images[list(indices)]))
    fig, axes = plt.subplots(len(indices), 5, figsize=(15, 3.1 * len(indices)),
                             layout="constrained")
    for row, index in enumerate(indices):
        ax = axes[row]
        ax[0].imshow(np.clip(val_set.images[index].transpose(1, 2, 0), 0, 1))
        shown = ax[1].imshow(cell_object[index], cmap="magma", vmin=0, vmax=1)
        for (r, c), value in np.ndenumerate(cell_object[index]):
            ax[1].text(c, r, f"{value:.2f}", ha="center", va="center", color="cyan")
        ax[2].imshow(1.0 - drawn[row, BACKGROUND], cmap="magma", vmin=0, vmax=1)
        for a in ax[2:4]:
            a.contour(raw_val.masks[index] != BACKGROUND, levels=[0.5], colors="cyan",
                      linewidths=0.8)
        ax[3].imshow(colorize(host_predictions["fcn32s"][index], PALETTE),
                     interpolation="nearest")
        ax[4].imshow(colorize(val_set.masks[index], PALETTE), interpolation="nearest")
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
        if row == 0:
            titles = ("image", "P(some object) painted,\nmean per 32 x 32 quadrant",
                      "P(some object) painted by\nthe x32 layer (cyan: truth)",
                      "FCN-32s's answer\n(arg-max)", "ground truth")
            for a, title in zip(ax, titles, strict=True):
                a.set_title(title, fontsize=10)
    fig.colorbar(shown, ax=axes, shrink=0.6, label="P(some object) = 1 - P(background)")
    fig.suptitle(f"FCN-32s: everything it says is painted from a {coarse} x {coarse} map")
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("fcn32s_coarse_map.png")
save_coarse_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 5. Skips bring the edges back
#
# Two measures of where the outlines are, blind to which shape is which: a boundary F-score
# and the object IoU.

# %%
lesson.heading("5. Skips bring the edges back")

true_labels = raw_val.masks.astype(np.int64)
objects_truth = objects_only(val_set.masks)
boundary = {name: boundary_f_score(p, true_labels) for name, p in host_predictions.items()}
object_iou = {name: scores(lesson.asarray((p > 0).astype(np.int64)),
                          lesson.asarray(objects_truth.astype(np.int64)), 2)["per_class_iou"][1]
              for name, p in host_predictions.items()}
print(f"  {'model':<8}{'boundary F (2 px)':>19}{'object IoU':>12}")
for name in VARIANTS:
    print(f"  {name:<8}{boundary[name]:19.3f}{object_iou[name]:12.3f}")
print()
gap = 0.0 if lesson.quick else 0.1  # the smallest step measured over seeds 0-3 was 0.2
for measure, values in (("boundary F-score", boundary), ("object IoU", object_iou)):
    assert values["fcn32s"] + gap < values["fcn16s"], f"{measure}: {values}"
    assert values["fcn16s"] + gap < values["fcn8s"], f"{measure}: {values}"
where_gain = object_iou["fcn16s"] - object_iou["fcn32s"]
which_gain = iou["fcn16s"] - iou["fcn32s"]
# seeds 0-3: where_gain / which_gain from 2.3 to 5.6
assert where_gain > (1.0 if lesson.quick else 1.5) * which_gain, "pool4 helps WHERE first"
lesson.say(f"""
    Two measures of WHERE, blind to which shape is which. The boundary F-score compares
    the predicted outlines with the true ones: precision is the share of predicted edge
    pixels within 2 px of a true edge, recall the share of true edge pixels within 2 px of
    a predicted one. The object IoU merges the three shapes into one "object" class and
    scores that. Both rise with every skip: boundary F {boundary['fcn32s']:.3f} ->
    {boundary['fcn16s']:.3f} -> {boundary['fcn8s']:.3f}, object IoU
    {object_iou['fcn32s']:.3f} -> {object_iou['fcn16s']:.3f} -> {object_iou['fcn8s']:.3f}.
    pool4 and pool3 have seen the image at 16 and 8 px per cell, and their scores, added
    to the coarse ones, say where the outline runs; that is the FCN paper's "combining
    what and where". What the pool4 skip brings first is WHERE: FCN-16s gains
    {where_gain:+.3f} object IoU over FCN-32s but {which_gain:+.3f} mean IoU, whose classes
    also ask WHICH shape. It knows where the objects are before it knows what they are
    (in the figure below, FCN-16s's blobs sit on the objects, often in the wrong colour).
    FCN-8s, with pool3 and the longest training, gets both.
""")


# %% [markdown]
# ## 6. Blobs and fragments: regions per mask
#
# Connected regions counted in each predicted mask, against the truth: coarse blobs on one
# side, fragments on the other.

# %%
lesson.heading("6. Blobs and fragments: regions per mask")


def label_regions(labels):
    """Connected regions of equal label (4-neighbours) in each mask of (N, H, W).

    Returns (N, H, W) region ids: every pixel ends with the smallest flat index in its
    region. Vectorised over all pixels at once: each round, every pixel takes the
    smallest id among itself and its same-label neighbours; the pixel an old id points to
    takes the smallest new id pointing at it (np.minimum.at), which merges whole trees;
    and ids are followed twice to the ids they point to (pointer jumping). A handful of
    rounds suffice, where passing ids one pixel per round would take as many rounds as
    the longest region is long.
    """
    ids = np.arange(labels.size).reshape(labels.shape)
    same_label = [shifted(labels, rows, cols, -1) == labels for rows, cols in FOUR_NEIGHBOURS]
    while True:
        smallest = ids
        for (rows, cols), same in zip(FOUR_NEIGHBOURS, same_label, strict=True):
            neighbour = shifted(ids, rows, cols, ids.size)
            smallest = np.where(same, np.minimum(smallest, neighbour), smallest)
        merged = smallest.ravel().copy()
        np.minimum.at(merged, ids.ravel(), smallest.ravel())
        new_ids = merged[merged[smallest]]
        if np.array_equal(new_ids, ids):
            return ids
        ids = new_ids


def region_statistics(labels, fragment_pixels=30):
    """Per image, on average: object regions (not background) and how many of them are
    fragments smaller than ``fragment_pixels``."""
    ids = label_regions(labels)
    is_object = labels != BACKGROUND
    roots = (ids == np.arange(ids.size).reshape(ids.shape)) & is_object
    sizes = np.bincount(ids[is_object], minlength=ids.size).reshape(ids.shape)
    regions = roots.sum(axis=(1, 2)).mean()
    fragments = (roots & (sizes < fragment_pixels)).sum(axis=(1, 2)).mean()
    return float(regions), float(fragments)


two_blobs = np.array([[[1, 1, 0, 2], [0, 0, 0, 2], [3, 0, 2, 2]]])
assert region_statistics(two_blobs, fragment_pixels=2) == (3.0, 1.0), "1, 2 and a lone 3"

regions = {"ground truth": region_statistics(true_labels)}
regions.update({name: region_statistics(p) for name, p in host_predictions.items()})
print(f"  {'':<14}{'object regions':>16}{'fragments':>11}   (per image, fragments < 30 px)")
for name, (count, fragments) in regions.items():
    print(f"  {name:<14}{count:16.2f}{fragments:11.2f}")
print()
true_count, true_fragments = regions["ground truth"]
assert regions["fcn16s"][1] > 3 * true_fragments, f"FCN-16s's blobs fall apart: {regions}"
if not lesson.quick:  # after the quick run's short stages FCN-8s is still a patchwork too
    excess = {name: abs(regions[name][0] - true_count) for name in VARIANTS}
    assert excess["fcn8s"] < min(excess["fcn32s"], excess["fcn16s"]), f"FCN-8s closest {regions}"
    assert regions["fcn32s"][1] > 3 * true_fragments, f"FCN-32s's blobs fall apart: {regions}"
    assert regions["fcn8s"][1] < min(regions["fcn32s"][1], regions["fcn16s"][1]), regions
lesson.say(f"""
    Count the connected regions of object labels in each mask (label_regions, above, a
    connected-components labelling in a handful of vectorised rounds). The true masks hold
    {true_count:.2f} object regions per image ({raw_val.num_objects.mean():.2f} objects: a
    few touch and merge), {true_fragments:.2f} of them smaller than 30 px (corners of
    hidden objects). FCN-32s finds {regions['fcn32s'][0]:.2f} regions per image,
    {regions['fcn32s'][1]:.2f} of them fragments, and FCN-16s {regions['fcn16s'][0]:.2f}
    and {regions['fcn16s'][1]:.2f}: their blobs sit where the objects are but fall apart
    into patches of different shape classes, since they know where better than which
    (section 5), and each patch counts as a region. FCN-8s comes closest to the truth:
    {regions['fcn8s'][0]:.2f} regions, {regions['fcn8s'][1]:.2f} of them fragments, specks
    where its fine pool3 scores outvote the coarse ones for a few pixels. The seed text
    lists both among the costs of sub-sampling: coarse, blobby masks with lost edges, and
    over-segmentation. Skips and training reduce both; smoothing the prediction (e.g. a
    CRF, as later work did) takes the remaining specks.
""")


def save_predictions_figure(path, count=4):
    titles = ["image", "ground truth"] + [
        f"{name}\nmean IoU {results[name]['mean_iou']:.2f}, boundary F {boundary[name]:.2f}"
        for name in VARIANTS]
    fig, axes = plt.subplots(count, len(titles), figsize=(2.5 * len(titles), 2.5 * count + 0.7))
    for row in range(count):
        panels = [val_set.images[row].transpose(1, 2, 0), colorize(val_set.masks[row], PALETTE)]
        panels += [colorize(host_predictions[name][row], PALETTE) for name in VARIANTS]
        show_panels(axes[row], panels, titles if row == 0 else None, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=PALETTE[i] / 255.0) for i in range(C)]
    fig.legend(handles, val_set.classes, loc="lower center", ncol=C, frameon=False)
    fig.suptitle(f"FCN-32s, -16s, -8s trained in stages of {STAGES['fcn32s']}, "
                 f"+{STAGES['fcn16s']} and +{STAGES['fcn8s']} steps (validation images)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("fcn_predictions.png")
save_predictions_figure(path)
lesson.saved(path)

lesson.done()
