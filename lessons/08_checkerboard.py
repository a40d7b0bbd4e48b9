"""Lesson 08: Checkerboard artifacts: uneven overlap in transposed convolutions

What this lesson teaches:
- the overlap count of a transposed convolution: how many input pixels reach each output
  pixel. When the kernel size is not divisible by the stride (k=3, s=2) it alternates from
  pixel to pixel ("deconvolution overlap"); when it is (k=4, s=2), it is constant;
- the same unevenness in the layer's output on a constant input: a period-2 pattern that
  the weights would have to cancel exactly, and on average do not;
- the same pattern in GRADIENTS: a stride-2, 3x3 convolution sends an uneven gradient back
  to its input (its backward pass is a transposed convolution);
- the artifact in a trained segmenter: a "checkerboard ratio" (the power of the
  prediction maps at the period-2 frequency, relative to the neighbouring frequencies;
  1 = no peak) for decoders of five x2 up-steps with transposed k=3, transposed k=4, and
  resize-then-convolve, after a short training; and the remedy, resize then convolve.

New since lesson 07: a failure mode of learned up-sampling, and how to measure it in the
frequency domain.

Run: python lessons/08_checkerboard.py [--quick] [--out DIR] [--device gpu]
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
from minifcn.functional import softmax
from minifcn.models import build_model
from minifcn.models.common import transposed_padding
from minifcn.nn import CrossEntropyLoss
from minifcn.optim import Adam

lesson = course.start(__doc__, exercises=["conv_transpose2d"])
xp = lesson.xp
host = np.random.default_rng(0)  # every random input of this lesson comes from here


def on_device(array, dtype=np.float64):
    return lesson.asarray(np.asarray(array, dtype=dtype))


def up_by_two(kernel_size, weight=None):
    """A one-channel ConvTranspose2d that doubles the size exactly, as the models build it
    (minifcn.models.common.transposed_padding picks its padding and output_padding)."""
    padding, output_padding = transposed_padding(kernel_size, 2)
    layer = nn.ConvTranspose2d(1, 1, kernel_size, stride=2, padding=padding,
                               output_padding=output_padding, bias=False,
                               device=lesson.device, dtype="float64")
    if weight is not None:
        layer.weight.data[...] = on_device(weight)
    return layer


def interior(a, margin=2):
    """Drop ``margin`` pixels on every side, where the border changes the counts."""
    return a[..., margin:-margin, margin:-margin]


def period_two_cell(a):
    """If ``a`` (H, W) repeats with period 2 along both axes, its 2x2 cell; else None."""
    cell = a[:2, :2]
    tiled = np.tile(cell, (a.shape[0] // 2, a.shape[1] // 2))
    return cell if np.allclose(a, tiled, rtol=0, atol=1e-12) else None


# %% [markdown]
# ## 1. Overlap: how many input pixels reach each output pixel
#
# When the kernel size is not divisible by the stride, output pixels receive unequal numbers
# of contributions: counted here.

# %%
lesson.heading("1. Overlap: how many input pixels reach each output pixel")

SIDE = 8
ones = on_device(np.ones((1, 1, SIDE, SIDE)))
overlap = {k: minifcn.to_numpy(up_by_two(k, np.ones((1, 1, k, k)))(ones))[0, 0]
           for k in (3, 4)}
for k, counts in overlap.items():
    print(f"  ConvTranspose2d(k={k}, s=2), all-ones weight, all-ones {SIDE}x{SIDE} input "
          f"-> {counts.shape}; top-left 6x6:")
    for row in counts[:6, :6]:
        print("    " + " ".join(f"{v:2g}" for v in row))
print()
cells = {k: period_two_cell(interior(counts)) for k, counts in overlap.items()}
lesson.say(f"""
    With all weights 1 and an input of ones, a transposed convolution's output counts how
    many input pixels paint each output pixel (its "overlap"). A stride-2 layer places its
    input pixels 2 output pixels apart and paints a k x k patch around each. With k = 4
    every output pixel is covered by 2 patches along each axis: 2 x 2 = 4 everywhere inside
    the border. With k = 3 the patches overlap by ONE pixel: along each axis the count
    alternates 1, 2, 1, 2, and in 2-D the interior is a grid of
    {sorted({int(v) for v in cells[3].ravel()})}. The number of low-resolution pixels
    behind a high-resolution pixel changes from pixel to pixel: the "deconvolution overlap"
    of the seed text, whenever the kernel size is not divisible by the up-scaling factor.
