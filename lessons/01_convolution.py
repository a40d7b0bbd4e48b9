"""Lesson 01: Convolution as feature extraction

What this lesson teaches:
- what one output pixel of a convolution is: the dot product of a kernel with one window
  of the input;
- the same thing done for every pixel with loops, and then with im2col + ONE matrix
  product, which is how minifcn (and every fast library) computes it; they agree;
- why the matrix product wins (measured), and what it costs in memory (9x the input for a
  3x3 kernel);
- what hand-set kernels extract from a toy image: edges, blobs, smoothed colour;
- the output-size formula with padding, stride and dilation, checked against the layer;
- PyTorch's layout: input (N, C, H, W), weight (out_channels, in_channels, KH, KW).

This is the first lesson: it needs nothing but minifcn. Every number it prints is
checked by an assert, so a lesson that stops being true fails.

Run: python lessons/01_convolution.py [--quick] [--out DIR] [--device gpu]
"""

import os
import time

# One BLAS thread, set before NumPy loads. On a busy shared machine a second BLAS thread has
# to wait for a free core at every matrix product: measured 35-40 ms per product instead of
# 0.4 ms, which would swamp every timing below. (Remove this line on an idle machine.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import minifcn
from minifcn import course, nn
from minifcn.data import Shapes
from minifcn.functional.conv import conv2d_naive
from minifcn.functional.im2col import im2col

lesson = course.start(__doc__, exercises=["conv2d_naive", "im2col", "conv2d"])
xp = lesson.xp
host = np.random.default_rng(0)  # every random input of this lesson comes from here


def conv_layer(in_channels, out_channels, kernel_size, dtype="float64", **options):
    """A minifcn Conv2d on the lesson's device (float64 by default: exact comparisons)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, device=lesson.device, dtype=dtype,
                     **options)


def max_abs_diff(a, b) -> float:
    return float(np.abs(minifcn.to_numpy(a) - minifcn.to_numpy(b)).max())


# %% [markdown]
# ## 1. One output pixel is one dot product
#
# A convolution slides a small kernel over the image; each output pixel is the dot product
# of the kernel with the window under it. We compute one by hand and compare it with
# `Conv2d`.

# %%
lesson.heading("1. One output pixel is one dot product")

image = np.arange(25, dtype=np.float64).reshape(5, 5)  # a 5x5 one-channel "image"
kernel = np.array([[1.0, 0.0, -1.0],
                   [2.0, 0.0, -2.0],
                   [1.0, 0.0, -1.0]])  # Sobel: responds to left-right changes
window = image[1:4, 2:5]  # the 3x3 window whose top-left corner is at row 1, column 2
by_hand = float((window * kernel).sum())

conv = conv_layer(1, 1, 3, bias=False)
conv.weight.data[...] = lesson.asarray(kernel.reshape(1, 1, 3, 3))
y = minifcn.to_numpy(conv(lesson.asarray(image.reshape(1, 1, 5, 5))))
lesson.say(f"""
    A convolution slides a small kernel over the image. At each position it multiplies the
    kernel with the window under it, entry by entry, and adds up the products: one number,
    one output pixel. For the 5x5 image 0..24 and a 3x3 Sobel kernel, the window at row 1,
    column 2 is {window.astype(int).tolist()}; its dot product with the kernel is
    {by_hand:g}. Conv2d(1, 1, 3) with that kernel as its weight outputs a
    {y.shape[2]}x{y.shape[3]} map (a 3x3 window fits 3 times along each side of 5 pixels)
    whose pixel (1, 2) is {y[0, 0, 1, 2]:g}.

    Like PyTorch's, minifcn's "convolution" does not flip the kernel (mathematicians call
    that cross-correlation); a learned kernel does not care which way round it is stored.
