"""Lesson 02: The backward pass of a convolution, and how to trust it

What this lesson teaches:
- the three gradients of a convolution, written out with one loop over kernel offsets:
  db sums dy, dW correlates the input with dy, dx sends dy back through the kernel; they
  match the library's conv2d_backward;
- gradient checking: finite differences of L = sum(y * dy) in float64, with minifcn.gradcheck;
- why dy must be RANDOM: a backward with a classic reshape bug passes a check with dy = 1
  (and one with batch size 1) and fails it with a random dy;
- the input gradient IS a transposed convolution of dy with the same weight: zeros
  inserted between dy's pixels, then a convolution with the flipped kernel;
- why finite differences need float64: in float32, rounding swamps the difference.

New since lesson 01: backward passes. Lesson 01 computed y from x; training needs the
gradient of the loss with respect to the weights (to update them) and to the input (to
pass on to the layer below).

Run: python lessons/02_backward.py [--quick] [--out DIR] [--device gpu]
"""

import os

# One BLAS thread, set before NumPy loads: on a busy shared machine a second thread waits
# for a free core at every matrix product (see lesson 01).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import minifcn
from minifcn import course, nn
from minifcn.functional.conv import (
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_naive,
)
from minifcn.functional.im2col import col2im, im2col
from minifcn.gradcheck import gradcheck, gradcheck_module

lesson = course.start(__doc__, exercises=["relu", "conv2d"])
xp = lesson.xp
host = np.random.default_rng(0)  # every random input of this lesson comes from here
# A right backward agrees with float64 finite differences to about 1e-6 relative or better
# (rounding); a wrong one is typically off by 1e-2 to 1.
TOLERANCE = 1e-5


def random(*shape, dtype=np.float64):
    """Standard normal numbers on the lesson's device (drawn on the host: same everywhere)."""
    return lesson.asarray(host.standard_normal(shape).astype(dtype))


def max_abs_diff(a, b) -> float:
    return float(np.abs(minifcn.to_numpy(a) - minifcn.to_numpy(b)).max())


# %% [markdown]
# ## 1. The three gradients, by hand
#
# A convolution's backward returns three gradients: of the input, of the weight and of the
# bias. Each is derived and computed here by hand and compared with the layer's.

# %%
lesson.heading("1. The three gradients, by hand")


def window(x_padded, i, j, stride, out_size):
    """The input pixels that kernel offset (i, j) meets, for every output pixel at once:
    (N, C, OH, OW), a strided view of the padded input."""
    (SH, SW), (OH, OW) = stride, out_size
    return x_padded[:, :, i:i + SH * (OH - 1) + 1:SH, j:j + SW * (OW - 1) + 1:SW]


def conv_backward_by_hand(x, weight, dy, stride, padding):
    """dx, dW, db of y = conv(x, weight) + b, one kernel offset (i, j) at a time.

    Forward, offset (i, j) adds   y[n, f] += sum_c weight[f, c, i, j] * window_ij(x)[n, c].
    So weight[f, c, i, j] multiplies exactly window_ij(x)[n, c]: its gradient sums dy times
    that window; and each pixel of that window got weight[f, c, i, j] times itself into
    y[n, f]: it receives dy[n, f] times that weight, added where the window came from.
    """
    (PH, PW), (_, _, KH, KW) = padding, weight.shape
    out_size = dy.shape[2:]
    x_padded = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    dx_padded = xp.zeros_like(x_padded)
    dW = xp.zeros_like(weight)
    for i in range(KH):
        for j in range(KW):
            seen = window(x_padded, i, j, stride, out_size)
            dW[:, :, i, j] = xp.einsum("nfhw,nchw->fc", dy, seen)
            window(dx_padded, i, j, stride, out_size)[...] += xp.einsum(
                "nfhw,fc->nchw", dy, weight[:, :, i, j])
    db = dy.sum(axis=(0, 2, 3))
    H, W = x.shape[2:]
    return dx_padded[:, :, PH:PH + H, PW:PW + W], dW, db


