"""Lesson 03: Sub-sampling: pooling, stride, receptive field

What this lesson teaches:
- max and average pooling, and stride, as ways to sub-sample a feature map; where their
  gradients go;
- the feature-map size and the receptive field of a stack of layers, layer by layer, by a
  hand formula and by minifcn.models.summary, and measured from a backward pass;
- why an encoder sub-samples, each reason measured:
  * field of view: with pooling the receptive field grows much faster with depth;
  * spatial invariance: after pooling, features change less when the image moves by one
    pixel;
  * computation: the same convolution on a 2x smaller map costs 4x less;
- and what it costs: resolution. A mask squeezed through a x2 ... x32 smaller grid and
  brought back with bilinear interpolation loses its edges, more at every factor.

New since lesson 02: layers that change the resolution, and the bookkeeping of where a
feature-map pixel sits on the image (stride, receptive field).

Run: python lessons/03_subsampling.py [--quick] [--out DIR] [--device gpu]
"""

import os
import time
from itertools import pairwise

# One BLAS thread, set before NumPy loads: on a busy shared machine a second thread waits
# for a free core at every matrix product (see lesson 01).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import minifcn
from minifcn import course, nn
from minifcn.data import PALETTE, Shapes, colorize
from minifcn.metrics import ConfusionMatrix
from minifcn.models import summary

lesson = course.start(__doc__, exercises=["max_pool2d", "avg_pool2d"])
xp = lesson.xp
host = np.random.default_rng(0)  # every random input of this lesson comes from here


def on_device(array, dtype=np.float64):
    return lesson.asarray(np.asarray(array, dtype=dtype))