""")
assert np.unique(interior(overlap[4])).tolist() == [4.0], "k=4: constant overlap inside"
assert cells[3] is not None and sorted(np.unique(cells[3]).tolist()) == [1.0, 2.0, 4.0], (
    "k=3: overlap 1, 2, 4 repeating with period 2")


def overlap_profile(kernel_size, stride, length=24):
    """Counts along one axis, away from the ends: taps of the kernel landing on each output
    position, i.e. how many t in [0, K) have t = j (mod stride)."""
    return [sum(1 for t in range(kernel_size) if (t - j) % stride == 0)
            for j in range(length)]


print("  one axis, away from the border (count per output pixel, one period):")
print("    kernel  stride   counts      even?")
uneven = {}
for stride in (2, 3):
    for kernel_size in range(stride, 3 * stride + 1):
        period = overlap_profile(kernel_size, stride)[:stride]
        uneven[kernel_size, stride] = len(set(period)) > 1
        print(f"    {kernel_size:>4}  {stride:>6}    {str(period):<12}"
              f"{'no' if uneven[kernel_size, stride] else 'yes'}")
print()
assert all(uneven[k, s] == (k % s != 0) for k, s in uneven), "uneven iff s does not divide k"
assert overlap_profile(3, 2)[:2] == [2, 1] and overlap_profile(4, 2)[:2] == [2, 2]
lesson.say("""
    In general an output pixel receives the kernel taps t with t = j (mod s), and there are
    k / s of them for every j exactly when s divides k. The table checks every kernel from s
    to 3s for strides 2 and 3: the counts are even if and only if s divides k.
""")


# %% [markdown]
# ## 2. A constant input comes out as a pattern
#
# A constant input through a stride-2 transposed convolution: where the overlap is uneven,
# it comes out as a repeating 2x2 pattern.

# %%
lesson.heading("2. A constant input comes out as a pattern")

weight3 = host.standard_normal((1, 1, 3, 3))
flat = on_device(np.ones((1, 1, 16, 16)))
response3 = minifcn.to_numpy(up_by_two(3, weight3)(flat))[0, 0]
cell3 = period_two_cell(interior(response3))


def print_matrix(title, matrix):
    print(f"  {title}")
    for row in matrix:
        print("    " + " ".join(f"{v:7.3f}" for v in row))


print_matrix("a random 3x3 weight:", weight3[0, 0])
print_matrix("its response to a constant input repeats this 2x2 cell everywhere inside:",
             cell3)
print()


def pattern_amplitude(kernel_size, weight):
    """(max - min) / |mean| of the interior response of a x2 layer to a constant input."""
    response = interior(minifcn.to_numpy(up_by_two(kernel_size, weight)(flat))[0, 0])
    return float((response.max() - response.min()) / abs(response.mean()))


TRIALS = 40 if lesson.quick else 200
amplitudes = {k: np.array([pattern_amplitude(k, host.random((1, 1, k, k)))
                           for _ in range(TRIALS)]) for k in (3, 4)}
smooth = {k: pattern_amplitude(k, np.ones((1, 1, k, k))) for k in (3, 4)}
ratio = np.median(amplitudes[3]) / np.median(amplitudes[4])
lesson.say(f"""
    A constant input should up-sample to a constant. Through a stride-2 layer it comes out
    as a period-2 pattern: each of the four output pixels of a 2x2 cell is a different SUM
    of kernel taps, those that land on it. For k = 3 the four sums have 1, 2, 2 and 4
    terms: the centre tap alone, against the sum of the four corner taps. With k = 4 every
    sum has 4 terms, so a kernel as plain as all-equal weights gives a flat output
    (amplitude (max - min) / mean = {smooth[4]:.2f}), where with k = 3 it reproduces the
    overlap counts (amplitude {smooth[3]:.2f}). Random weights make a pattern either way
    (four sums of random numbers differ), but over {TRIALS} random positive kernels the
    median amplitude is {np.median(amplitudes[3]):.2f} for k = 3 against
    {np.median(amplitudes[4]):.2f} for k = 4: {ratio:.1f}x stronger when the overlap is
    uneven. An evenly overlapping kernel only has to be smooth to draw no pattern; an
    unevenly overlapping one has to balance one tap against four, exactly.
