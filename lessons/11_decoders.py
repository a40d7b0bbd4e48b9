"""Lesson 11: Decoders differ: FCN skip sums, SegNet unpooling, U-Net concatenation

What this lesson teaches:
- segmenters share their encoder and differ in the decoder, which projects the encoder's
  coarse, discriminative features back onto the pixels; three classic ways, built over the
  very same encoder (minifcn.models):
    FCN-8s adds class scores computed from pool4 and pool3 to the up-sampled coarse scores;
    SegNet max-unpools: each decoder stage puts values back where the encoder's max-pool
    found its maxima (the pool indices) and lets convolutions fill in the zeros;
    U-Net up-samples and concatenates the encoder's whole feature maps at every scale;
- max-unpooling on a 4x4 example, forward and backward;
- concatenation against summation: shapes, gradients, and why "concatenate, then
  convolve" can do everything "add" does and more;
- what each decoder costs and buys: parameters (num_parameters, summary), the numbers
  passed from encoder to decoder, milliseconds per training step (measured), and where
  each draws the outlines after the same short training (object IoU, boundary F-score):
  U-Net's full-resolution skips place edges best.

New since lesson 10: SegNet and U-Net, MaxUnpool2d, Concat.

Run: python lessons/11_decoders.py [--quick] [--out DIR] [--device gpu]
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
from minifcn.data import PALETTE, DataLoader, Shapes, colorize, label_boundary, objects_only
from minifcn.metrics import ConfusionMatrix, boundary_f_score
from minifcn.models import Encoder, build_model, summary
from minifcn.optim import Adam, make_scheduler
from minifcn.viz import show_panels

lesson = course.start(__doc__, exercises=["skip"])
WIDTHS = (4, 8, 16, 16, 32)
SIZE = 32 if lesson.quick else 64
STEPS = 150 if lesson.quick else 300
BATCH, LR = 8, 3e-3
TRAIN_IMAGES = 480 if lesson.quick else 1000
VAL_IMAGES = 48 if lesson.quick else 200
DECODERS = {
    "fcn8s": dict(head_channels=WIDTHS[-1], dropout=0.0),
    "segnet": {},
    "unet": {},
}


def on_device(array, dtype=np.float32):
    return lesson.asarray(np.asarray(array, dtype=dtype))


def build(name, num_classes=Shapes.num_classes):
    """One of the three segmenters over the same encoder; the same seed gives every one of
    them the same initial encoder weights (the encoder is built first)."""
    minifcn.manual_seed(0)
    return build_model(name, num_classes, widths=WIDTHS, device=lesson.device,
                       **DECODERS[name])


# %% [markdown]
# ## 1. One encoder, three decoders
#
# FCN-8s, SegNet and U-Net built over the very same encoder, differing only in the decoder.

# %%
lesson.heading("1. One encoder, three decoders")

models = {name: build(name) for name in DECODERS}
encoders = [model.encoder.state_dict() for model in models.values()]
for other in encoders[1:]:
    assert other.keys() == encoders[0].keys(), "the three encoders must have the same layers"
    for key, array in other.items():
        assert np.array_equal(minifcn.to_numpy(array), minifcn.to_numpy(encoders[0][key])), (
            f"{key}: the three encoders must start from the same weights")

tables = {name: summary(model, (1, 3, SIZE, SIZE)) for name, model in models.items()}
print(f"  {'model':<8}{'parameters':>12}{'encoder':>10}{'decoder':>10}{'output RF':>11}"
      f"  largest decoder layer")
decoder_params = {}
for name, model in models.items():
    rows = [row for row in tables[name].rows if not row.name.startswith("encoder.")]
    decoder_params[name] = sum(row.params for row in rows)
    largest = max(rows, key=lambda row: row.params)
    assert decoder_params[name] == model.num_parameters() - model.encoder.num_parameters(), (
        f"{name}: summary's rows must add up to num_parameters")
    print(f"  {name:<8}{model.num_parameters():>12,}{model.encoder.num_parameters():>10,}"
          f"{decoder_params[name]:>10,}{tables[name].output.geometry.rf:>11g}"
          f"  {largest.name} ({largest.kind}, {largest.params:,})")
print()
head_params = models["fcn8s"].fc6.num_parameters() + models["fcn8s"].fc7.num_parameters()
assert head_params > decoder_params["fcn8s"] / 2, "the FCN decoder is mostly fc6 and fc7"
assert models["unet"].dec1[0].in_channels == 2 * WIDTHS[0], "U-Net convolves both inputs"
assert max(decoder_params, key=decoder_params.get) == "unet", "U-Net's decoder is the largest"
output_rf = {name: table.output.geometry.rf for name, table in tables.items()}
assert max(output_rf, key=output_rf.get) == "unet", f"U-Net's outputs see the most {output_rf}"
assert decoder_params["unet"] > 2 * max(decoder_params["fcn8s"], decoder_params["segnet"]), (
    "U-Net's decoder should dwarf the others")
lesson.say(f"""
    The encoder is the same VGG-style stack in all three (five stages of conv-BN-ReLU x2,
    each followed by 2x2 max-pooling, output stride 32): same layers, and, built after the
    same seed, the same initial weights. Only the decoders differ, as the seed text
    observes of CNN segmenters in general. minifcn.models.summary runs each model once and
    lists every layer with its parameters and receptive field (RF, in input pixels); above,
    its rows summed outside the encoder. The FCN's "decoder" is mostly its fc6/fc7 head
    (the classifier's fully connected layers turned into convolutions: {head_params:,} of
    its {decoder_params['fcn8s']:,} parameters); its score and up-sampling layers hold the
    rest. SegNet mirrors the encoder with convolutions.
    U-Net mirrors it with convolutions TWICE as wide at their input, since each stage sees
    its own features and the encoder's side by side: {decoder_params['unet']:,} decoder
    parameters against {decoder_params['segnet']:,} for SegNet. Its extra convolutions at
    every scale also give each output pixel the widest view: {output_rf['unet']:g} px of
    receptive field against {output_rf['fcn8s']:g} (FCN-8s) and {output_rf['segnet']:g}
    (SegNet).
