"""Lesson 07: Bilinear initialisation: a transposed convolution that starts as interpolation

What this lesson teaches:
- the FCN's bilinear filter (minifcn.nn.init.bilinear_): a separable "tent", printed and
  plotted, and why it has the shape it has;
- a transposed convolution with kernel 2s, stride s and padding s/2, initialised with it,
  IS bilinear interpolation (Upsample(mode="bilinear", align_corners=False)) away from
  the border, checked for s = 2, 4 and 32; at the border it differs, and why;
- fixed or learned? The seed text's "initialised to something close to linear
  interpolation, then trained to do better", measured: FCN-32s trained with its x32 layer
  learned, and the same network with that layer frozen at bilinear, same data, same steps;
  the learned layer wins, and its kernel moves away from bilinear (figures).

New since lesson 06: initialising a layer to a known good operator, and freezing a layer
(module.requires_grad_(False)).

Run: python lessons/07_bilinear_init.py [--quick] [--out DIR] [--device gpu]
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
from minifcn.data import PALETTE, DataLoader, Shapes, colorize
from minifcn.metrics import ConfusionMatrix
from minifcn.models import build_model
from minifcn.nn import CrossEntropyLoss, init
from minifcn.optim import Adam
from minifcn.train import evaluate

lesson = course.start(__doc__, exercises=["bilinear_kernel"])
host = np.random.default_rng(0)  # every random input of this lesson comes from here
SIZE = 64


def on_device(array, dtype=np.float64):
    return lesson.asarray(np.asarray(array, dtype=dtype))


# %% [markdown]
# ## 1. The bilinear filter
#
# FCN initialises its up-sampling layers with a bilinear filter; here it is, at several
# scales.

# %%
lesson.heading("1. The bilinear filter")


def tent(size):
    """The 1-D bilinear profile of a kernel of ``size`` taps: 1 - |i - centre| / f, with
    f = ceil(size / 2) and the centre between the two middle taps when size is even."""
    f = (size + 1) // 2
    centre = f - 1 if size % 2 == 1 else f - 0.5
    return 1.0 - np.abs(np.arange(size) - centre) / f


filters = {}
for scale in (2, 4, 32):
    weight = np.zeros((2, 2, 2 * scale, 2 * scale))
    init.bilinear_(weight)
    filters[scale] = weight
    assert np.allclose(weight[0, 0], np.outer(tent(2 * scale), tent(2 * scale))), scale
    assert np.array_equal(weight[0, 0], weight[1, 1]) and not weight[0, 1].any(), (
        "one filter per channel, no mixing between channels")

print("  init.bilinear_ on a (C, C, 4, 4) weight (s = 2), channel 0 -> 0:")
for row in filters[2][0, 0]:
    print("    " + "  ".join(f"{v:6.4f}" for v in row))
print(f"  = outer product of the 1-D tent {tent(4).tolist()}")
print(f"  s = 4: tent {tent(8).tolist()}")
print()
lesson.say("""
    FCN initialises its up-sampling layers with a fixed filter: for a kernel of K = 2s
    taps, the 1-D "tent" 1 - |i - c| / s, centred between the two middle taps, and its
    outer product with itself in 2-D. Each channel (class) gets its own copy and the other
    channel pairs get zeros: every class score map is up-sampled on its own. The tent is
    linear interpolation's weighting: an output pixel at distance d from an input pixel's
    centre takes 1 - d/s of it. The four taps of s = 2 are 1/4 and 3/4: a pixel of the
    x2 map lies 1/4 of an input pixel from one input centre and 3/4 from the next, exactly
    the blend that bilinear interpolation with align_corners=False makes (lesson 06).