def relative_change(a, b) -> float:
    """||a - b|| / ||a||: how much a feature map changed, as a fraction of its size."""
    a, b = minifcn.to_numpy(a), minifcn.to_numpy(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


# %% [markdown]
# ## 1. Pooling and stride
#
# Max and average pooling keep one number per window; any layer with a stride sub-samples
# too.

# %%
lesson.heading("1. Pooling and stride")

tile = np.array([[1, 3, 2, 0],
                 [5, 4, 1, 1],
                 [0, 2, 6, 8],
                 [1, 1, 7, 3]], dtype=np.float64)
x = on_device(tile[None, None])
max_pool, avg_pool = nn.MaxPool2d(2), nn.AvgPool2d(2)
max_out, avg_out = max_pool(x), avg_pool(x)
# Each 2x2 block of the 4x4 tile, as an axis of its own: (block row, row, block col, col).
blocks = tile.reshape(2, 2, 2, 2)
dx_max = minifcn.to_numpy(max_pool.backward(xp.ones_like(max_out)))[0, 0]
dx_avg = minifcn.to_numpy(avg_pool.backward(xp.ones_like(avg_out)))[0, 0]
strided = nn.Conv2d(1, 1, 3, stride=2, padding=1, device=lesson.device, dtype="float64")
overlapping = nn.MaxPool2d(3, stride=2, padding=1)

lesson.say("""
    Pooling slides a window over each channel, like a convolution with no weights, and
    keeps one number per window. MaxPool2d(2) and AvgPool2d(2) (2x2 windows, stride 2,
    the usual choice) halve the height and width of this 4x4 tile:
""")
max_host, avg_host = minifcn.to_numpy(max_out)[0, 0], minifcn.to_numpy(avg_out)[0, 0]
print("    tile           max-pool     average-pool   d sum(max)/d tile  d sum(avg)/d tile")
for r in range(4):
    pooled = (f"{max_host[r, 0]:4g} {max_host[r, 1]:4g}     {avg_host[r, 0]:5.2f} "
              f"{avg_host[r, 1]:5.2f}" if r < 2 else " " * 26)
    print(f"    {' '.join(f'{v:g}' for v in tile[r])}        {pooled}     "
          f"{' '.join(f'{v:g}' for v in dx_max[r])}            "
          f"{' '.join(f'{v:g}' for v in dx_avg[r])}")
print()
lesson.say(f"""
    Max-pooling keeps the strongest response of each window, so its gradient goes to that
    one winner and the other three pixels get none; average-pooling spreads it evenly, 1/4
    each. Any layer with stride S sub-samples too: a Conv2d(1, 1, 3, stride=2, padding=1)
    also takes the tile to {tuple(strided(x).shape[2:])}, and so does an overlapping
    MaxPool2d(3, stride=2, padding=1): {tuple(overlapping(x).shape[2:])}. Sizes follow
    lesson 01's formula, with the kernel size of the window.
""")
assert np.array_equal(minifcn.to_numpy(max_out)[0, 0], blocks.max(axis=(1, 3))), "max-pool"
assert np.allclose(minifcn.to_numpy(avg_out)[0, 0], blocks.mean(axis=(1, 3))), "avg-pool"
winners = (tile == np.kron(blocks.max(axis=(1, 3)), np.ones((2, 2)))).astype(float)
assert np.array_equal(dx_max, winners), "max-pool's gradient goes to each window's maximum"
assert np.allclose(dx_avg, 0.25), "average-pool's gradient is spread evenly"
assert tuple(strided(x).shape[2:]) == tuple(overlapping(x).shape[2:]) == (2, 2), "stride 2"


# %% [markdown]
# ## 2. Feature-map size and receptive field, layer by layer
#
# Through a stack of layers: how the map shrinks and how much of the image each output pixel
# sees.

# %%
lesson.heading("2. Feature-map size and receptive field, layer by layer")

# A small VGG-like encoder: (conv3x3 - ReLU) x2 then a 2x2 max-pool, three times.
# (name, kind, kernel, stride, padding)
STAGES = 3
SPECS = []
for stage in range(1, STAGES + 1):
    SPECS += [(f"conv{stage}_1", "conv", 3, 1, 1), (f"conv{stage}_2", "conv", 3, 1, 1),
              (f"pool{stage}", "pool", 2, 2, 0)]
WIDTH = 8


def build_stack(specs, pool=nn.MaxPool2d, relu=True):
    """The layers of ``specs`` as a Sequential (float64 on the lesson's device)."""
    layers, channels = [], 3
    for _, kind, K, S, P in specs:
        if kind == "conv":
            layers.append(nn.Conv2d(channels, WIDTH, K, stride=S, padding=P,
                                    device=lesson.device, dtype="float64"))
            channels = WIDTH
            if relu:
                layers.append(nn.ReLU())
        else:
            layers.append(pool(K, stride=S, padding=P))
    return nn.Sequential(*layers)


def geometry_by_hand(specs, size):
    """Per layer: (output size, jump, receptive field) along one axis.

    jump: input pixels between neighbouring output pixels (the product of the strides so
    far). A K-wide window over a map whose pixels are ``jump`` apart spans (K-1)*jump more
    input pixels than one of its pixels does: rf grows by (K-1)*jump.
    """
    jump, rf, rows = 1, 1, []
    for _, _, K, S, P in specs:
        size = (size + 2 * P - K) // S + 1
        rf += (K - 1) * jump
        jump *= S
        rows.append((size, jump, rf))
    return rows


H = 64
stack = build_stack(SPECS)
table = summary(stack, (1, 3, H, H))
layer_rows = [row for row in table.rows if row.kind != "ReLU"]
by_hand = geometry_by_hand(SPECS, H)
print(f"  input 3 x {H} x {H}; RF = receptive field, stride = jump, both in input pixels")
print("  layer       output shape      RF  stride   by hand (size, stride, RF)")
for (name, *_), row, (size, jump, rf) in zip(SPECS, layer_rows, by_hand, strict=True):
    print(f"  {name:<10}  {str(row.output_shape):<16} {row.geometry.rf:>3g} "
          f"{row.geometry.jump:>7g}   ({size}, {jump}, {rf})")
    assert row.output_shape[2] == size, f"{name}: size {row.output_shape} vs {size}"
    assert (row.geometry.rf, row.geometry.jump) == (rf, jump), f"{name}: {row.geometry}"

# The same six convolutions without the pooling layers.
no_pool_specs = [spec for spec in SPECS if spec[1] == "conv"]
rf_without = geometry_by_hand(no_pool_specs, H)[-1][2]
rf_with = by_hand[-1][2]
lesson.say(f"""
    A 3x3 convolution adds 2 pixels to the receptive field, but 2 pixels OF ITS INPUT MAP:
    after a 2x2 pool those are 2 input-image pixels apart, after two pools 4 apart. So each
    pooling doubles how fast the field of view grows. The six convolutions alone see
    {rf_without}x{rf_without} pixels of the image; with the three poolings between them
    (no extra weights at all) the last map's pixels see {rf_with}x{rf_with}, on a map
    {by_hand[-1][0]}x{by_hand[-1][0]} that is {by_hand[-1][1]}x smaller than the image.
    minifcn.models.summary computes the same table for any model.

    The backward pass confirms it: the gradient of the last map's centre pixel reaches
    exactly a receptive field's worth of input pixels (the figure). It is strongest in the
    middle, which many more paths through the stack reach than its rim.
""")
assert rf_with > 2.5 * rf_without, f"pooling should widen the view: {rf_with} vs {rf_without}"


def measured_receptive_field(specs, size):
    """Rows and columns of the input that the centre pixel of the last map depends on.

    The gradient of one output pixel w.r.t. the input is non-zero exactly where that pixel
    looks. The stack is made linear (no ReLU, average-pooling) so no path is switched off.
    """
    stack = build_stack(specs, pool=nn.AvgPool2d, relu=False)
    for conv in (layer for layer in stack if isinstance(layer, nn.Conv2d)):
        conv.weight.data[...] = on_device(host.uniform(0.5, 1.5, conv.weight.shape))
    y = stack(on_device(np.zeros((1, 3, size, size))))
    dy = np.zeros(y.shape)
    dy[0, 0, y.shape[2] // 2, y.shape[3] // 2] = 1.0
    dx = np.abs(minifcn.to_numpy(stack.backward(on_device(dy)))[0]).sum(axis=0)
    rows, cols = np.nonzero(dx)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1, dx


rf_rows, rf_cols, footprint_with = measured_receptive_field(SPECS, H)
rf_rows_without, _, footprint_without = measured_receptive_field(no_pool_specs, H)
print(f"  measured by backpropagating from the centre pixel of the last map:\n"
      f"    {rf_rows}x{rf_cols} with pooling, {rf_rows_without}x{rf_rows_without} without")
assert (rf_rows, rf_cols) == (rf_with, rf_with), f"measured {rf_rows}x{rf_cols}, not {rf_with}"
assert rf_rows_without == rf_without, f"measured {rf_rows_without}, not {rf_without}"


def save_receptive_field_figure(path):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    depth_with = [rf for _, _, rf in by_hand]
    depth_without = [rf for _, _, rf in geometry_by_hand(no_pool_specs, H)]
    conv_index = [k for k, spec in enumerate(SPECS) if spec[1] == "conv"]
    axes[0].plot(range(1, len(SPECS) + 1), depth_with, "o-", label="with 2x2 max-pools")
    axes[0].plot([k + 1 for k in conv_index], depth_without, "s-",
                 label="the same convolutions, no pooling")
    axes[0].set_xticks(range(1, len(SPECS) + 1), [spec[0] for spec in SPECS], rotation=45)
    axes[0].set_ylabel("receptive field (input pixels)")
    axes[0].set_title("Field of view with depth")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    for ax, footprint, title in ((axes[1], footprint_without, "no pooling"),
                                 (axes[2], footprint_with, "with pooling")):
        shown = ax.imshow(footprint / footprint.max(), cmap="viridis")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        rows, cols = np.nonzero(footprint)
        ax.add_patch(plt.Rectangle((cols.min() - 0.5, rows.min() - 0.5),
                                   cols.max() - cols.min() + 1, rows.max() - rows.min() + 1,
                                   fill=False, edgecolor="red", lw=1.5))
        ax.set_title(f"|d centre pixel / d input|, {title}\n"
                     f"red: its {rows.max() - rows.min() + 1}x{cols.max() - cols.min() + 1} "
                     f"receptive field", fontsize=10)
    fig.suptitle(f"What one pixel of the last map sees of a {H}x{H} image")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("receptive_field.png")
save_receptive_field_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 3. Spatial invariance, measured
#
# Sub-sampling makes features change less when the input shifts by a pixel or two; measured
# here.

# %%
lesson.heading("3. Spatial invariance, measured")

count = 8 if lesson.quick else 32
images = Shapes(count, image_size=72, seed=2).images
# Two 64x64 crops of each image, one pixel apart: the same scene moved left by one pixel.
crops = {"original": images[:, :, 4:68, 4:68], "moved 1 px": images[:, :, 4:68, 5:69]}
minifcn.manual_seed(1)
features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, device=lesson.device), nn.ReLU())
LEVELS = 5
changes = {}
for name, pool in (("max-pool", nn.MaxPool2d(2)), ("average-pool", nn.AvgPool2d(2))):
    a, b = (features(lesson.asarray(crop)) for crop in crops.values())
    changes[name] = [relative_change(a, b)]
    for _ in range(LEVELS):
        a, b = pool(a), pool(b)
        changes[name].append(relative_change(a, b))