""")


# %% [markdown]
# ## 2. What crosses from the encoder to the decoder
#
# What each decoder takes from the encoder: class scores, pool indices, or whole feature
# maps.

# %%
lesson.heading("2. What crosses from the encoder to the decoder")

# A fresh encoder that keeps its pool indices, as SegNet's does (the models' own encoders
# are left alone: a forward pass in training mode would update their batch statistics).
encoder = Encoder(3, WIDTHS, keep_indices=True).to(lesson.device).eval()
features = encoder(on_device(np.zeros((1, 3, SIZE, SIZE))))
C = Shapes.num_classes
crossing = {
    # FCN-8s: one score per class at strides 16 and 8 (score_pool4, score_pool3)
    "fcn8s": C * (features.pooled[3][0, 0].size + features.pooled[2][0, 0].size),
    # SegNet: one index per pooled value, at every stage (2 bits would do: which of 4)
    "segnet": sum(int(indices.size) for indices in features.indices),
    # U-Net: every stage's whole feature map before pooling
    "unet": sum(int(stage.size) for stage in features.before_pool),
}
for name, count in crossing.items():
    print(f"  {name:<8}{count:>9,} numbers per image")
print()
assert crossing["fcn8s"] < crossing["segnet"] < crossing["unet"], crossing
lesson.say(f"""
    For one {SIZE} x {SIZE} image, FCN-8s passes {crossing['fcn8s']:,} numbers from the
    encoder to the decoder: {C} class scores per pixel of pool4 ({SIZE // 16} x {SIZE // 16})
    and pool3 ({SIZE // 8} x {SIZE // 8}).
    SegNet passes {crossing['segnet']:,} pool indices, one per pooled value at each of the
    five stages: no features, only WHERE each maximum was; each needs just 2 bits, since
    it picks one of the 4 pixels of its window. U-Net passes {crossing['unet']:,} feature
    values, every stage's whole map before pooling, full resolution included: the most
    information, and the most work for the decoder that reads it.
""")


# %% [markdown]
# ## 3. Max-unpooling, on a 4 x 4 example
#
# SegNet's max-unpooling puts values back where the max-pool found its maxima; forward and
# backward on a small example.

# %%
lesson.heading("3. Max-unpooling, on a 4 x 4 example")

x = on_device([[[[1, 5, 2, 0],
                 [3, 4, 8, 1],
                 [0, 2, 1, 6],
                 [7, 1, 3, 2]]]])
pool = nn.MaxPool2d(2, return_indices=True)
unpool = nn.MaxUnpool2d(2)
pooled, indices = pool(x)
restored = unpool(pooled, indices)
host_x, host_restored = minifcn.to_numpy(x)[0, 0], minifcn.to_numpy(restored)[0, 0]
window_max = host_x.reshape(2, 2, 2, 2).max(axis=(1, 3)).repeat(2, 0).repeat(2, 1)


def row_text(array, row):
    """Row ``row`` of a small 2-D array as text ('' past its last row)."""
    return " ".join(f"{value:3g}" for value in array[row]) if row < len(array) else ""


panels = {"x": host_x, "pooled": minifcn.to_numpy(pooled)[0, 0],
          "indices (h*4 + w)": minifcn.to_numpy(indices)[0, 0], "unpooled": host_restored}
print("  " + "".join(f"{title:<22}" for title in panels))
for row in range(4):
    print("  " + "".join(f"{row_text(panel, row):<22}" for panel in panels.values()))
print()
assert np.array_equal(host_restored, np.where(host_x == window_max, host_x, 0.0)), (
    "unpooling must put each maximum back where it was and zeros elsewhere")
flat_positions = np.flatnonzero(host_restored)
assert np.array_equal(np.sort(flat_positions),
                      np.sort(minifcn.to_numpy(indices).ravel())), "at the recorded indices"

dy = on_device(np.arange(16).reshape(1, 1, 4, 4))
d_pooled = unpool.backward(dy)
assert np.array_equal(minifcn.to_numpy(d_pooled).ravel(),
                      np.arange(16)[minifcn.to_numpy(indices).ravel()]), (
    "unpooling's backward must read dy at the recorded positions")
nearest = nn.Upsample(scale_factor=2, mode="nearest")(pooled)
lesson.say(f"""
    MaxPool2d(2, return_indices=True) keeps the largest value of each 2 x 2 window and
    records where it was, as the flat position h*W + w in the 4 x 4 input (PyTorch's
    convention). MaxUnpool2d(2) takes the pooled values and those indices and writes each
    value back at its recorded position, zeros elsewhere: the maxima return exactly where
    they came from. Nearest-neighbour up-sampling of the same 2 x 2 would copy each value
    to all four pixels of its window ({int((minifcn.to_numpy(nearest) != 0).sum())} non-zero
    pixels against {len(flat_positions)}). The gradient of unpooling is the reverse
    gather: d_pooled = dy at the recorded positions (checked above with dy = 0..15, giving
    {minifcn.to_numpy(d_pooled).ravel().astype(int).tolist()}). In SegNet's decoder the
    3x3 convolutions after each unpooling fill the zeros; the indices carry the encoder's
    sharp positions of edges and corners back up, at the price of a few bits per pixel.
""")


# %% [markdown]
# ## 4. Concatenation against summation
#
# U-Net concatenates where FCN adds: shapes, gradients, and what a convolution after
# concatenation can do.

# %%
lesson.heading("4. Concatenation against summation")

host = np.random.default_rng(0)
a = on_device(host.standard_normal((1, 3, 4, 4)))
b = on_device(host.standard_normal((1, 3, 4, 4)))
summed = nn.Add()(a, b)
concat = nn.Concat(dim=1)
stacked = concat(a, b)
assert tuple(summed.shape) == (1, 3, 4, 4) and tuple(stacked.shape) == (1, 6, 4, 4), (
    "Add keeps the channels, Concat stacks them")
narrow = on_device(host.standard_normal((1, 2, 4, 4)))
assert tuple(nn.Concat(dim=1)(a, narrow).shape) == (1, 5, 4, 4), "any channel counts"

mixer = nn.Conv2d(6, 3, 1, bias=False, device=lesson.device)
mixer.weight.data[...] = on_device(np.concatenate([np.eye(3), np.eye(3)], axis=1)[..., None, None])
assert np.allclose(minifcn.to_numpy(mixer(stacked)), minifcn.to_numpy(summed), atol=1e-6), (
    "a 1x1 convolution with weights [I I] after Concat is Add")

dy = on_device(host.standard_normal((1, 6, 4, 4)))
d_a, d_b = concat.backward(dy)
assert np.array_equal(minifcn.to_numpy(d_a), minifcn.to_numpy(dy)[:, :3]), "Concat splits dy"
assert np.array_equal(minifcn.to_numpy(d_b), minifcn.to_numpy(dy)[:, 3:]), "Concat splits dy"
add = nn.Add()
add(a, b)
dy_sum = on_device(host.standard_normal((1, 3, 4, 4)))
assert all(d is dy_sum for d in add.backward(dy_sum)), "Add hands dy to both inputs"
lesson.say("""
    Add (FCN) needs two maps of one shape and returns that shape: a (1, 3, 4, 4) plus a
    (1, 3, 4, 4) is a (1, 3, 4, 4). Concat (U-Net) stacks the channels: (1, 6, 4, 4), and
    the two inputs may have different channel counts. Their gradients mirror that: Add
    hands the same dy to both inputs (the very same array, which is why no backward in
    minifcn may write into its dy); Concat cuts dy into the channels of each input.

    Concatenation followed by a convolution can do everything summation does: a 1x1
    convolution with weights [I I] over the stacked channels IS the sum (checked above).
    Training may find that, or any other mix, channel by channel and, with 3x3 kernels,
    position by position. The price is width: U-Net's decoder convolutions read twice the
    channels, which is where its parameters and its time go. FCN can afford to add,
    because what it adds are already class scores: it asks the skip layer for an answer,
    where U-Net hands over the evidence.
""")


# %% [markdown]
# ## 5. The same training for all three: where do they draw the outlines?
#
# The three segmenters trained on the same batches to tell objects from background: time
# per step, object IoU and how close their outlines come to the true ones.

# %%
lesson.heading("5. The same training for all three: where do they draw the outlines?")

OBJECT = 1  # the one foreground class of this section


train_set = Shapes(TRAIN_IMAGES, image_size=SIZE, seed=0, split="train")
train_set.masks = objects_only(train_set.masks)
val_set = Shapes(VAL_IMAGES, image_size=SIZE, seed=0, split="val")
val_objects = objects_only(val_set.masks)
# the same images without the void band: their outlines are what the predictions are
# compared with
val_outlines = objects_only(Shapes(VAL_IMAGES, image_size=SIZE, seed=0, split="val",
                                   void_band=False).masks)
val_images = on_device(val_set.images)
val_masks = lesson.asarray(val_objects.astype(np.int64))
criterion = nn.CrossEntropyLoss(ignore_index=train_set.ignore_index, device=lesson.device)
binary_models = {name: build(name, num_classes=2) for name in DECODERS}


def training_step(name, images, masks):
    """One step of one model; returns its wall time. to_numpy(loss) waits for a GPU."""
    model = binary_models[name]
    started = time.perf_counter()
    loss = criterion(model(images), masks)
    model.zero_grad()
    model.backward(criterion.backward())
    optimizers[name].step()
    schedules[name].step()
    minifcn.to_numpy(loss)
    return time.perf_counter() - started


def predict(model, images, batch=50):
    """Class per pixel, (N, H, W) on the device."""
    model.eval()
    masks = [model(images[i:i + batch]).argmax(axis=1) for i in range(0, len(images), batch)]
    model.train()
    return lesson.xp.concatenate(masks)


def object_iou(prediction):
    confusion = ConfusionMatrix(2, ignore_index=val_set.ignore_index)
    confusion.update(prediction, val_masks)
    return float(confusion.compute()["per_class_iou"][OBJECT])


# The three models take turns, one step each on the same batch: the same data in the same
# order for all, and a busy machine slows the three alike, which keeps the timings fair.
optimizers = {name: Adam(model.parameters(), lr=LR) for name, model in binary_models.items()}
schedules = {name: make_scheduler("cosine", opt, STEPS) for name, opt in optimizers.items()}
step_times = {name: [] for name in binary_models}
loader = DataLoader(train_set, BATCH, shuffle=True, drop_last=True, seed=0, hflip=True,
                    device=lesson.device)
started = time.perf_counter()
step = 0
while step < STEPS:
    for images, masks in loader:
        for name in binary_models:
            step_times[name].append(training_step(name, images, masks))
        step += 1
        if step == STEPS:
            break
training_seconds = time.perf_counter() - started

predictions = {name: predict(model, val_images) for name, model in binary_models.items()}
objects = {name: object_iou(p) for name, p in predictions.items()}
outlines = {name: boundary_f_score(p, val_outlines) for name, p in predictions.items()}
ms_per_step = {name: 1000.0 * float(np.median(times[1:])) for name, times in step_times.items()}

print(f"  {STEPS} steps of {BATCH} images each, Adam lr {LR:g} with a cosine schedule, widths "
      f"{WIDTHS}; {training_seconds:.1f} s for the three")
print(f"  {'model':<10}{'parameters':>11}{'ms / step':>11}{'object IoU':>12}"
      f"{'boundary F (2 px)':>19}")
for name, model in binary_models.items():
    print(f"  {name:<10}{model.num_parameters():>11,}{ms_per_step[name]:>11.1f}"
          f"{objects[name]:>12.3f}{outlines[name]:>19.3f}")
print()

others = [name for name in binary_models if name != "unet"]
for name in binary_models:
    assert objects[name] > 0.4, f"{name} should find the objects: object IoU {objects[name]:.3f}"
assert ms_per_step["unet"] > 1.3 * ms_per_step["fcn8s"], (
    f"U-Net's wide full-resolution decoder should cost time: {ms_per_step}")
if not lesson.quick:
    # Measured at seeds 0-3 (this lesson's settings): U-Net ahead of the better of the two
    # others by 0.137-0.267 in boundary F and 0.056-0.165 in object IoU.
    assert outlines["unet"] > max(outlines[n] for n in others) + 0.08, outlines
    assert objects["unet"] > max(objects[n] for n in others) + 0.03, objects
lesson.say(f"""
    The three trained side by side for {STEPS} steps, taking turns on the same batches, on
    a simpler question than the four classes: object or background. Naming the shape is
    the encoder's job, and the three share the same encoder; where the outline falls is
    the decoder's, and a short run teaches that part first (with four classes, this budget
    left all three at a mean IoU of 0.3 to 0.5, most errors being a wrong shape name).

    Two measures of where, as in lesson 09: the object IoU, and the boundary F-score
    (minifcn.metrics.boundary_f_score: the share of predicted edge pixels within 2 px of a
    true edge, the share of true edge pixels within 2 px of a predicted one, and their
    harmonic mean). U-Net's outlines come closest: boundary F {outlines['unet']:.3f},
    against {outlines['fcn8s']:.3f} for FCN-8s and {outlines['segnet']:.3f} for SegNet.
    Its decoder is handed the encoder's full-resolution feature maps (section 2): the
    stage-1 features see every pixel, so the last layers can place an edge to the pixel.
    FCN-8s adds class scores from pool3 at best, 8 pixels a cell, and interpolates the
    rest, which rounds the corners. SegNet gets back the positions of the maxima, one per
    2 x 2 window, but no features at full resolution: its edges are placed where a
    maximum happened to be. U-Net pays with time: {ms_per_step['unet']:.0f} ms a step
    against {ms_per_step['fcn8s']:.0f} for FCN-8s and {ms_per_step['segnet']:.0f} for
    SegNet (medians, measured in turns so that the machine's load weighs on all three
    alike).

    Over seeds 0 to 3, at the default settings (300 steps), U-Net led the better of the
    other two by 0.14 to 0.27 in boundary F,
    and FCN-8s came second every time, SegNet third. A class-weighted loss (median
    frequency balancing, minifcn.data.median_frequency_weights, SegNet's recipe for rare
    classes) made every outline worse here (boundary F at seed 0: FCN-8s 0.59, SegNet 0.51,
    U-Net 0.81, against 0.60, 0.59 and 0.86 without): it pays each object pixel more than
    each background pixel, so predicted objects grow past their edges.
    The project's longer PyTorch calibration (180 s each, four classes) ended with U-Net
    0.91, FCN-8s 0.87 and SegNet 0.78 mean IoU: the richest skips win there too.
""")


def save_predictions_figure(path, count=4):
    """Image, true objects, and each decoder's objects with the true outline drawn over."""
    shown = {name: minifcn.to_numpy(p[:count]) for name, p in predictions.items()}
    true_edges = label_boundary(val_outlines[:count])
    titles = ["image", "true objects"] + [
        f"{name}\nobject IoU {objects[name]:.2f}, boundary F {outlines[name]:.2f}"
        for name in binary_models]
    fig, axes = plt.subplots(count, len(titles), figsize=(2.4 * len(titles), 2.4 * count + 0.6))
    for row in range(count):
        panels = [val_set.images[row].transpose(1, 2, 0), colorize(val_objects[row], PALETTE)]
        for name in binary_models:
            panel = colorize(shown[name][row].astype(np.uint8), PALETTE)
            panel[true_edges[row]] = (255, 255, 255)  # the true outline, in white
            panels.append(panel)
        show_panels(axes[row], panels, titles if row == 0 else None, fontsize=10)
    fig.suptitle(f"Same encoder, three decoders, {STEPS} steps each: object or background "
                 f"(white: the true outline)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("predictions.png")
save_predictions_figure(path)
lesson.saved(path)

lesson.done()