""")
assert cell3 is not None and len(np.unique(np.round(cell3, 12))) == 4, (
    "k=3 on a constant input: a period-2 pattern of four different values")
assert smooth[4] < 1e-12 < 1.0 < smooth[3], f"all-equal weights: {smooth}"
assert ratio > 1.6, f"uneven overlap should give stronger patterns: {ratio:.2f}x"


# %% [markdown]
# ## 3. The same pattern in gradients
#
# The same unevenness appears in the gradients that flow back through a strided convolution.

# %%
lesson.heading("3. The same pattern in gradients")


def input_gradient(kernel_size, padding):
    """d(sum of outputs)/d input of a stride-2 Conv2d with all-ones weights: the upstream
    gradient is constant (ones), like a loss that weighs every output pixel alike."""
    conv = nn.Conv2d(1, 1, kernel_size, stride=2, padding=padding, bias=False,
                     device=lesson.device, dtype="float64")
    conv.weight.data[...] = 1.0
    y = conv(on_device(host.standard_normal((1, 1, 2 * SIDE, 2 * SIDE))))
    return minifcn.to_numpy(conv.backward(xp.ones_like(y)))[0, 0]


gradients = {3: input_gradient(3, 1), 4: input_gradient(4, 1)}
print("  Conv2d(k, stride=2, padding=1), all-ones weights, upstream gradient all ones:")
for k, dx in gradients.items():
    print(f"    k={k}: d loss / d input, top-left 4x4 of {dx.shape}:")
    for row in dx[:4, :4]:
        print("      " + " ".join(f"{v:2g}" for v in row))
print()
lesson.say(f"""
    A strided convolution is the transposed convolution's mirror image, and its backward
    pass IS a transposed convolution (lesson 06). So it distributes gradients unevenly in
    exactly the same way: a 3x3 window moved 2 pixels at a time covers some input pixels
    once, some twice, some four times, and a constant upstream gradient comes back as the
    overlap pattern {sorted({int(v) for v in interior(gradients[3]).ravel()})}, the very
    map of section 1. Every
    pixel of the input gets a different share of the learning signal depending only on its
    position. A 4x4 window (or 2x2, or stride 1) covers every pixel equally. This is why
    checkerboards also show up in networks with no up-sampling at all, e.g. in the
    gradients that an encoder with stride-2, 3x3 convolutions passes back.