N, C, F, H = 2, 3, 4, 9
stride, padding = (2, 2), (1, 1)
x, weight, bias = random(N, C, H, H), random(F, C, 3, 3), random(F)
y, cache = conv2d_forward(x, weight, bias, stride=stride, padding=padding)
dy = random(*y.shape)  # the gradient of some loss with respect to y
dx, dW, db = conv2d_backward(dy, cache)
dx_hand, dW_hand, db_hand = conv_backward_by_hand(x, weight, dy, stride, padding)
errors = {name: max_abs_diff(a, b) for name, a, b in
          (("dx", dx, dx_hand), ("dW", dW, dW_hand), ("db", db, db_hand))}

lesson.say(f"""
    A convolution y = conv(x, W) + b, here x {tuple(x.shape)} -> y {tuple(y.shape)} with a
    3x3 kernel, stride 2, padding 1. Backward receives dy = dL/dy (same shape as y) from the
    layer above and returns three gradients, each the shape of what it is the gradient of:
""")
print("""\
    db (F,)            dy summed over batch and pixels: b[f] is added to all of y[:, f].
    dW (F, C, KH, KW)  W[f, c, i, j] multiplies the input window at kernel offset (i, j), so
                       dW[f, c, i, j] = sum over n, oh, ow of dy[n, f] times that window:
                       a correlation of the input with dy.
    dx (N, C, H, W)    each input pixel reached y through the kernel entries whose windows
                       covered it; it gets dy back through the same entries, the
                       contributions of overlapping windows ADDED.
""")
lesson.say(f"""
    Written that way, with one loop over the 9 kernel offsets (the library does the same
    sums as matrix products of im2col's columns), the gradients match conv2d_backward to
    dx {errors['dx']:.1e}, dW {errors['dW']:.1e}, db {errors['db']:.1e}.
""")
for name, error in errors.items():
    assert error < 1e-12, f"{name} by hand and conv2d_backward disagree by {error}"


# %% [markdown]
# ## 2. Gradient checking with finite differences
#
# How do we know a backward pass is right? Compare it, in float64, with finite differences
# of the forward pass along a random direction.

# %%
lesson.heading("2. Gradient checking with finite differences")

lesson.say(f"""
    How do we know conv2d_backward is right, rather than merely agreeing with our own
    reading of the formulas? Numerically. Take the scalar L = sum(y * dy) for a fixed dy:
    its exact gradient is what backward(dy) returns. Nudge one entry a of x or W by +-eps
    and recompute L: (L(a + eps) - L(a - eps)) / (2 eps) approximates dL/da. In float64
    with eps = 1e-6 the two agree to about 1e-6 (relative) or better when backward is
    right, and differ by 1e-2 or more when it is wrong; we pass at {TOLERANCE:.0e}.
    minifcn.gradcheck.gradcheck_module does exactly this, entry by entry, for the input and
    every parameter of a layer, with a random dy.
""")

size = 6 if lesson.quick else 9
LAYERS = [  # (description, Conv2d arguments)
    ("3x3, stride 1, padding 0", dict(kernel_size=3)),
    ("3x3, stride 2, padding 1", dict(kernel_size=3, stride=2, padding=1)),
    ("3x3, dilation 2, padding 2", dict(kernel_size=3, dilation=2, padding=2)),
    ("3x5, stride (2, 1), padding (1, 2)", dict(kernel_size=(3, 5), stride=(2, 1),
                                                padding=(1, 2))),
]
print(f"  input (2, 3, {size}, {size}), 4 output channels, float64, every entry checked:")
for description, arguments in LAYERS:
    layer = nn.Conv2d(3, 4, **arguments, device=lesson.device, dtype="float64")
    report = gradcheck_module(layer, random(2, 3, size, size))
    worst = ", ".join(f"{name} {error:.1e}" for name, error in report.errors.items())
    print(f"    {description:<36} worst relative error: {worst}")
    assert report.max_error < TOLERANCE, f"Conv2d {description}: {report}"


# %% [markdown]
# ## 3. Why dy must be random: a bug that dy = 1 cannot see
#
# An upstream gradient of ones hides some bugs. A deliberately wrong backward shows which.

# %%
lesson.heading("3. Why dy must be random: a bug that dy = 1 cannot see")