print(f"  relative change ||f(image) - f(moved image)|| / ||f(image)|| over {count} images")
print("  pooling levels:  " + "".join(f"{k:>8}" for k in range(LEVELS + 1)))
for name, values in changes.items():
    print(f"  {name:<15}  " + "".join(f"{v:8.3f}" for v in values))
lesson.say(f"""
    The features here are 16 random 3x3 filters and a ReLU (a network's first layer before
    training). Moving the image by one pixel changes them by {changes['max-pool'][0]:.0%}
    at full resolution, mostly along the objects' edges, which move to other pixels. After
    each 2x2 pooling level the change is smaller: {changes['max-pool'][1]:.0%} after one
    max-pool, {changes['max-pool'][3]:.0%} after three. A one-pixel move often stays inside
    the same pooling window, whose maximum (or mean) then barely changes: the pooled
    features record THAT a pattern is there more than exactly WHERE. That is the spatial
    invariance sub-sampling buys, and the redundant detail it throws away.
""")
for name, values in changes.items():
    assert all(later < earlier for earlier, later in pairwise(values)), (
        f"{name}: the change should shrink at every pooling level, got {values}")
    assert values[1] < 0.8 * values[0], f"{name}: one pooling level: {values}"
    assert values[3] < 0.6 * values[0], f"{name}: three pooling levels: {values}"