""")
assert y.shape == (1, 1, 3, 3), f"a 3x3 kernel fits 3x3 times in a 5x5 image, got {y.shape}"
assert y[0, 0, 1, 2] == by_hand, f"Conv2d gave {y[0, 0, 1, 2]}, the dot product {by_hand}"
# Every pixel of this image grows by 1 to the right, so every window sees the same slope.
assert np.all(y == -8.0), f"a constant left-right slope of 1 gives -8 everywhere, got {y}"


# %% [markdown]
# ## 2. Every pixel: a loop, then im2col and one matrix product
#
# The same for every pixel: first with two loops, then the way minifcn does it, copying
# every window into a column of one matrix (im2col) and multiplying by the reshaped weight
# once.

# %%
lesson.heading("2. Every pixel: a loop, then im2col and one matrix product")


def convolve_loop(image, kernel):
    """One channel, stride 1, no padding: one dot product per output pixel, in a loop."""
    KH, KW = kernel.shape
    OH, OW = image.shape[0] - KH + 1, image.shape[1] - KW + 1
    out = xp.zeros((OH, OW), dtype=image.dtype)
    for row in range(OH):
        for col in range(OW):
            out[row, col] = (image[row:row + KH, col:col + KW] * kernel).sum()
    return out


small = host.standard_normal((12, 12))
small_kernel = host.standard_normal((3, 3))
loop_out = convolve_loop(lesson.asarray(small), lesson.asarray(small_kernel))
conv = conv_layer(1, 1, 3, bias=False)
conv.weight.data[...] = lesson.asarray(small_kernel.reshape(1, 1, 3, 3))
layer_out = conv(lesson.asarray(small.reshape(1, 1, 12, 12)))[0, 0]
loop_error = max_abs_diff(loop_out, layer_out)

# The general case: a batch, several input and output channels, padding. The library's
# conv2d_naive is the same loop (over output pixels and kernel offsets) for that case.
N, C, F, H = 2, 3, 4, 8
x = lesson.asarray(host.standard_normal((N, C, H, H)))
conv = conv_layer(C, F, 3, padding=1)
weight, bias = conv.weight.data, conv.bias.data
cols = im2col(x, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1))
y_gemm = (weight.reshape(F, C * 3 * 3) @ cols).reshape(F, N, H, H).transpose(1, 0, 2, 3)
y_gemm = y_gemm + bias.reshape(1, F, 1, 1)
y_naive = conv2d_naive(x, weight, bias, padding=1)
y_layer = conv(x)
gemm_error, layer_error = max_abs_diff(y_gemm, y_naive), max_abs_diff(y_layer, y_naive)

# Column (n, oh, ow) of cols is the window under output pixel (oh, ow) of image n, flattened.
x_padded = np.pad(minifcn.to_numpy(x), ((0, 0), (0, 0), (1, 1), (1, 1)))
n, oh, ow = 1, 5, 2
column = minifcn.to_numpy(cols)[:, n * H * H + oh * H + ow]
expected_column = x_padded[n, :, oh:oh + 3, ow:ow + 3].ravel()
memory_ratio = cols.nbytes / x.nbytes

lesson.say(f"""
    A two-loop convolution of a 12x12 image matches Conv2d to {loop_error:.1e} (float64).

    im2col ("image to columns") copies every window into a column of one matrix. For a batch
    x of shape {tuple(x.shape)} and a 3x3 kernel with padding 1 it has C*KH*KW = {C}*3*3 =
    {cols.shape[0]} rows (one per kernel entry) and N*OH*OW = {N}*{H}*{H} = {cols.shape[1]}
    columns (one per output pixel of the whole batch). The weight (F, C, KH, KW) =
    {tuple(weight.shape)}, reshaped to {F}x{C * 9}, times cols computes EVERY output
    pixel of every image and channel in ONE matrix product: {F}x{C * 9} @ {C * 9}x{N * H * H}
    = {F}x{N * H * H}, reshaped to (N, F, OH, OW). It agrees with the loop reference
    conv2d_naive to {gemm_error:.1e}, and Conv2d (which does exactly this) to
    {layer_error:.1e}.

    The price is memory: each input pixel is copied into up to 9 windows, so cols holds
    {memory_ratio:.0f}x the input ({cols.nbytes:,} bytes for a {x.nbytes:,}-byte input). At
    a realistic layer (batch 16, 64 channels, 64x64, float32) that is
    {16 * 64 * 9 * 64 * 64 * 4 / 2**20:.0f} MiB for a {16 * 64 * 64 * 64 * 4 / 2**20:.0f}
    MiB input, which is why minifcn splits large batches under a memory budget.