def buggy_conv2d_backward(dy, cache):
    """conv2d_backward with a classic bug: dy (N, F, OH, OW) made into the (F, N*OH*OW)
    matrix by reshape alone. The right way moves F in front first: dy.transpose(1, 0, 2, 3)
    .reshape(F, -1). The bug pairs each x window with the dy of another sample/channel."""
    x, weight = cache.x, cache.weight
    F, C, KH, KW = weight.shape
    dy_matrix = dy.reshape(F, -1)  # BUG
    cols = im2col(x, (KH, KW), cache.stride, cache.padding, cache.dilation)
    dW = (dy_matrix @ cols.T).reshape(weight.shape)
    dcols = weight.reshape(F, -1).T @ dy_matrix
    dx = col2im(dcols, x.shape, (KH, KW), cache.stride, cache.padding, cache.dilation)
    return dx, dW, dy.sum(axis=(0, 2, 3))


def check_backward(backward, x, weight, bias, dy):
    """Finite differences of L = sum(conv(x, W, b) * dy) against ``backward``'s dx and dW."""
    _, cache = conv2d_forward(x, weight, bias, padding=1)
    dx, dW, _ = backward(dy, cache)

    def objective():  # reads the current x and weight, which gradcheck nudges in place
        return float((conv2d_forward(x, weight, bias, padding=1)[0] * dy).sum())

    return gradcheck(objective, {"x": x, "weight": weight}, {"x": dx, "weight": dW})


x, weight, bias = random(2, 3, 6, 6), random(4, 3, 3, 3), random(4)
y_shape = (2, 4, 6, 6)
ones = xp.ones(y_shape)
random_dy = random(*y_shape)
right_random = check_backward(conv2d_backward, x, weight, bias, random_dy).max_error
buggy_ones = check_backward(buggy_conv2d_backward, x, weight, bias, ones).max_error
buggy_random = check_backward(buggy_conv2d_backward, x, weight, bias, random_dy).max_error
# With one sample and one output channel the reshape happens to be right: a batch of one
# with one filter hides the bug as well as dy = 1 does.
x1, weight1, bias1 = random(1, 3, 6, 6), random(1, 3, 3, 3), random(1)
buggy_single = check_backward(buggy_conv2d_backward, x1, weight1, bias1,
                              random(1, 1, 6, 6)).max_error

print(f"""\
  worst relative error of a gradient check (3x3, padding 1, x (2, 3, 6, 6), 4 filters):
    conv2d_backward, random dy:                        {right_random:.1e}   passes
    buggy backward,  dy = 1 everywhere:                {buggy_ones:.1e}   passes (!)
    buggy backward,  random dy:                        {buggy_random:.1e}   fails
    buggy backward,  batch 1 and 1 filter, random dy:  {buggy_single:.1e}   passes (!)
""")
lesson.say("""
    With dy = 1 every output counts the same, so L = sum(y) and any backward that routes
    each window's gradient to the wrong output still adds up the same total: the wrong
    pairing is invisible. A random dy gives every output its own weight in L, and the
    mix-up shows at once. The same goes for a check on one sample with one filter, where
    reshape and transpose coincide. Check with a random dy, a batch, and several channels.
""")
assert right_random < TOLERANCE, f"the library's backward should pass, got {right_random}"
assert buggy_ones < TOLERANCE, f"dy = 1 should hide the reshape bug, got {buggy_ones}"
assert buggy_random > 1e-1, f"a random dy should expose the reshape bug, got {buggy_random}"
assert buggy_single < TOLERANCE, f"batch 1, 1 filter should hide the bug, got {buggy_single}"


# %% [markdown]
# ## 4. The input gradient is a transposed convolution
#
# The gradient with respect to the input is itself a convolution, the transposed one: the
# adjoint of the forward map.

# %%
lesson.heading("4. The input gradient is a transposed convolution")

N, C, F, H = 2, 3, 4, 9
x, weight = random(N, C, H, H), random(F, C, 3, 3)
y, cache = conv2d_forward(x, weight, stride=2, padding=1)
dy = random(*y.shape)
dx = conv2d_backward(dy, cache)[0]

# ConvTranspose2d(F -> C) holds a (F, C, KH, KW) weight: exactly the convolution's layout.
transposed = nn.ConvTranspose2d(F, C, 3, stride=2, padding=1, bias=False,
                                device=lesson.device, dtype="float64")
transposed.weight.data[...] = weight
dx_transposed = transposed(dy, output_size=(H, H))
# The textbook recipe: zeros between dy's pixels, padding, the flipped kernel, stride 1.
dx_recipe = conv_transpose2d_naive(dy, weight, stride=2, padding=1)
# Adjoint: <conv(x), dy> = <x, conv_transpose(dy)> for every x and dy.
left, right = float((y * dy).sum()), float((x * dx_transposed).sum())