# %% [markdown]
# ## 4. Less computation
#
# Smaller maps cost fewer operations in every later layer; counted here.

# %%
lesson.heading("4. Less computation")


def best_time(fn, repeats):
    """The fastest of ``repeats`` runs (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def conv_step_seconds(conv, x):
    """Forward and backward of ``conv`` on ``x``, fastest of a few runs."""
    dy = xp.ones((x.shape[0], conv.out_channels, *x.shape[2:]), dtype=x.dtype)

    def step():
        conv(x)
        minifcn.to_numpy(conv.backward(dy)[0, 0, 0, 0])  # on a GPU: wait for the result

    step()  # warm-up: first-touch allocations
    return best_time(step, repeats=5)


batch, width = (2, 32) if lesson.quick else (8, 32)
conv = nn.Conv2d(width, width, 3, padding=1, device=lesson.device)
timings = []
for factor in (1, 2, 4):
    side = 64 // factor
    x = lesson.asarray(host.standard_normal((batch, width, side, side)).astype(np.float32))
    flops = 3 * 2 * batch * width * width * 9 * side * side  # forward, dW and dx
    timings.append((factor, side, flops, conv_step_seconds(conv, x)))
print(f"  Conv2d({width}, {width}, 3, padding=1), batch {batch}, forward + backward:")
for factor, side, flops, seconds in timings:
    print(f"    after x{factor} sub-sampling ({side:>2}x{side:<2}): {flops / 1e9:6.3f} GFLOP "
          f"{seconds * 1e3:8.2f} ms   ({timings[0][3] / seconds:4.1f}x faster)")
lesson.say("""
    A convolution's arithmetic is proportional to its number of output pixels: each 2x2
    sub-sampling divides it by 4 for every layer after it. The clock follows, give or take
    the memory system (a smaller map fits better in cache; on a tiny one, fixed per-call
    costs start to show). That is what lets an encoder afford more channels in its deeper
    layers.