""")
assert loop_error < 1e-12, f"the loop and Conv2d disagree by {loop_error}"
assert cols.shape == (C * 9, N * H * H), f"im2col shape {cols.shape}"
assert np.array_equal(column, expected_column), "a column of cols is not its window"
assert gemm_error < 1e-12, f"im2col + GEMM and the loop disagree by {gemm_error}"
assert layer_error < 1e-12, f"Conv2d and the loop disagree by {layer_error}"
assert memory_ratio == 9.0, f"3x3, stride 1, padding 1: cols is 9x the input, got {memory_ratio}"


def save_im2col_figure(path):
    """A 6x6 image, the 9 x 16 matrix of its 3x3 windows, one window highlighted."""
    tiny = np.arange(36, dtype=np.float64).reshape(1, 1, 6, 6)
    tiny_cols = minifcn.to_numpy(im2col(lesson.asarray(tiny), (3, 3), (1, 1), (0, 0), (1, 1)))
    fig, (ax_image, ax_cols) = plt.subplots(1, 2, figsize=(13, 4.6),
                                            gridspec_kw={"width_ratios": [1, 2]})
    ax_image.imshow(tiny[0, 0], cmap="viridis")
    for r in range(6):
        for c in range(6):
            ax_image.text(c, r, f"{int(tiny[0, 0, r, c])}", ha="center", va="center",
                          color="white", fontsize=8)
    ax_image.add_patch(plt.Rectangle((0.5, 1.5), 3, 3, fill=False, edgecolor="red", lw=2))
    ax_image.set_title("6x6 image: window of output pixel (2, 1)")
    ax_image.set_xticks([])
    ax_image.set_yticks([])
    ax_cols.imshow(tiny_cols, cmap="viridis", aspect="auto")
    for r in range(9):
        for c in range(16):
            ax_cols.text(c, r, f"{int(tiny_cols[r, c])}", ha="center", va="center",
                         color="white", fontsize=7)
    highlighted = 2 * 4 + 1  # output pixel (2, 1) of the 4x4 output
    ax_cols.add_patch(plt.Rectangle((highlighted - 0.5, -0.5), 1, 9, fill=False,
                                    edgecolor="red", lw=2))
    ax_cols.set_title("im2col: one column per output pixel, one row per kernel entry")
    ax_cols.set_xlabel("output pixel (oh, ow), 4 x 4 = 16 columns")
    ax_cols.set_ylabel("kernel entry (i, j), 3 x 3 = 9 rows")
    ax_cols.set_yticks(range(9), [f"({i},{j})" for i in range(3) for j in range(3)])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


path = lesson.figure("im2col.png")
save_im2col_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 3. Why one matrix product is fast
#
# The loop and the matrix product do the same arithmetic; timing both shows what handing it
# all to BLAS buys.

# %%
lesson.heading("3. Why one matrix product is fast")


def best_time(fn, repeats):
    """The fastest of ``repeats`` runs (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        minifcn.to_numpy(fn())  # to the host: on a GPU this also waits for the result
        times.append(time.perf_counter() - start)
    return min(times)


N, C, F, H = (2, 8, 8, 16) if lesson.quick else (8, 16, 16, 32)
x = lesson.asarray(host.standard_normal((N, C, H, H)).astype(np.float32))
conv = conv_layer(C, F, 3, dtype="float32", padding=1)
naive_seconds = best_time(lambda: conv2d_naive(x, conv.weight.data, conv.bias.data,
                                               padding=1), repeats=2)
gemm_seconds = best_time(lambda: conv(x), repeats=7)
speedup = naive_seconds / gemm_seconds
flops = 2 * N * F * C * 9 * H * H  # one multiply and one add per weight per output pixel
print(f"""\
  one float32 forward pass of a 3x3 convolution, batch {N}, {C} -> {F} channels, {H}x{H}
  pixels ({flops / 1e6:.1f} million floating-point operations), fastest of a few runs:
    loop over output pixels and kernel offsets (conv2d_naive): {naive_seconds * 1e3:8.2f} ms
    im2col + one matrix product (Conv2d):                      {gemm_seconds * 1e3:8.2f} ms
    speed-up: {speedup:.0f}x ({flops / gemm_seconds / 1e9:.1f} GFLOP/s for Conv2d)
""")
lesson.say(f"""
    The arithmetic is the same. The loop pays Python's overhead once per pixel and kernel
    offset ({H * H * 9:,} small products); the matrix product hands all of it to BLAS, which
    keeps the data in cache and runs vectorised machine code. A GPU is the same story, more
    so.
""")
minimum_speedup = 5 if lesson.quick else 10  # measured 100-500x on a loaded 2-core machine
assert speedup > minimum_speedup, (
    f"im2col + GEMM should be at least {minimum_speedup}x faster than the loop, "
    f"measured {speedup:.1f}x")


# %% [markdown]
# ## 4. What kernels extract: feature maps of a toy image
#
# Hand-set 3x3 kernels (edges, outlines, smoothing) in one `Conv2d`, applied to the toy
# images the course segments: a kernel responds where the window looks like it.

# %%
lesson.heading("4. What kernels extract: feature maps of a toy image")

count = 4 if lesson.quick else 16
noisy = Shapes(count, image_size=64, seed=1)
clean = Shapes(count, image_size=64, seed=1, noise=0.0)  # the same images without noise

# Weight layout (out_channels, in_channels, KH, KW), as PyTorch's. First a 1x1 convolution:
# it mixes the channels of each pixel, here into grey (the mean of R, G and B).
to_grey = conv_layer(3, 1, 1, dtype="float32", bias=False)
to_grey.weight.data[...] = 1.0 / 3.0

sobel_x = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float32)
KERNELS = {
    "vertical edges (Sobel x)": sobel_x,
    "horizontal edges (Sobel y)": sobel_x.T,
    "blobs and outlines (Laplacian)": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]],
                                               dtype=np.float32),
    "smoothing (3x3 mean)": np.full((3, 3), 1.0 / 9.0, dtype=np.float32),
}
bank = conv_layer(1, len(KERNELS), 3, dtype="float32", padding=1, bias=False)
bank.weight.data[...] = lesson.asarray(np.stack(list(KERNELS.values()))[:, None])


