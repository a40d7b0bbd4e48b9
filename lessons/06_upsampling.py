"""Lesson 06: Up-sampling: nearest, bilinear, and transposed convolution

What this lesson teaches:
- nearest-neighbour and bilinear interpolation (minifcn.nn.Upsample), with the formula
  that says where each output pixel samples the input, for align_corners=False (pixel
  centres line up) and align_corners=True (corner pixels line up), checked by hand;
- the transposed convolution, the learnable up-sampling of FCN, computed three ways that
  agree to rounding error (float64):
  (a) insert stride - 1 zero rows and columns between the input's pixels, pad, and run an
      ordinary convolution with the flipped kernel;
  (b) the adjoint (the transpose) of a strided convolution: <conv(x), y> = <x, conv_T(y)>,
      and its matrix is the convolution's matrix transposed;
  (c) the gradient of a convolution with respect to its input;
- its output size, and why it needs output_padding: a stride-2 convolution maps sizes 7
  and 8 to the same 4, so going back, 4 has two possible answers;
- what each up-sampler does to a coarse score map and a small image (figures);
- the claim that bilinear interpolation works reasonably well up to x4 or x8 but not x32,
  measured.

New since lesson 05: the decoder's basic tool, going from a coarse map back to pixels.

Run: python lessons/06_upsampling.py [--quick] [--out DIR] [--device gpu]
"""

import os
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
from minifcn.functional import conv2d_backward, conv2d_forward
from minifcn.functional.conv import conv_transpose2d_naive
from minifcn.metrics import ConfusionMatrix
from minifcn.nn import init

lesson = course.start(__doc__, exercises=["conv_transpose2d", "upsample"])
xp = lesson.xp
host = np.random.default_rng(0)  # every random input of this lesson comes from here


def on_device(array, dtype=np.float64):
    return lesson.asarray(np.asarray(array, dtype=dtype))


def host_array(array):
    return minifcn.to_numpy(array)


def max_difference(a, b) -> float:
    return float(np.abs(host_array(a) - host_array(b)).max())


# %% [markdown]
# ## 1. Nearest and bilinear interpolation
#
# Two fixed ways to enlarge a map, nearest and bilinear interpolation, with both
# `align_corners` rules.

# %%
lesson.heading("1. Nearest and bilinear interpolation")


def source_positions(in_size, out_size, mode, align_corners=False):
    """Where output pixels 0..out_size-1 sample the input, in input pixel indices (pixel i
    has its centre at i), for a scale factor of out_size / in_size."""
    dst = np.arange(out_size, dtype=np.float64)
    scale = out_size / in_size
    if mode == "nearest":
        return np.floor(dst / scale)
    if align_corners:
        return dst * (in_size - 1) / (out_size - 1)
    # Pixel centres line up: output centre dst + 0.5 sits at (dst + 0.5) / scale on the
    # input, i.e. at index (dst + 0.5) / scale - 0.5; before pixel 0, the edge is repeated.
    return np.maximum((dst + 0.5) / scale - 0.5, 0.0)


def interpolate_by_hand(row, out_size, mode, align_corners=False):
    """One axis of nearest/bilinear interpolation from the source positions."""
    src = source_positions(len(row), out_size, mode, align_corners)
    left = np.floor(src).astype(int)
    right = np.minimum(left + 1, len(row) - 1)
    weight = src - left  # 0 for nearest: src is already a whole index
    return (1.0 - weight) * row[left] + weight * row[right]


row = np.array([0.0, 1.0, 4.0, 2.0])
modes = {"nearest": dict(mode="nearest"),
         "bilinear, align_corners=False": dict(mode="bilinear", align_corners=False),
         "bilinear, align_corners=True": dict(mode="bilinear", align_corners=True)}
print(f"  input row {row.tolist()}, up-sampled x2 (a (1, 1, 1, 4) map: the height of 1 is "
      f"kept)")