""")
speedup_2, speedup_4 = timings[0][3] / timings[1][3], timings[0][3] / timings[2][3]
assert timings[0][2] == 4 * timings[1][2] == 16 * timings[2][2], "4x fewer FLOPs per level"
assert speedup_2 > 2, f"a x2 smaller map should be at least 2x faster, got {speedup_2:.1f}x"
assert speedup_4 > 4, f"a x4 smaller map should be at least 4x faster, got {speedup_4:.1f}x"


# %% [markdown]
# ## 5. What sub-sampling costs: resolution
#
# What is lost: fine detail, which a segmenter needs back at the end.

# %%
lesson.heading("5. What sub-sampling costs: resolution")

count = 8 if lesson.quick else 32
shapes = Shapes(count, image_size=64, seed=3, void_band=False)
one_hot = (shapes.masks[:, None] == np.arange(4)[None, :, None, None]).astype(np.float32)
FACTORS = (1, 2, 4, 8, 16, 32)


def down_and_up(x, factor):
    """Average each factor x factor cell, then bilinear interpolation back up."""
    if factor == 1:
        return x
    coarse = nn.AvgPool2d(factor)(x)
    return nn.Upsample(scale_factor=factor, mode="bilinear")(coarse)


results = {}
for factor in FACTORS:
    scores = down_and_up(lesson.asarray(one_hot), factor)
    confusion = ConfusionMatrix(4, ignore_index=None)
    confusion.update(scores.argmax(axis=1), lesson.asarray(shapes.masks.astype(np.int64)))
    results[factor] = confusion.compute()

print(f"  {count} masks of 64x64 through a grid x smaller, then bilinear back to 64x64:")
print("  factor   grid    mean IoU   pixel accuracy")
for factor, metrics in results.items():
    print(f"    x{factor:<4} {64 // factor:>3}x{64 // factor:<3}   {metrics['mean_iou']:.3f}"
          f"      {metrics['pixel_acc']:.3f}")
lesson.say(f"""
    Here the coarse grid holds the PERFECT answer: the exact fraction of each class in each
    cell, what an ideal encoder could output at that stride. Bilinear interpolation back to
    full size, then the most likely class per pixel: at x2 that loses almost nothing (mean
    IoU {results[2]['mean_iou']:.3f}); at x8, {results[8]['mean_iou']:.3f}, corners round
    off and thin parts vanish; at x32, the output stride of the FCN encoder, a 64x64 image
    is a {64 // 32}x{64 // 32} grid and even this perfect coarse answer reaches a mean
    IoU of only {results[32]['mean_iou']:.3f}: blobs where the shapes were. The coarseness and lost
    edges are the decoder's problem, which the next lessons take on: skip connections from
    finer layers, learned up-sampling.
""")
ious = [results[f]["mean_iou"] for f in FACTORS]
assert all(later < earlier for earlier, later in pairwise(ious)), f"IoU by factor: {ious}"
assert results[2]["mean_iou"] > 0.95, f"x2 should lose little: {results[2]}"
assert results[32]["mean_iou"] < 0.6, f"x32 should lose a lot: {results[32]}"


def save_resolution_figure(path):
    # Show the mask with the most classes in it (the first such one).
    index = int(np.argmax([len(np.unique(mask)) for mask in shapes.masks]))
    image = lesson.asarray(shapes.images[index:index + 1])
    fig, axes = plt.subplots(2, len(FACTORS), figsize=(2.6 * len(FACTORS), 6.2))
    for column, factor in enumerate(FACTORS):
        picture = minifcn.to_numpy(down_and_up(image, factor))[0].transpose(1, 2, 0)
        axes[0, column].imshow(np.clip(picture, 0.0, 1.0))
        axes[0, column].set_title(f"image x{factor}" if factor > 1 else "image")
        scores = down_and_up(lesson.asarray(one_hot[index:index + 1]), factor)
        mask = minifcn.to_numpy(scores.argmax(axis=1))[0]
        axes[1, column].imshow(colorize(mask, PALETTE))
        axes[1, column].set_title(f"mask x{factor}: mIoU {results[factor]['mean_iou']:.2f}"
                                  if factor > 1 else "true mask")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Averaged over factor x factor cells, then bilinear back to 64x64 "
                 f"(mIoU: mean IoU over all {count} masks)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("resolution_loss.png")
save_resolution_figure(path)
lesson.saved(path)

lesson.done()