""")
assert period_two_cell(interior(gradients[3])) is not None, "k=3: a period-2 gradient"
assert len(np.unique(interior(gradients[3]))) == 3, "k=3: counts 1, 2, 4"
assert np.unique(interior(gradients[4])).tolist() == [4.0], "k=4: an even gradient"
# A conv's input gradient is a transposed conv: exactly section 1's overlap maps.
assert all(np.array_equal(gradients[k], overlap[k]) for k in (3, 4)), (
    "the convolution's input gradient should be the transposed convolution's overlap map")


def save_overlap_figure(path):
    panels = [(overlap[3], "ConvTranspose2d k=3, s=2:\noverlap count"),
              (overlap[4], "ConvTranspose2d k=4, s=2:\noverlap count"),
              (gradients[3], "Conv2d k=3, s=2: input gradient\n(constant upstream gradient)"),
              (gradients[4], "Conv2d k=4, s=2: input gradient\n(constant upstream gradient)"),
              (response3, "ConvTranspose2d k=3, s=2, random\nweights: a constant input's image")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.9))
    for ax, (panel, title) in zip(axes, panels, strict=True):
        shown = ax.imshow(panel, cmap="viridis", interpolation="nearest")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Uneven overlap (k not divisible by s) draws a grid; even overlap does not")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("overlap_maps.png")
save_overlap_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 4. In a trained segmenter: the checkerboard ratio
#
# Decoders with kernel 3, kernel 4 and resize-then-convolve, trained, and the checkerboard
# pattern measured in their outputs.

# %%
lesson.heading("4. In a trained segmenter: the checkerboard ratio")


def power_spectrum(maps):
    """Mean power |FFT|^2 of (M, H, W) maps along rows and along columns, per frequency
    0 .. W/2 cycles per W pixels (the last one is period 2: +, -, +, -, ...)."""
    maps = maps - maps.mean(axis=(1, 2), keepdims=True)
    along_rows = (np.abs(np.fft.rfft(maps, axis=2)) ** 2).mean(axis=(0, 1))
    along_columns = (np.abs(np.fft.rfft(maps, axis=1)) ** 2).mean(axis=(0, 2))
    return (along_rows + along_columns) / 2


def checkerboard_ratio(maps):
    """Power at the period-2 frequency over the mean power of its two neighbours.
    A smooth spectrum gives about 1; a grid of period 2 makes a peak, > 1."""
    spectrum = power_spectrum(maps)
    return float(spectrum[-1] / spectrum[-3:-1].mean())


MODEL = "segnet"
DECODERS = {"transposed k=3": dict(upsample="transposed", transposed_kernel=3),
            "transposed k=4": dict(upsample="transposed", transposed_kernel=4),
            "resize-conv": dict(upsample="resize-conv")}
# A narrow SegNet (8 channels at every stage) keeps the three runs short.
WIDTHS = (8, 8, 8, 8, 8)
STEPS, BATCH = (30, 8) if lesson.quick else (60, 8)
# Early in training, where the grid is clear: from step 10 (batch norm's running statistics
# need a few steps to settle), every 2 steps. One checkpoint, and even one run, is noisy
# (see the text below), so the MEDIAN over the checkpoints is what is compared, and the
# claim checked is about transposed decoders as a family.
CHECKS = list(range(10, STEPS + 1, 2))
train_set = Shapes(STEPS * BATCH, seed=0, split="train")
val_set = Shapes(24 if lesson.quick else 48, seed=0, split="val", void_band=False)
val_images = lesson.asarray(val_set.images)


def class_probabilities(model):
    """Softmax maps of the validation images, (images * classes, H, W) on the host."""
    model.eval()
    maps = minifcn.to_numpy(softmax(model(val_images), dim=1))
    model.train()
    return maps.reshape(-1, *maps.shape[2:])


def train_and_watch(options):
    """Train MODEL with this decoder; the checkerboard ratio at each of CHECKS, and the
    last softmax maps."""
    minifcn.manual_seed(0)  # the same initial encoder and the same batches for all three
    model = build_model(MODEL, widths=WIDTHS, **options).to(lesson.device)
    optimizer = Adam(model.parameters(), lr=3e-3)
    criterion = CrossEntropyLoss(ignore_index=train_set.ignore_index)
    loader = DataLoader(train_set, BATCH, shuffle=True, drop_last=True, seed=0,
                        device=lesson.device)
    ratios = {}
    for step, (images, masks) in enumerate(loader, start=1):
        criterion(model(images), masks)
        model.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
        if step in CHECKS:
            maps = class_probabilities(model)
            ratios[step] = checkerboard_ratio(maps)
    return ratios, maps


started = time.perf_counter()
ratios, final_maps = {}, {}
for name, options in DECODERS.items():
    ratios[name], final_maps[name] = train_and_watch(options)
truth_maps = (val_set.masks[:, None] == np.arange(4)[None, :, None, None]).astype(float)
truth_ratio = checkerboard_ratio(truth_maps.reshape(-1, *truth_maps.shape[2:]))
print(f"  {MODEL} (five x2 up-steps), widths {WIDTHS}, Adam lr 3e-3, batches of {BATCH}; "
      f"{time.perf_counter() - started:.1f} s for the three")
print("  checkerboard ratio of the validation softmax maps")
print("    after step " + "".join(f"{name:>17}" for name in DECODERS))
for step in CHECKS[::2] if len(CHECKS) > 8 else CHECKS:  # every other row, to stay short
    print(f"    {step:>10} " + "".join(f"{ratios[name][step]:>17.2f}" for name in DECODERS))
print(f"    {'median':>10} " + "".join(f"{np.median(list(ratios[name].values())):>17.2f}"
                                      for name in DECODERS))
print(f"    ground-truth masks (one-hot): {truth_ratio:.2f}")
print()

median_ratio = {name: float(np.median(list(by_step.values())))
                for name, by_step in ratios.items()}
# The two transposed decoders together: the geometric mean of their medians.
transposed_ratio = float(np.sqrt(median_ratio["transposed k=3"]
                                 * median_ratio["transposed k=4"]))
random_maps = on_device(host.standard_normal((16, 1, 32, 32)))
resized = nn.Upsample(scale_factor=2, mode="bilinear")(random_maps)
bilinear_ratio = checkerboard_ratio(minifcn.to_numpy(resized)[:, 0])
lesson.say(f"""
    To measure a checkerboard in a real network, look at its predictions in the frequency
    domain. Take the softmax maps of the validation images (one per class), and their
    power spectrum along rows and columns. A period-2 grid puts power at the highest
    frequency, W/2 cycles per W pixels; a smooth map or a real edge spreads its power over
    all frequencies, falling gently towards the highest. The CHECKERBOARD RATIO divides
    the power at the period-2 frequency by the mean of its two neighbours: about 1 with no
    grid (the ground-truth masks give {truth_ratio:.2f}), above 1 with one.

    Three SegNets, identical except for their five x2 up-sampling steps, trained from the
    same start on the same batches. The median of the ratio over the checkpoints above is
    {median_ratio['transposed k=3']:.2f} with transposed convolutions of kernel 3,
    {median_ratio['transposed k=4']:.2f} with kernel 4, and {median_ratio['resize-conv']:.2f}
    with resize-then-convolve. (SegNet starts its x2 layers as bilinear interpolation,
    which has no grid; within tens of steps, training breaks that balance.) Kernel 4 is not
    immune: even overlap removes the BUILT-IN pattern, not the freedom to learn one, since
    each of its four phases has its own taps and they drift apart during training.

    Which of the two transposed kernels draws the stronger grid in a run this short is
    not stable. Training is chaotic: when we changed the input gradient of every
    convolution by one part in a million (random relative noise of 1e-6, far below what
    float32 rounding already does), eight such runs in quick mode gave medians from 0.91
    to 2.13 for kernel 3 and from 1.96 to 7.81 for kernel 4. What held in every run: both
    transposed decoders draw a grid (the geometric mean of their two medians is
    {transposed_ratio:.2f} here, and was 1.85 or more in all eight), and resize-then-
    convolve never does, at 0.98 to 1.00. So a single run, or a single checkpoint, is
    not evidence either way; compare families, and across seeds.

    Resize-then-convolve has nothing that could draw a grid: bilinear x2 makes every
    output pixel the same way, from its two nearest input pixels with weights 1/4 and 3/4
    (a random map up-sampled x2 has a ratio of {bilinear_ratio:.2f}: no peak), and the
    stride-1 3x3 convolution after it treats every pixel alike.

    An honest caveat: these are the first {STEPS} steps, where the grid is clearest. At
    this scale it mostly trains away: longer runs of the project's PyTorch calibration
    measured 2.46 (k=3), 1.78 (k=4) and 1.00 (resize-conv) after 250 steps, and 1.10, 1.04
    and 1.00 after 1000. The network learns to balance the taps, at the cost of capacity
    and of training time spent undoing its own up-sampler. The remedy costs nothing:
    resize, then convolve.