for name, options in modes.items():
    layer = nn.Upsample(scale_factor=(1, 2), **options)
    out = host_array(layer(on_device(row[None, None, None])))[0, 0, 0]
    by_hand = interpolate_by_hand(row, 8, options["mode"], options.get("align_corners"))
    positions = source_positions(4, 8, options["mode"], options.get("align_corners"))
    print(f"    {name:<30} samples input at {np.round(positions, 3).tolist()}")
    print(f"    {'':<30} -> {np.round(out, 3).tolist()}")
    assert np.allclose(out, by_hand, rtol=0, atol=1e-12), f"{name}: {out} vs {by_hand}"
print()

# The same rule, separably, on a 2-D map at a larger factor.
coarse_map = host.random((1, 1, 3, 5))
for name, options in modes.items():
    out = host_array(nn.Upsample(scale_factor=4, **options)(on_device(coarse_map)))[0, 0]
    rows_done = np.stack([interpolate_by_hand(r, 20, options["mode"],
                                              options.get("align_corners"))
                          for r in coarse_map[0, 0]])
    by_hand = np.stack([interpolate_by_hand(c, 12, options["mode"],
                                            options.get("align_corners"))
                        for c in rows_done.T]).T
    assert np.allclose(out, by_hand, rtol=0, atol=1e-12), f"{name}, 2-D x4"

lesson.say("""
    An up-sampler decides, for each output pixel, which input position it samples. NEAREST
    copies input pixel floor(dst / s): each value becomes an s x s block. BILINEAR samples
    between pixels and blends the two nearest, with weights given by the distance, along
    rows and then along columns. Where it samples depends on a convention:

    align_corners=False (PyTorch's default, and minifcn's): think of pixels as little
    squares and line up their CENTRES: output pixel dst samples input position
    (dst + 0.5) / s - 0.5, and positions before the first centre repeat the edge pixel.
    align_corners=True instead pins the first and last pixels onto each other: dst samples
    dst * (in - 1) / (out - 1), so the corners are copied exactly and the scale is
    slightly more than s.

    Above, the hand-made rule and nn.Upsample agree to the last bit, in 1-D and separably
    on a 3x5 map up-sampled x4 in all three modes.
""")


# %% [markdown]
# ## 2. Transposed convolution, three ways
#
# A transposed convolution computed three ways that agree: zero insertion then a
# convolution, the adjoint of a convolution, and a convolution's input gradient.

# %%
lesson.heading("2. Transposed convolution, three ways")

N, C_IN, C_OUT, K, S, P = 2, 3, 2, 4, 2, 1
weight = on_device(host.standard_normal((C_IN, C_OUT, K, K)))  # PyTorch's layout for it
coarse = on_device(host.standard_normal((N, C_IN, 5, 5)))
layer = nn.ConvTranspose2d(C_IN, C_OUT, K, stride=S, padding=P, bias=False,
                           device=lesson.device, dtype="float64")
layer.weight.data[...] = weight
reference = layer(coarse)


def stretch_then_convolve(x, weight, stride, padding):
    """Transposed convolution as an ordinary convolution of a stretched input.

    1. Insert ``stride - 1`` zeros between neighbouring pixels, along rows and columns.
    2. Pad by K - 1 - padding on every side, so that the kernel meets every input pixel in
       every one of its K x K positions.
    3. Convolve with stride 1 and the kernel flipped in both directions, its in/out
       channels swapped: (C_in, C_out, K, K) -> (C_out, C_in, K, K).
    """
    N, C, H, W = x.shape
    K = weight.shape[2]
    stretched = xp.zeros((N, C, (H - 1) * stride + 1, (W - 1) * stride + 1), dtype=x.dtype)
    stretched[:, :, ::stride, ::stride] = x
    edge = K - 1 - padding
    framed = xp.pad(stretched, ((0, 0), (0, 0), (edge, edge), (edge, edge)))
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    y, _ = conv2d_forward(framed, xp.ascontiguousarray(flipped))
    return y, stretched


way_a, stretched = stretch_then_convolve(coarse, weight, S, P)

# (b) The adjoint: a convolution from C_OUT to C_IN channels with the same weight array.
conv = nn.Conv2d(C_OUT, C_IN, K, stride=S, padding=P, bias=False, device=lesson.device,
                 dtype="float64")
conv.weight.data[...] = weight
fine = on_device(host.standard_normal(tuple(reference.shape)))
lhs = float((conv(fine) * coarse).sum())          # <conv(x), y>
rhs = float((fine * layer(coarse)).sum())         # <x, conv_T(y)>