""")


def save_filter_figure(path):
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    offsets = np.linspace(-1, 1, 201)
    axes[0].plot(offsets, 1 - np.abs(offsets), color="grey", lw=1, label="1 - |offset|")
    for scale, marker in ((32, "."), (4, "s"), (2, "o")):
        axes[0].plot((np.arange(2 * scale) - (scale - 0.5)) / scale, tent(2 * scale),
                     marker, ms=5 if scale == 32 else 7, label=f"s = {scale}: {2 * scale} taps")
    axes[0].set_xlabel("offset of the tap from the centre, in input pixels")
    axes[0].set_ylabel("weight")
    axes[0].set_title("1-D tent, all scales", fontsize=10)
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    for ax, scale in zip(axes[1:], (2, 4, 32), strict=True):
        shown = ax.imshow(filters[scale][0, 0], cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"2-D filter, s = {scale}: {2 * scale}x{2 * scale}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes[1:], fraction=0.02, pad=0.02, label="weight")
    fig.suptitle("init.bilinear_: FCN's up-sampling filter")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


path = lesson.figure("bilinear_filters.png")
save_filter_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 2. It is bilinear interpolation, away from the border
#
# A transposed convolution with that filter computes bilinear interpolation, except in a
# band along the border; compared with `Upsample`.

# %%
lesson.heading("2. It is bilinear interpolation, away from the border")


def bilinear_transposed(channels, scale):
    """FCN's up-sampling layer: ConvTranspose2d(kernel 2s, stride s, padding s/2), no
    bias, initialised to the bilinear filter."""
    layer = nn.ConvTranspose2d(channels, channels, 2 * scale, stride=scale,
                               padding=scale // 2, bias=False, device=lesson.device,
                               dtype="float64")
    init.bilinear_(layer.weight)
    return layer


print("  s   input          output          interior  max |transposed - Upsample|   "
      "at the border")
border_rows = {}
for scale in (2, 4, 32):
    size = 3 if scale == 32 else 6
    x = on_device(host.standard_normal((2, 3, size, size)))
    transposed = minifcn.to_numpy(bilinear_transposed(3, scale)(x))
    upsampled = minifcn.to_numpy(nn.Upsample(scale_factor=scale, mode="bilinear")(x))
    # An output pixel within s/2 of the border lies outside the input's first/last pixel
    # centre: Upsample repeats the edge pixel there, the transposed convolution sees zeros.
    edge = scale // 2
    interior = np.s_[:, :, edge:-edge, edge:-edge]
    inside = float(np.abs(transposed[interior] - upsampled[interior]).max())
    border = float(np.abs(transposed - upsampled).max())
    print(f"  {scale:<3} {str(tuple(x.shape)):<14} {str(transposed.shape):<15} "
          f"{str(transposed[interior].shape[2:]):<9} {inside:>12.1e}   {border:>22.3f}")
    assert transposed.shape == upsampled.shape == (2, 3, size * scale, size * scale)
    assert inside < 1e-12, f"s={scale}: interior differs by {inside}"
    assert border > 0.05, f"s={scale}: the border should differ: {border}"
    ones = on_device(np.ones((1, 1, 3, 3)))
    border_rows[scale] = minifcn.to_numpy(bilinear_transposed(1, scale)(ones))[0, 0, scale]
print()
lesson.say(f"""
    ConvTranspose2d(C, C, kernel_size=2s, stride=s, padding=s/2, bias=False) with this
    filter computes exactly what Upsample(scale_factor=s, mode="bilinear") computes, to
    rounding error, for s = 2, 4 and 32, except in a band s/2 pixels wide along the
    border. There an output pixel lies beyond the centre of the first (or last) input
    pixel: interpolation repeats the edge value, while the transposed convolution blends
    it with a zero from beyond the image. On an all-ones input, each row of the s = 4
    output starts {np.round(border_rows[4][:3], 3).tolist()} instead of 1: the border is
    darkened. In FCN's cropped outputs this band is cut away
    (lesson 05); minifcn's models leave it to the learned weights and the layers before.