""")
for name in ("transposed k=3", "resize-conv"):
    for step, value in ratios[name].items():
        assert np.isfinite(value), f"{name} at step {step}: {value}"
assert 0.8 < truth_ratio < 1.2, f"ground truth has no grid: {truth_ratio}"
# Measured in quick mode over eight runs whose convolution input gradients were perturbed
# by relative noise of 1e-6: medians 0.91-2.13 (k=3), 1.96-7.81 (k=4), 0.98-1.00
# (resize-conv); the geometric mean of the two transposed medians 1.85-3.48. Four such runs
# at the default 60 steps: geometric means 1.87-2.47, resize-conv 0.99.
assert median_ratio["resize-conv"] < 1.2, f"resize-conv should draw no grid: {median_ratio}"
assert 0.8 < bilinear_ratio < 1.2, f"bilinear x2 should draw no grid: {bilinear_ratio}"
assert transposed_ratio > max(1.4, 1.4 * median_ratio["resize-conv"]), (
    f"transposed decoders should draw a grid early in training: {median_ratio}")


def laplacian(a):
    """4 a[i, j] minus its four neighbours: a high-pass filter that a period-2 grid drives
    to its extremes (+, -, +, -) while smooth ramps give about 0."""
    return 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]


def save_predictions_figure(path):
    """One validation image; each decoder's 'background' probability, and its high-pass."""
    index = 0
    fig, axes = plt.subplots(2, len(DECODERS) + 1, figsize=(3.4 * (len(DECODERS) + 1), 6.8))
    axes[0, 0].imshow(np.clip(val_set.images[index].transpose(1, 2, 0), 0, 1))
    axes[0, 0].set_title("validation image", fontsize=10)
    axes[1, 0].imshow(colorize(val_set.masks[index], PALETTE), interpolation="nearest")
    axes[1, 0].set_title("its mask", fontsize=10)
    for column, (name, maps) in enumerate(final_maps.items(), start=1):
        probability = maps[4 * index]  # image 0, class 0: background
        shown = axes[0, column].imshow(probability, cmap="magma", vmin=0, vmax=1,
                                       interpolation="nearest")
        axes[0, column].set_title(f"{name}: P(background)\nratio over all images "
                                  f"{ratios[name][STEPS]:.2f}", fontsize=10)
        fig.colorbar(shown, ax=axes[0, column], fraction=0.046, pad=0.04)
        detail = laplacian(probability)
        limit = np.abs(detail).max()
        shown = axes[1, column].imshow(detail, cmap="RdBu_r", vmin=-limit, vmax=limit,
                                       interpolation="nearest")
        axes[1, column].set_title(f"{name}: high-pass (Laplacian)", fontsize=10)
        fig.colorbar(shown, ax=axes[1, column], fraction=0.046, pad=0.04)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"After {STEPS} training steps: a period-2 grid shows as a fine "
                 f"red/blue checkerboard in the high-pass view")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_spectra_figure(path):
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.3))
    frequencies = np.arange(truth_maps.shape[-1] // 2 + 1)
    left.semilogy(frequencies, power_spectrum(truth_maps.reshape(-1, *truth_maps.shape[2:])),
                  color="black", lw=2, label="ground truth")
    for name, maps in final_maps.items():
        left.semilogy(frequencies, power_spectrum(maps), label=name)
    left.axvspan(frequencies[-3] - 0.5, frequencies[-2] + 0.5, color="grey", alpha=0.15,
                 label="neighbours")
    left.axvline(frequencies[-1], color="red", ls=":", label="period 2")
    left.set_xlabel("frequency (cycles per 64 pixels)")
    left.set_ylabel("mean power")
    left.set_title(f"Spectra of the validation softmax maps after {STEPS} steps",
                   fontsize=10)
    left.legend(fontsize=8)
    for name, by_step in ratios.items():
        right.plot(list(by_step), list(by_step.values()), "o-", label=name)
    right.axhline(truth_ratio, color="black", lw=1, ls="--", label="ground truth")
    right.set_xlabel("training step")
    right.set_ylabel("checkerboard ratio")
    right.set_title("Power at period 2 / its neighbours (1 = no grid)", fontsize=10)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("predictions.png")
save_predictions_figure(path)
lesson.saved(path)
path = lesson.figure("spectra.png")
save_spectra_figure(path)
lesson.saved(path)

lesson.done()