def feature_maps(images):
    """(N, 3, H, W) host images -> (N, 4, H, W) host responses of the kernel bank."""
    return minifcn.to_numpy(bank(to_grey(lesson.asarray(images))))


maps = feature_maps(noisy.images)
clean_maps = feature_maps(clean.images)
edge_strength = np.hypot(maps[:, 0], maps[:, 1])  # gradient magnitude from Sobel x and y

# Object outlines are the masks' void band (255). Pixels 3 or more away from any outline
# lie inside a flat region: a 7x7 max-pool of the outline indicator marks the rest. The
# image's own border is left out: against the zero padding around it, it IS an edge.
outline = (noisy.masks == 255).astype(np.float32)[:, None]
near_outline = nn.MaxPool2d(7, stride=1, padding=3)(lesson.asarray(outline))
flat = minifcn.to_numpy(near_outline)[:, 0] == 0
flat[:, [0, -1], :] = flat[:, :, [0, -1]] = False
on_edges = float(edge_strength[outline[:, 0] == 1].mean())
in_flat = float(edge_strength[flat].mean())

# A mean of 9 pixels divides independent noise by sqrt(9) = 3 (the contrast of the shapes
# themselves survives it almost everywhere, being smooth): compare with the noise-free image.
grey_noise = minifcn.to_numpy(to_grey(lesson.asarray(noisy.images - clean.images)))[:, 0]
smoothed_noise = maps[:, 3] - clean_maps[:, 3]
inner = (slice(None), slice(1, -1), slice(1, -1))  # the border pixels also average padding
noise_reduction = float(smoothed_noise[inner][flat[inner]].std()
                        / grey_noise[inner][flat[inner]].std())

lesson.say(f"""
    A kernel is a pattern detector: the output is large where the window looks like the
    kernel. Four hand-set 3x3 kernels sit in ONE Conv2d(1, 4, 3, padding=1) whose weight has
    shape {tuple(bank.weight.shape)} = (out_channels, in_channels, KH, KW): output channel k
    is kernel k applied to the single input channel. Before it, a 1x1 Conv2d(3, 1, 1) with
    weights 1/3 turns RGB into grey: a 1x1 convolution mixes channels pixel by pixel.
""")
print(f"""\
  on {count} toy images (64x64, pixel noise 0.05):
    edge strength |Sobel| on the object outlines:                 {on_edges:.3f}
    edge strength in flat regions (>= 3 px from any outline):     {in_flat:.3f} \
({on_edges / in_flat:.1f}x less)
      (the image's border also lights up: zero padding puts black around the image)
    pixel noise left by the 3x3 mean kernel:                      {noise_reduction:.2f} \
(1/3 expected)
""")
lesson.say("""
    A network does not get its kernels by hand: it learns them, and the first layer of a
    trained CNN typically ends up with edge and colour detectors much like these. Stacking
    convolutions then builds detectors of patterns of patterns.
""")
assert on_edges > 3 * in_flat, (
    f"Sobel responses should be far stronger on outlines ({on_edges:.3f}) than in flat "
    f"regions ({in_flat:.3f})")
assert 0.25 < noise_reduction < 0.42, (
    f"a 3x3 mean should cut independent noise about 3x, it kept {noise_reduction:.2f}")