""")
assert np.allclose(border_rows[4][2:-2], 1.0) and border_rows[4][0] < 0.9, border_rows[4]


# %% [markdown]
# ## 3. Fixed or learned? Training FCN-32s both ways
#
# The same FCN-32s trained twice, its x32 up-sampling layer learned in one run and frozen at
# bilinear in the other.

# %%
lesson.heading("3. Fixed or learned? Training FCN-32s both ways")

# Lesson 09's network, trained long enough for the learned layer to paint blobs (one BLAS
# thread on a busy 2-core machine: 40 to 70 ms a step); the margins of the checks below
# were measured over seeds 0-3.
SEED = 0
WIDTHS, HEAD = ((4, 8, 8, 16, 16), 16) if lesson.quick else ((8, 16, 32, 32, 64), 64)
STEPS = 48 if lesson.quick else 500
BATCH, LR = 16 if lesson.quick else 8, 3e-3
CHECK_EVERY = STEPS // (3 if lesson.quick else 5)
CHECKS = list(range(CHECK_EVERY, STEPS + 1, CHECK_EVERY))
train_set, val_set = Shapes.splits(STEPS * BATCH, 32 if lesson.quick else 100, SIZE, seed=SEED)
val_loader = DataLoader(val_set, batch_size=50, device=lesson.device)


def train_fcn32s(learn_upsampling: bool):
    """FCN-32s from the same seed (same initial weights, same batches), its x32 layer
    learned or frozen at bilinear. Returns the model, its initial x32 weight and the
    validation metrics at each of CHECKS."""
    minifcn.manual_seed(SEED)
    model = build_model("fcn32s", widths=WIDTHS, head_channels=HEAD, dropout=0.0)
    model = model.to(lesson.device)
    initial = minifcn.to_numpy(model.upscore32.weight.data).copy()
    if not learn_upsampling:
        model.upscore32.requires_grad_(False)  # backward then skips its weight gradient
    optimizer = Adam(model.parameters(), lr=LR)  # Adam leaves frozen parameters alone
    criterion = CrossEntropyLoss(ignore_index=train_set.ignore_index)
    loader = DataLoader(train_set, BATCH, shuffle=True, drop_last=True, seed=SEED,
                        device=lesson.device)
    history = {}
    for step, (images, masks) in enumerate(loader, start=1):
        model.train()  # evaluate() leaves the model in evaluation mode
        criterion(model(images), masks)
        model.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
        if step in CHECKS:
            history[step] = evaluate(model, val_loader, val_set.num_classes, criterion)
    return model, initial, history


started = time.perf_counter()
runs = {"learned": train_fcn32s(learn_upsampling=True),
        "frozen at bilinear": train_fcn32s(learn_upsampling=False)}
seconds = time.perf_counter() - started
print(f"  FCN-32s, widths {WIDTHS}, fc6/fc7 {HEAD} channels, Adam lr {LR:g}, batches of "
      f"{BATCH}, {STEPS} steps each ({seconds:.1f} s for both)")
print(f"  validation ({len(val_set)} images); x32 up-sampling layer:")
print("    after step " + "".join(f"{name:>26}" for name in runs))
print("               " + "".join(f"{'loss   mean IoU':>26}" for _ in runs))
for step in CHECKS:
    print(f"    {step:>10} " + "".join(f"{history[step]['loss']:>18.3f}"
                                      f"{history[step]['mean_iou']:>8.3f}"
                                      for _, _, history in runs.values()))
print()

learned_model, initial_weight, _ = runs["learned"]
frozen_model, _, _ = runs["frozen at bilinear"]
learned_weight = minifcn.to_numpy(learned_model.upscore32.weight.data)
frozen_weight = minifcn.to_numpy(frozen_model.upscore32.weight.data)
moved = float(np.linalg.norm(learned_weight - initial_weight) / np.linalg.norm(initial_weight))
classes = val_set.num_classes
diagonal = np.zeros(learned_weight.shape[:2], dtype=bool)
diagonal[range(classes), range(classes)] = True
cross_class = float(np.abs(learned_weight[~diagonal]).max())
final = {name: history[STEPS] for name, (_, _, history) in runs.items()}
# The score of the laziest answer, "background everywhere", for reference.
lazy = ConfusionMatrix(classes, ignore_index=val_set.ignore_index)
lazy.update(np.zeros_like(val_set.masks, dtype=np.int64), val_set.masks.astype(np.int64))
all_background = lazy.compute()["mean_iou"]
gap = final["learned"]["mean_iou"] - final["frozen at bilinear"]["mean_iou"]
lesson.say(f"""
    FCN-32s's only up-sampling is that one x32 layer, so everything it outputs is the 2x2
    coarse score map of a {SIZE}x{SIZE} image, spread out by it. Same network, same start,
    same {STEPS} batches; one difference: in one run the x32 layer learns, in the other it
    stays bilinear interpolation (requires_grad_(False)). After {STEPS} steps the learned
    one reaches a validation mean IoU of {final['learned']['mean_iou']:.3f} and the frozen
    one {final['frozen at bilinear']['mean_iou']:.3f} (loss {final['learned']['loss']:.3f}
    against {final['frozen at bilinear']['loss']:.3f}). Interpolating a 2x2 grid can only
    draw one smooth bump, wider than most objects, per coarse pixel and class: the frozen
    FCN-32s gets little past "everything is background", which scores {all_background:.3f}
    here, and where one class's bump does win, it covers a whole corner of the image (the
    square patches in the last figure). The learned layer paints blobs where the objects
    are: coarse, often of the wrong shape class, but in the right place.

    Trained, the layer becomes something else than interpolation. Its kernel moved by
    {moved:.0%} of its norm and is no longer one smooth bump: with a 2x2 input, each part
    of the 64x64 kernel paints a fixed part of the output, and learns for that part. And
    the class-to-class weights that bilinear_ set to zero are now up to {cross_class:.3f}:
    a class's coarse score now also shapes the other classes' maps. The figures show the
    kernels before and after. This is the seed text's transposed convolution "initialized
    to perform something close to linear interpolation" that "will learn to do better
    during training". (The FCN paper kept its FINAL up-sampling layer fixed at bilinear
    and learned only the x2 ones, with a pretrained encoder and VOC images whose stride-32
    grid is some 16x16. From scratch on a 2x2 grid, learning it matters a lot: the
    project's longer PyTorch calibration runs measured 0.64 learned against 0.41-0.44
    frozen.)