# (c) The gradient of that convolution with respect to its input, for upstream grad y.
_, cache = conv2d_forward(fine, weight, stride=S, padding=P)
way_c, _, _ = conv2d_backward(coarse, cache, output_mask=(True, False, False))

naive = conv_transpose2d_naive(coarse, weight, stride=S, padding=P)
print(f"  ConvTranspose2d({C_IN}, {C_OUT}, kernel_size={K}, stride={S}, padding={P}) on "
      f"{tuple(coarse.shape)} -> {tuple(reference.shape)}")
print(f"    (a) zeros inserted ({tuple(stretched.shape[2:])}), padded, flipped-kernel "
      f"convolution: max difference {max_difference(way_a, reference):.1e}")
print(f"    (b) <conv(x), y> = {lhs:.12f}\n"
      f"        <x, conv_T(y)> = {rhs:.12f}   (relative difference "
      f"{abs(lhs - rhs) / abs(lhs):.1e})")
print(f"    (c) conv2d_backward's dx for upstream gradient y: max difference "
      f"{max_difference(way_c, reference):.1e}")
print(f"    library's loop reference, conv_transpose2d_naive: max difference "
      f"{max_difference(naive, reference):.1e}")
print()
assert tuple(way_a.shape) == tuple(reference.shape) == (N, C_OUT, 10, 10), way_a.shape
assert max_difference(way_a, reference) < 1e-12, "(a) stretch + convolve"
assert abs(lhs - rhs) < 1e-12 * abs(lhs), f"(b) adjoint: {lhs} vs {rhs}"
assert max_difference(way_c, reference) < 1e-12, "(c) the convolution's input gradient"
assert max_difference(naive, reference) < 1e-12, "the library's naive reference"


def operator_matrix(layer, in_shape):
    """The matrix of a linear layer: column j is the layer applied to the j-th unit image."""
    count = int(np.prod(in_shape))
    units = on_device(np.eye(count).reshape(count, *in_shape))
    return host_array(layer(units)).reshape(count, -1).T


# One channel, small enough to look at: conv 6x6 -> 3x3 and the transposed conv 3x3 -> 6x6.
conv_1 = nn.Conv2d(1, 1, 4, stride=2, padding=1, bias=False, device=lesson.device,
                   dtype="float64")
transposed_1 = nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1, bias=False,
                                  device=lesson.device, dtype="float64")
transposed_1.weight.data[...] = conv_1.weight.data
conv_matrix = operator_matrix(conv_1, (1, 6, 6))
transposed_matrix = operator_matrix(transposed_1, (1, 3, 3))
assert conv_matrix.shape == (9, 36) and transposed_matrix.shape == (36, 9)
assert np.allclose(transposed_matrix, conv_matrix.T, rtol=0, atol=1e-15), "matrix transpose"

lesson.say(f"""
    A transposed convolution is the learnable up-sampler of the FCN paper. (a) says what
    it does: spread the input out by inserting {S - 1} zero row(s) and column(s) between its
    pixels ({tuple(coarse.shape[2:])} -> {tuple(stretched.shape[2:])}), pad, and run an
    ordinary stride-1 convolution with the kernel flipped; the convolution fills the holes
    with weighted sums of the neighbouring input pixels. (Older papers call it a
    "deconvolution"; it does not undo a convolution.)

    (b) says where its name comes from. A convolution is a linear map, a matrix M: with one
    channel, a 4x4 stride-2 convolution from 6x6 to 3x3 is a
    {conv_matrix.shape[0]}x{conv_matrix.shape[1]} matrix. The transposed convolution with
    the same kernel is exactly M transposed,
    {transposed_matrix.shape[0]}x{transposed_matrix.shape[1]}: it maps the small map back
    to the large one's shape (see the figure). A matrix and its
    transpose satisfy <Mx, y> = <x, M^T y> for all x and y, checked above with random
    multi-channel arrays.

    (c) says how to compute it. The backward pass of a convolution multiplies the upstream
    gradient by M^T (lesson 02). So a transposed convolution's forward IS a convolution's
    backward, and minifcn computes it with the same code; its backward is a convolution's
    forward. That is also why its weight has PyTorch's layout (C_in, C_out, K, K): it is
    the weight of the convolution from C_out to C_in that it transposes.
""")