def save_feature_figure(path, index=0):
    """Image ``index``: its mask, its grey version and the four feature maps."""
    from minifcn.data import PALETTE, colorize

    grey = minifcn.to_numpy(to_grey(lesson.asarray(noisy.images[index:index + 1])))[0, 0]
    names = list(KERNELS)
    panels = [("image", noisy.images[index].transpose(1, 2, 0), None),
              ("mask (cream: outline band)", colorize(noisy.masks[index], PALETTE), None),
              ("grey input (1x1 convolution)", grey, "gray"),
              (names[3], maps[index, 3], "gray"),
              (names[0], maps[index, 0], "RdBu_r"),
              (names[1], maps[index, 1], "RdBu_r"),
              (names[2], maps[index, 2], "RdBu_r"),
              ("edge strength sqrt(Sx^2 + Sy^2)", edge_strength[index], "magma")]
    fig, axes = plt.subplots(2, 4, figsize=(15, 7.4))
    for ax, (title, picture, cmap) in zip(axes.flat, panels, strict=True):
        # Colour limits from the inside of the map: the zero-padded border would swamp them.
        inside = picture[1:-1, 1:-1]
        if cmap == "RdBu_r":  # signed responses: white is zero
            limit = float(np.abs(inside).max())
            shown = ax.imshow(picture, cmap=cmap, vmin=-limit, vmax=limit)
        elif cmap is not None:
            shown = ax.imshow(picture, cmap=cmap, vmin=float(inside.min()),
                              vmax=float(inside.max()))
        else:
            shown = ax.imshow(picture)
        if cmap is not None:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("What hand-set 3x3 kernels extract from a toy image (one Conv2d(1, 4, 3) "
                 "on the grey image)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("feature_maps.png")
save_feature_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 5. Output size: padding, stride, dilation
#
# The output-size formula, checked against the layer for padding, stride and dilation.

# %%
lesson.heading("5. Output size: padding, stride, dilation")


def output_size(H, K, S=1, P=0, D=1):
    """Along one axis: a dilated kernel spans D*(K-1)+1 pixels; it fits at every S-th
    position of the padded input H + 2P."""
    return (H + 2 * P - D * (K - 1) - 1) // S + 1


H = 33
x = lesson.asarray(host.standard_normal((1, 2, H, H)))
SETTINGS = [  # (kernel_size, stride, padding, dilation)
    (3, 1, 0, 1), (3, 1, 1, 1), (5, 1, 2, 1), (3, 2, 1, 1), (4, 2, 1, 1),
    (7, 3, 3, 1), (3, 1, 2, 2), (3, 2, 0, 3), (1, 1, 0, 1),
]
lesson.say("""
    OH = floor((H + 2*P - D*(K - 1) - 1) / S) + 1 along each axis. Padding P = (K-1)/2 with
    stride 1 keeps the size ("same"); stride S divides it by about S, the sub-sampling the
    next lessons are about; dilation D spreads the kernel's taps D pixels apart, so it sees
    a wider window with no more weights.
""")
print(f"  input {H}x{H}")
print("  kernel stride padding dilation   formula   Conv2d output")
for K, S, P, D in SETTINGS:
    predicted = output_size(H, K, S, P, D)
    shape = tuple(conv_layer(2, 3, K, stride=S, padding=P, dilation=D)(x).shape)
    print(f"  {K:>6} {S:>6} {P:>7} {D:>8}   {predicted:>7}   {shape}")
    assert shape == (1, 3, predicted, predicted), (
        f"K={K} S={S} P={P} D={D}: formula says {predicted}, Conv2d gave {shape}")
same = tuple(conv_layer(2, 3, 5, padding="same")(x).shape)
print(f"  padding='same' with a 5x5 kernel: {same}")
assert same == (1, 3, H, H), f"padding='same' keeps the size, got {same}"


# %% [markdown]
# ## 6. PyTorch's layout
#
# minifcn keeps PyTorch's layouts: input (N, C, H, W), weight (out_channels, in_channels,
# KH, KW), and the same `state_dict` keys.

# %%
lesson.heading("6. PyTorch's layout")

conv = conv_layer(3, 16, (3, 5), stride=2, padding=(1, 2))
x = lesson.asarray(host.standard_normal((4, 3, 32, 32)))
y = conv(x)
keys = list(conv.state_dict())
lesson.say(f"""
    {conv!r}: input (N, C, H, W) = {tuple(x.shape)}, weight (out_channels, in_channels,
    KH, KW) = {conv.weight.shape}, bias (out_channels,) = {conv.bias.shape}, output
    {tuple(y.shape)}, state_dict keys {keys}. Those are PyTorch's names, shapes and order,
    so a torch.nn.Conv2d's state_dict loads into this layer as it is.
""")
assert conv.weight.shape == (16, 3, 3, 5), f"weight layout {conv.weight.shape}"
assert conv.bias.shape == (16,), f"bias shape {conv.bias.shape}"
assert tuple(y.shape) == (4, 16, 16, 16), f"output shape {tuple(y.shape)}"
assert keys == ["weight", "bias"], f"state_dict keys {keys}"

lesson.done()