lesson.say(f"""
    dx sends each dy pixel back through the kernel onto the window it came from, the
    windows overlapping and adding up. That is a layer in its own right, the transposed
    convolution (ConvTranspose2d), which the decoders of later lessons use to up-sample:
    ConvTranspose2d({F}, {C}, 3, stride=2, padding=1) with the convolution's weight, applied
    to dy {tuple(dy.shape)}, gives dx {tuple(dx_transposed.shape)} to
    {max_abs_diff(dx, dx_transposed):.1e}. (Its weight layout (in, out, KH, KW) = ({F}, {C},
    3, 3) is the convolution's (out, in, KH, KW) as it is.)

    The textbook recipe gives the same to {max_abs_diff(dx, dx_recipe):.1e}: insert
    stride-1 = 1 row and column of zeros between dy's pixels, pad by KH-1-P = 1, and convolve
    with stride 1 and the kernel FLIPPED (rotated 180 degrees) with its in/out channels
    swapped. Why flipped, when the figure shows each dy pixel stamping the kernel as it
    is? A stamp scatters; a convolution gathers: an input pixel collects from the stamps
    around it, and the one to its lower right reaches it with the kernel's upper-left
    entry. Gathering reads the kernel backwards. And the two maps are adjoint:
    <conv(x), dy> = {left:.10f} = <x, conv_transpose(dy)> = {right:.10f}.
""")
assert max_abs_diff(dx, dx_transposed) < 1e-12, "dx should equal ConvTranspose2d(dy)"
assert max_abs_diff(dx, dx_recipe) < 1e-12, "dx should equal the zero-insertion recipe"
assert abs(left - right) < 1e-10 * abs(left), f"adjoint identity: {left} vs {right}"


def save_input_gradient_figure(path):
    """dx for a dy that is 1 at one output pixel (the kernel, stamped), and a random dy."""
    single = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False, device=lesson.device,
                       dtype="float64")
    kernel = np.array([[1.0, 2.0, 0.0], [0.0, 3.0, -1.0], [-2.0, 0.0, 1.0]])
    single.weight.data[...] = lesson.asarray(kernel[None, None])
    single(xp.zeros((1, 1, 9, 9)))
    one_hot = np.zeros((1, 1, 5, 5))
    one_hot[0, 0, 2, 1] = 1.0
    dx_one = minifcn.to_numpy(single.backward(lesson.asarray(one_hot)))[0, 0]
    single(xp.zeros((1, 1, 9, 9)))
    dy_random = host.standard_normal((1, 1, 5, 5))
    dx_random = minifcn.to_numpy(single.backward(lesson.asarray(dy_random)))[0, 0]

    panels = [("kernel W (3x3)", kernel), ("dy: 1 at output pixel (2, 1)", one_hot[0, 0]),
              ("dx: W stamped on that pixel's window", dx_one),
              ("dy: random (5x5)", dy_random[0, 0]),
              ("dx: overlapping stamps, added", dx_random)]
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.8))
    for ax, (title, picture) in zip(axes, panels, strict=True):
        limit = float(np.abs(picture).max())
        shown = ax.imshow(picture, cmap="RdBu_r", vmin=-limit, vmax=limit)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(picture.shape[1]))
        ax.set_yticks(range(picture.shape[0]))
    fig.suptitle("Backward of Conv2d(1, 1, 3, stride=2, padding=1) on a 9x9 input: "
                 "each dy pixel paints the kernel back onto its window")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return dx_one, kernel


path = lesson.figure("input_gradient.png")
dx_one, kernel = save_input_gradient_figure(path)
lesson.saved(path)
# Output pixel (2, 1) of a stride-2, padding-1 convolution saw input rows 3..5, columns 1..3.
assert np.array_equal(dx_one[3:6, 1:4], kernel), "a one-pixel dy should stamp the kernel"
assert np.count_nonzero(dx_one) == np.count_nonzero(kernel), "and nothing else"


# %% [markdown]
# ## 5. Why float64: finite differences in float32
#
# The same gradient check in float32, to see why finite differences need double precision.

# %%
lesson.heading("5. Why float64: finite differences in float32")