def save_matrix_figure(path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), gridspec_kw={"width_ratios": [4, 1.2]})
    limit = np.abs(conv_matrix).max()
    for ax, matrix, title in ((axes[0], conv_matrix, "Conv2d(k=4, s=2, p=1): 6x6 -> 3x3\n"
                                                       "matrix M, 9 x 36"),
                              (axes[1], transposed_matrix, "ConvTranspose2d, same kernel:\n"
                                                           "3x3 -> 6x6, 36 x 9 = M^T")):
        shown = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("input pixel (flattened)")
        ax.set_ylabel("output pixel (flattened)")
    fig.colorbar(shown, ax=axes, fraction=0.03, pad=0.02, label="weight")
    fig.suptitle("A strided convolution and its transposed convolution are a matrix and its "
                 "transpose")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


path = lesson.figure("conv_and_transposed_matrices.png")
save_matrix_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 3. Output size and output_padding
#
# The output size of a transposed convolution, and what `output_padding` is for.

# %%
lesson.heading("3. Output size and output_padding")

down = nn.Conv2d(1, 1, 3, stride=2, padding=1, device=lesson.device)
sizes_down = {n: down(on_device(np.zeros((1, 1, n, n)), np.float32)).shape[2] for n in (7, 8)}
up = nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, device=lesson.device)
up_padded = nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1,
                               device=lesson.device)
four = on_device(np.zeros((1, 1, 4, 4)), np.float32)
size_up, size_up_padded = up(four).shape[2], up_padded(four).shape[2]
size_asked = up(four, output_size=(8, 8)).shape[2]
lesson.say(f"""
    A convolution with stride S takes H to floor((H + 2P - K) / S) + 1, and the floor
    forgets: Conv2d(k=3, s=2, p=1) maps 7 to {sizes_down[7]} and 8 to {sizes_down[8]}. The
    transposed convolution with the same arguments returns the SMALLEST size that maps to
    its input, (H - 1) S - 2P + K = {size_up} for H = 4. The other candidates are reached
    with output_padding, extra rows and columns at the bottom and right:
    output_padding=1 gives {size_up_padded}. (Or pass output_size=(8, 8) to forward and
    the layer picks output_padding itself: {size_asked}.) In a decoder that must land
    exactly on the size of a skip connection's map, that one row matters. Padding, on the
    other hand, CROPS a transposed convolution's output: P rows from each side.
""")
assert sizes_down[7] == sizes_down[8] == 4, f"7 and 8 both go to 4: {sizes_down}"
assert size_up == 7 and size_up_padded == 8 and size_asked == 8, (size_up, size_up_padded)


# %% [markdown]
# ## 4. The up-samplers side by side
#
# FCN's up-sampling layer (kernel 2s, stride s) with a bilinear kernel and with a random
# kernel of the same total weight, compared.

# %%
lesson.heading("4. The up-samplers side by side")

minifcn.manual_seed(0)
SCALE = 8
figure_set = Shapes(40, image_size=64, seed=1, void_band=False)
# The image with the most classes in it makes the most telling picture.
pick = int(np.argmax([len(np.unique(mask)) for mask in figure_set.masks]))
image = on_device(figure_set.images[pick:pick + 1], np.float32)
one_hot = on_device((figure_set.masks[pick] == np.arange(4)[:, None, None])[None],
                    np.float32)
pool = nn.AvgPool2d(SCALE)
# A perfect coarse "score map": the fraction of each class in each 8x8 cell.
coarse_image, coarse_scores = pool(image), pool(one_hot)