""")
assert np.array_equal(frozen_weight, initial_weight), "the frozen layer must not change"
assert moved > 0.05, f"the learned kernel should move away from bilinear: {moved:.3f}"
assert cross_class > 1e-3, f"learning should mix the classes: {cross_class}"
# Measured over seeds 0-3: after 500 steps, gaps of 0.110 to 0.146 in mean IoU and 0.33 to
# 0.41 in loss. After the 48 steps of --quick neither model paints objects yet (both score
# "all background") but the loss gap is already 0.13 to 0.29: there the loss carries the
# check, and the mean IoU must merely not be worse.
loss_gap = final["frozen at bilinear"]["loss"] - final["learned"]["loss"]
assert loss_gap > (0.1 if lesson.quick else 0.2), f"learned should fit better: {final}"
assert gap >= (0.0 if lesson.quick else 0.06), f"learned should beat frozen: {gap:.3f}"


def save_curves_figure(path):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, (_, _, history) in runs.items():
        steps = list(history)
        left.plot(steps, [history[s]["mean_iou"] for s in steps], "o-", label=name)
        right.plot(steps, [history[s]["loss"] for s in steps], "o-", label=name)
    left.axhline(all_background, color="black", ls="--", lw=1, label="all background")
    left.set_ylabel("validation mean IoU")
    right.set_ylabel("validation cross-entropy")
    for ax in (left, right):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(title="x32 up-sampling layer")
    fig.suptitle(f"FCN-32s on {SIZE}x{SIZE} toy shapes: the same network, its x32 layer "
                 f"learned or frozen at bilinear")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_kernels_figure(path):
    """The x32 kernel before and after training: 2-D maps and a profile through the
    centre, for each class mapped to itself, and the largest class-to-class kernel."""
    names = val_set.classes
    fig, axes = plt.subplots(2, classes + 1, figsize=(3.2 * (classes + 1), 6.6))
    limit = np.abs(learned_weight).max()
    shown = axes[0, 0].imshow(initial_weight[0, 0], cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[0, 0].set_title("initial (bilinear),\nevery class", fontsize=10)
    for c in range(classes):
        axes[0, c + 1].imshow(learned_weight[c, c], cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[0, c + 1].set_title(f"learned: {names[c]} -> {names[c]}", fontsize=10)
    fig.colorbar(shown, ax=axes[0, :], fraction=0.015, pad=0.01, label="weight")
    centre = initial_weight.shape[2] // 2
    for c in range(classes):
        ax = axes[1, c]
        ax.plot(initial_weight[c, c, centre], color="grey", lw=2, label="initial")
        ax.plot(learned_weight[c, c, centre], color="tab:red", label="learned")
        ax.set_title(f"{names[c]} -> {names[c]}: row {centre}", fontsize=10)
        ax.set_xlabel("kernel column")
        ax.grid(alpha=0.3)
    axes[1, 0].legend(fontsize=8)
    off = np.abs(learned_weight).max(axis=(2, 3)) * ~diagonal
    source, target = np.unravel_index(np.argmax(off), off.shape)
    axes[1, classes].imshow(learned_weight[source, target], cmap="RdBu_r", vmin=-limit,
                            vmax=limit)
    axes[1, classes].set_title(f"learned: {names[source]} -> {names[target]}\n"
                               f"(0 at the start)", fontsize=10)
    for ax in list(axes[0]) + [axes[1, classes]]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"The x32 transposed convolution's 64x64 kernel, before and after "
                 f"{STEPS} steps")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def save_predictions_figure(path, count=4):
    images = lesson.asarray(val_set.images[:count])
    predictions = {name: minifcn.to_numpy(model.eval()(images).argmax(axis=1))
                   for name, (model, _, _) in runs.items()}
    fig, axes = plt.subplots(count, 4, figsize=(9, 2.3 * count))
    for row in range(count):
        panels = [(np.clip(val_set.images[row].transpose(1, 2, 0), 0, 1), "image"),
                  (colorize(val_set.masks[row], PALETTE), "truth")]
        panels += [(colorize(p[row], PALETTE), f"x32 {name}") for name, p in predictions.items()]
        for ax, (panel, title) in zip(axes[row], panels, strict=True):
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=10)
    fig.suptitle(f"FCN-32s after {STEPS} steps (validation images)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


for name, save in (("training_curves.png", save_curves_figure),
                   ("x32_kernels.png", save_kernels_figure),
                   ("predictions.png", save_predictions_figure)):
    path = lesson.figure(name)
    save(path)
    lesson.saved(path)

lesson.done()