def central_difference(loss_fn, array, index, eps):
    """(L(a + eps) - L(a - eps)) / (2 eps) for one entry of ``array``, restored after."""
    original = float(array[index])
    array[index] = original + eps
    plus = loss_fn()
    array[index] = original - eps
    minus = loss_fn()
    array[index] = original
    return (plus - minus) / (2 * eps)


# A real loss this time: per-pixel cross-entropy of the convolution's output (4 classes).
N, C, F, H = (2, 4, 4, 8) if lesson.quick else (4, 8, 4, 16)
x64 = random(N, C, H, H)
target = lesson.asarray(host.integers(0, F, size=(N, H, H)))
conv = nn.Conv2d(C, F, 3, padding=1, device=lesson.device, dtype="float64")
criterion = nn.CrossEntropyLoss()
loss = float(criterion(conv(x64), target))
conv.backward(criterion.backward())
index = (1, 2, 1, 0)
analytic = float(conv.weight.grad[index])

errors = {}
EPSILONS = [10.0 ** -k for k in range(1, 10)]
for dtype in ("float32", "float64"):
    layer = nn.Conv2d(C, F, 3, padding=1, device=lesson.device, dtype=dtype)
    layer.load_state_dict(conv.state_dict())
    inputs = x64.astype(dtype)

    def loss_fn(layer=layer, inputs=inputs):
        return float(criterion(layer(inputs), target))

    errors[dtype] = [abs(central_difference(loss_fn, layer.weight.data, index, eps)
                         - analytic) / abs(analytic) for eps in EPSILONS]

best32, best64 = min(errors["float32"]), min(errors["float64"])
at_1e6 = {dtype: errors[dtype][EPSILONS.index(1e-6)] for dtype in errors}
print(f"  loss {loss:.4f}; dL/dW{list(index)} = {analytic:.6e} (from backward, float64)")
print("  relative error of the central difference:")
print("      eps       float32     float64")
for k, eps in enumerate(EPSILONS):
    print(f"    {eps:7.0e}   {errors['float32'][k]:9.1e}   {errors['float64'][k]:9.1e}")
lesson.say(f"""
    Two errors compete. A large eps sees the curvature of L (truncation error, shrinking as
    eps^2). A small eps divides the rounding error of L, about machine epsilon times |L|,
    by eps: float32 keeps 7 digits, float64 16. In float64 the sweet spot reaches
    {best64:.0e}; float32 never does better than {best32:.0e}, at one lucky step, and at
    float64's usual eps = 1e-6 it is off by {at_1e6['float32']:.0%}: the change of L,
    1e-6 times the gradient, is below float32's resolution of L (about 1e-7 |L|) and is
    lost in rounding. A float32 check would have to accept errors of 1e-4 to 1e-3 at
    best, too loose to trust. Check in float64 (train in float32): minifcn's gradcheck
    refuses float32 arrays.
""")
assert best64 < 1e-8, f"float64 finite differences should reach 1e-8, got {best64:.1e}"
assert best32 > 100 * best64, f"float32 should be far worse: {best32:.1e} vs {best64:.1e}"
assert at_1e6["float32"] > 1e-2, f"float32 at eps=1e-6 should be useless: {at_1e6}"
assert at_1e6["float64"] < TOLERANCE, f"float64 at eps=1e-6 should be fine: {at_1e6}"
try:
    gradcheck_module(nn.Conv2d(1, 1, 3, device=lesson.device), random(1, 1, 5, 5,
                                                                      dtype=np.float32))
except TypeError as error:
    print(f"  gradcheck on float32: TypeError: {error}")
else:
    raise AssertionError("gradcheck should refuse float32 arrays")


def save_finite_difference_figure(path):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for dtype, marker in (("float32", "o"), ("float64", "s")):
        ax.loglog(EPSILONS, errors[dtype], marker=marker, label=dtype)
    ax.axhline(TOLERANCE, color="grey", ls="--", lw=1)
    ax.text(EPSILONS[0], 1.5 * TOLERANCE, "pass threshold", color="grey", fontsize=9)
    ax.set_xlabel("finite-difference step eps")
    ax.set_ylabel("relative error vs backward")
    ax.set_title("Central differences of a conv + cross-entropy loss, one weight")
    ax.invert_xaxis()
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("finite_differences.png")
save_finite_difference_figure(path)
lesson.saved(path)

lesson.done()