def transposed_upsampler(channels, kernel):
    """Kernel 2s, stride s, padding s/2 (the FCN's up-sampling layer, lesson 07), with the
    same ``kernel`` (2s, 2s) for every channel and no mixing between channels."""
    layer = nn.ConvTranspose2d(channels, channels, 2 * SCALE, stride=SCALE,
                               padding=SCALE // 2, bias=False, device=lesson.device)
    weight = np.zeros((channels, channels, 2 * SCALE, 2 * SCALE))
    weight[range(channels), range(channels)] = kernel
    layer.weight.data[...] = on_device(weight, np.float32)
    return layer


# A random positive kernel, scaled so that on average an output pixel receives as much
# weight as bilinear interpolation gives it (1): what differs is only its shape.
random_kernel = host.random((2 * SCALE, 2 * SCALE))
random_kernel *= SCALE**2 / random_kernel.sum()
bilinear_kernel = np.zeros((1, 1, 2 * SCALE, 2 * SCALE))
init.bilinear_(bilinear_kernel)

upsamplers = {
    "nearest": lambda c: nn.Upsample(scale_factor=SCALE, mode="nearest"),
    "bilinear": lambda c: nn.Upsample(scale_factor=SCALE, mode="bilinear"),
    "bilinear,\nalign_corners=True": lambda c: nn.Upsample(scale_factor=SCALE,
                                                            mode="bilinear",
                                                            align_corners=True),
    "transposed conv,\nrandom kernel": lambda c: transposed_upsampler(c, random_kernel),
    "transposed conv,\nbilinear kernel": lambda c: transposed_upsampler(c,
                                                                       bilinear_kernel[0, 0]),
}
pictures = {name: (host_array(make(3)(coarse_image))[0], host_array(make(4)(coarse_scores))[0])
            for name, make in upsamplers.items()}
for name, (picture, scores) in pictures.items():
    assert picture.shape == (3, 64, 64) and scores.shape == (4, 64, 64), name


def save_upsamplers_figure(path):
    columns = ["8x8 input"] + list(pictures)
    fig, axes = plt.subplots(3, len(columns), figsize=(2.5 * len(columns), 8.2))
    rows = [(host_array(coarse_image)[0], host_array(coarse_scores)[0])] + list(
        pictures.values())
    for column, (title, (picture, scores)) in enumerate(zip(columns, rows, strict=True)):
        axes[0, column].imshow(np.clip(picture.transpose(1, 2, 0), 0, 1),
                               interpolation="nearest")
        shown = axes[1, column].imshow(scores[1], cmap="magma", vmin=0, vmax=1,
                                       interpolation="nearest")
        axes[2, column].imshow(colorize(scores.argmax(axis=0), PALETTE),
                               interpolation="nearest")
        axes[0, column].set_title(title, fontsize=10)
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("'circle' score")
    axes[2, 0].set_ylabel("arg-max class")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes[1, :], fraction=0.015, pad=0.01)
    fig.suptitle(f"Up-sampling x{SCALE} from an 8x8 grid (of a 64x64 image and of its perfect "
                 f"class fractions)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


path = lesson.figure("upsamplers.png")
save_upsamplers_figure(path)
lesson.saved(path)
bilinear_kernel_error = max_difference(
    pictures["transposed conv,\nbilinear kernel"][0][:, 8:-8, 8:-8],
    pictures["bilinear"][0][:, 8:-8, 8:-8])
lesson.say(f"""
    The figure puts them side by side on an 8x8 grid up-sampled x{SCALE}: nearest gives
    blocks, bilinear gives smooth ramps (align_corners=True stretches the grid slightly so
    its corners land on the image's corners), and a transposed convolution paints a
    16x16 copy of its kernel, scaled by each input pixel, every 8 pixels, and sums the
    overlaps. With a random (positive) kernel, that stamps the kernel's texture all over
    the output, repeating every 8 pixels; with the bilinear kernel of lesson 07 it is
    bilinear interpolation again (away from the border, where its missing neighbours count as
    zeros; here the largest interior difference is {bilinear_kernel_error:.1e}). A learned
    transposed convolution can start as interpolation and improve on it.
""")
assert bilinear_kernel_error < 1e-5, f"bilinear kernel vs Upsample: {bilinear_kernel_error}"


# %% [markdown]
# ## 5. How far does bilinear interpolation go? x2 to x32, measured
#
# Down-sample a mask, interpolate it back up, and measure what survives, from x2 to x32.

# %%
lesson.heading("5. How far does bilinear interpolation go? x2 to x32, measured")

COUNT, SIDE = (12 if lesson.quick else 48), 128
FACTORS = (2, 4, 8, 16, 32)
masks = Shapes(COUNT, image_size=SIDE, seed=2, void_band=False).masks
fractions = on_device((masks[:, None] == np.arange(4)[None, :, None, None]), np.float32)
truth = on_device(masks, np.int64)


def round_trip_iou(factor, mode):
    """Mean IoU after taking the masks' exact class fractions on a grid ``factor`` times
    coarser (what a perfect encoder could say) back to full size by ``mode``."""
    coarse = nn.AvgPool2d(factor)(fractions)
    scores = nn.Upsample(scale_factor=factor, mode=mode)(coarse)
    confusion = ConfusionMatrix(4, ignore_index=None)
    confusion.update(scores.argmax(axis=1), truth)
    return confusion.compute()["mean_iou"]


ious = {mode: [round_trip_iou(f, mode) for f in FACTORS] for mode in ("nearest", "bilinear")}
print(f"  {COUNT} masks of {SIDE}x{SIDE}: class fractions on a grid s times coarser, then "
      f"up-sampled x s")
print("  s               " + "".join(f"{f:>8}" for f in FACTORS))
print("  grid            " + "".join(f"{SIDE // f:>5}x{SIDE // f:<2}" for f in FACTORS))
for mode, values in ious.items():
    print(f"  {mode:<16}" + "".join(f"{v:8.3f}" for v in values))
print()
bilinear = dict(zip(FACTORS, ious["bilinear"], strict=True))
lost = {f: 1.0 - iou for f, iou in bilinear.items()}
growth = [lost[2 * f] / lost[f] for f in (4, 8, 16)]  # per doubling, from x4 on
lesson.say(f"""
    The seed text claims bilinear interpolation "works reasonably well up to x4 or x8",
    not beyond. To test the up-sampler alone, give it the best possible coarse map: the
    exact fraction of each class in each s x s cell (lesson 03 did the same at 64 px;
    here the images are {SIDE}x{SIDE}, so even x32 leaves a {SIDE // 32}x{SIDE // 32}
    grid rather than 2x2). Bilinear up-sampling, then the arg-max class, keeps a mean IoU
    of {bilinear[4]:.3f} at x4 and {bilinear[8]:.3f} at x8: corners are rounded off, the
    shapes are there. From there, what is lost grows {min(growth):.1f} to {max(growth):.1f}x
    with every doubling: {bilinear[16]:.2f} at x16 and {bilinear[32]:.2f} at x32, the FCN
    encoder's stride, where {lost[32] / lost[4]:.0f}x more of the mean IoU is lost than at
    x4: objects smaller than a cell turn into blobs or vanish. Interpolation cannot invent
    the detail the coarse grid never had. (Nearest-neighbour copying is worse at every
    factor.) Hence
    the FCN's learned up-sampling (lesson 07) and its skip connections from finer layers.
""")
assert bilinear[4] > 0.95 and bilinear[8] > 0.9, f"x4 and x8 still work: {bilinear}"
assert bilinear[32] < 0.8 and lost[32] > 8 * lost[4], f"x32 should be far worse: {bilinear}"
assert all(a > b for a, b in pairwise(ious["bilinear"])), f"worse at every factor: {bilinear}"
assert all(2.0 < g < 4.0 for g in growth), f"the loss per doubling: {growth}"
assert all(b > n for b, n in zip(ious["bilinear"], ious["nearest"], strict=True)), ious


def save_factor_figure(path):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for mode, values in ious.items():
        ax.plot(FACTORS, values, "o-", label=mode)
    ax.set_xscale("log", base=2)
    ax.set_xticks(FACTORS, [f"x{f}" for f in FACTORS])
    ax.set_ylim(0, 1)
    ax.set_xlabel("up-sampling factor s (the coarse grid is s times smaller)")
    ax.set_ylabel("mean IoU after the round trip")
    ax.axvspan(1.7, 8.5, color="tab:green", alpha=0.08, label="the seed's 'works reasonably well'")
    ax.set_title(f"Perfect coarse class fractions, up-sampled back ({SIDE}x{SIDE} masks)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("bilinear_by_factor.png")
save_factor_figure(path)
lesson.saved(path)

lesson.done()
