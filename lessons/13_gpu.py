"""Lesson 13: The same code on a GPU

What it teaches: minifcn has one code path for the CPU (NumPy) and the GPU (CuPy). Every
layer asks its input which array module owns it (``xp = get_array_module(x)``) and writes
``xp.maximum``, ``xp.matmul``, ... so the same lines run on either device. This lesson moves
a segmenter and its optimizer to the GPU (``minifcn.to_device``, ``model.to("gpu")``,
``optimizer.to("gpu")``, the ``MINIFCN_DEVICE`` variable), checks that the GPU computes what
the CPU computes, and shows the three mistakes that break device code: mixing host and
device arrays, converting device arrays to host ones implicitly, and treating a reduction's
result (a 0-d device array) as a Python number.

Without a GPU (as on the machines minifcn is developed on) the GPU is played by the strict
CuPy stand-in the tests use (``minifcn.testing.strict_cupy``): NumPy arrays in a wrapper that
refuses what CuPy refuses. With ``--device gpu`` on a machine with CuPy and an NVIDIA GPU, the
real CuPy plays it and the lesson also times a training step on both devices. Last, memory:
what a training forward keeps for its backward, measured by kind of layer, and why
prediction under ``minifcn.no_grad()`` needs a fraction of it.

New since lesson 12: nothing about segmentation; everything about where the arrays live.

Run: python lessons/13_gpu.py [--quick] [--out DIR] [--device gpu]
"""

import contextlib
import inspect
import os
import time
import tracemalloc

# One BLAS thread, set before NumPy loads: on a busy shared machine a second thread waits
# for a free core at every matrix product (see lesson 01).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

import minifcn
from minifcn import backend, course, nn
from minifcn.functional.activation import relu_forward
from minifcn.models import build_model
from minifcn.optim import Adam

lesson = course.start(__doc__)

WIDTHS = (4, 8, 8, 8, 8) if lesson.quick else (8, 16, 32, 32, 64)
BATCH, SIZE, CLASSES = 2, 64, 4
# The comparisons run in float64, so that they test the code and not the rounding: a GPU
# does the same arithmetic in another order (cuBLAS, parallel reductions), which moves the
# last bits; the stand-in runs NumPy's own code and agrees exactly.
DTYPE, RTOL, ATOL = "float64", 1e-8, 1e-10


@contextlib.contextmanager
def gpu_array_module():
    """Within the block, "gpu" is a real GPU (``--device gpu``) or the strict stand-in."""
    if lesson.device == "gpu":
        yield lesson.xp
        return
    from minifcn.testing import strict_cupy

    # Inside the block "gpu" means the stand-in, and its arrays count as "gpu" arrays
    # (CuPy's own arrays are recognised on sight).
    with backend.use_gpu_module(strict_cupy):
        yield strict_cupy


@contextlib.contextmanager
def environment(name, value):
    """Set an environment variable for the block, then restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def make_model(seed=0):
    """A small FCN-8s on the CPU. Dropout off: CuPy draws other random numbers than NumPy
    from the same seed, so dropout masks would differ between the devices."""
    minifcn.manual_seed(seed)
    return build_model("fcn8s", CLASSES, widths=WIDTHS, head_channels=2 * WIDTHS[-1],
                       dropout=0.0, device="cpu", dtype=DTYPE)


def make_batch(seed=0):
    """Host images (N, 3, H, W) and masks (N, H, W) int64."""
    rng = np.random.default_rng(seed)
    images = rng.random((BATCH, 3, SIZE, SIZE)).astype(DTYPE)
    masks = rng.integers(0, CLASSES, (BATCH, SIZE, SIZE))
    return images, masks


def forward_backward(model, criterion, images, masks):
    """One forward and backward: (logits, loss, d loss / d images)."""
    logits = model(images)
    loss = criterion(logits, masks)
    model.zero_grad()
    dx = model.backward(criterion.backward())
    return logits, loss, dx


def type_name(array):
    return f"{type(array).__module__}.{type(array).__name__}"


def largest_difference(cpu_array, gpu_array):
    """The largest |cpu - gpu| after an explicit copy of the GPU array to the host."""
    return float(np.abs(minifcn.to_numpy(cpu_array) - minifcn.to_numpy(gpu_array)).max())


def assert_close(what, cpu_array, gpu_array):
    np.testing.assert_allclose(minifcn.to_numpy(gpu_array), minifcn.to_numpy(cpu_array),
                               rtol=RTOL, atol=ATOL, err_msg=f"{what}: the devices disagree")


def refused(what, action):
    """Run ``action``, which must fail with a TypeError; print what it said."""
    try:
        action()
    except TypeError as error:
        message = str(error)
        print(f"  {what}\n    -> TypeError: {message[:150]}{'...' if len(message) > 150 else ''}")
        return message
    raise AssertionError(f"{what}: expected a TypeError, and nothing was raised")


# %% [markdown]
# ## One code path, two array modules
#
# Every layer asks its input which array module owns it and computes with that one: the same
# code runs on NumPy and CuPy. Then moving arrays, a model and an optimizer to the GPU, and
# what breaks when devices are mixed.

# %%
lesson.heading("One code path, two array modules")

host = np.ones((2, 3), dtype=np.float32)
assert minifcn.get_array_module(host) is np, "a NumPy array must be served by NumPy"
lesson.say(f"""
    An array knows its device by its type. minifcn.get_array_module(x) returns the module
    that owns x: numpy for a {type(host).__module__}.ndarray, cupy for a cupy.ndarray. Every
    layer starts with that question and then writes xp.something, never np.something. The
    whole ReLU of minifcn, which therefore runs unchanged on both devices:
""")
print(inspect.getsource(relu_forward))

with gpu_array_module() as gpu_xp:
    player = "CuPy on a real GPU" if lesson.device == "gpu" else "the strict CuPy stand-in"
    lesson.say(f"""
        In this run "gpu" is played by {player} (module {gpu_xp.__name__}). On a machine
        without a GPU, course.start refuses --device gpu with a clear message, and the
        lesson uses the stand-in that the test suite runs every layer on.
    """)

    # -----------------------------------------------------------------------------------
    lesson.heading("Moving arrays and a model")

    images, masks = make_batch()
    images_gpu = minifcn.to_device(images, "gpu")
    masks_gpu = minifcn.to_device(masks, "gpu")
    assert isinstance(images_gpu, gpu_xp.ndarray), "to_device(x, 'gpu') must give a GPU array"
    assert minifcn.get_array_module(images_gpu) is gpu_xp, "a GPU array must be served by xp"
    assert minifcn.to_device(images_gpu, "gpu") is images_gpu, "no copy when already there"
    assert np.array_equal(minifcn.to_numpy(images_gpu), images), "round trip must be exact"

    cpu_model, gpu_model = make_model(), make_model()
    gpu_model.to("gpu")
    cpu_state = cpu_model.state_dict()
    same_weights = all(np.array_equal(minifcn.to_numpy(array), cpu_state[key])
                       for key, array in gpu_model.state_dict().items())
    assert gpu_model.device == "gpu" and cpu_model.device == "cpu", "model.device is wrong"
    assert same_weights, "the same seed must give the same weights on both devices"
    lesson.say(f"""
        minifcn.to_device(x, "gpu") copies a host array to the GPU (a {type_name(images_gpu)}
        of shape {tuple(images_gpu.shape)}); minifcn.to_numpy(x) copies it back, exactly.
        model.to("gpu") moves every parameter, gradient and buffer in place, as in PyTorch.
        Weights are initialised on the host, so two models built after the same
        minifcn.manual_seed start identical whichever device they then move to:
        {gpu_model.num_parameters():,} parameters, all equal.
    """)

    cpu_loss_fn = nn.CrossEntropyLoss(ignore_index=255, device="cpu", dtype=DTYPE)
    gpu_loss_fn = nn.CrossEntropyLoss(ignore_index=255, device="gpu", dtype=DTYPE)
    cpu_out = forward_backward(cpu_model, cpu_loss_fn, images, masks)
    gpu_out = forward_backward(gpu_model, gpu_loss_fn, images_gpu, masks_gpu)
    for name, cpu_array, gpu_array in zip(("logits", "loss", "input gradient"), cpu_out,
                                          gpu_out, strict=True):
        assert isinstance(gpu_array, gpu_xp.ndarray), f"the {name} must stay on the GPU"
        assert_close(name, cpu_array, gpu_array)
    grad_gaps = []
    for (name, cpu_param), gpu_param in zip(cpu_model.named_parameters(),
                                            gpu_model.parameters(), strict=True):
        assert_close(f"{name}.grad", cpu_param.grad, gpu_param.grad)
        grad_gaps.append(largest_difference(cpu_param.grad, gpu_param.grad))
    lesson.say(f"""
        One forward and backward of the same FCN-8s ({DTYPE}) on a batch of {BATCH} images
        on each device. Everything the GPU model returns is a GPU array, and it matches the CPU:
        largest difference in the logits {largest_difference(cpu_out[0], gpu_out[0]):.2g},
        in the loss {largest_difference(cpu_out[1], gpu_out[1]):.2g}, in the input gradient
        {largest_difference(cpu_out[2], gpu_out[2]):.2g}, in any of the
        {len(grad_gaps)} parameter gradients {max(grad_gaps):.2g}
        (allowed: {RTOL:g} relative + {ATOL:g}).
    """)

    # -----------------------------------------------------------------------------------
    lesson.heading("Moving the optimizer too")

    staying, moving = make_model(), make_model()
    staying_opt = Adam(staying.parameters(), lr=1e-3)
    moving_opt = Adam(moving.parameters(), lr=1e-3)
    for model, opt in ((staying, staying_opt), (moving, moving_opt)):
        forward_backward(model, cpu_loss_fn, images, masks)
        opt.step()  # Adam's moments now exist, as host arrays

    moving.to("gpu")
    forward_backward(moving, gpu_loss_fn, images_gpu, masks_gpu)
    message = refused("optimizer.step() after model.to('gpu') but not optimizer.to('gpu')",
                      moving_opt.step)
    assert "optimizer.to(device)" in message, "the error must say how to fix it"
    moving_opt.to("gpu")
    moving_opt.step()
    forward_backward(staying, cpu_loss_fn, images, masks)
    staying_opt.step()
    for (name, cpu_param), gpu_param in zip(staying.named_parameters(), moving.parameters(),
                                            strict=True):
        assert_close(f"{name} after a step on each device", cpu_param.data, gpu_param.data)
    lesson.say("""
        An optimizer keeps state beside each parameter (Adam: two moment arrays). Moving
        the model leaves that state on the host, and the next step refuses to mix the two,
        naming the cure: optimizer.to("gpu"), as when resuming a checkpoint on another
        machine. After it, a training step on the GPU lands on the same parameters as the
        same step on the CPU.
    """)

    # -----------------------------------------------------------------------------------
    lesson.heading("MINIFCN_DEVICE: where new modules are born")

    with environment("MINIFCN_DEVICE", "gpu"):
        conv = nn.Conv2d(3, 8, 3)
        default = backend.default_device()
    assert default == "gpu" and conv.device == "gpu", "MINIFCN_DEVICE=gpu must place modules"
    assert nn.Conv2d(3, 8, 3).device == backend.default_device(), "the variable is read anew"
    lesson.say(f"""
        A module created without device=... goes to backend.default_device(): the
        environment variable MINIFCN_DEVICE, read each time a module is created (so a script
        may set it after importing minifcn), else "cpu". With MINIFCN_DEVICE=gpu a new
        Conv2d(3, 8, 3) is on "{conv.device}"; with the variable restored, the next one is on
        "{nn.Conv2d(3, 8, 3).device}". The DataLoader follows the same rule, so
        `MINIFCN_DEVICE=gpu minifcn train ...` moves a whole run.
    """)

    # -----------------------------------------------------------------------------------
    lesson.heading("What must not happen")

    logits = gpu_out[0]
    lesson.say("Each of these is a TypeError on a real GPU (CuPy) and on the stand-in:")
    message = refused("a host batch into a GPU model: gpu_model(images)",
                      lambda: gpu_model(images))
    assert "cpu" in message and "gpu" in message, "the error must name both devices"
    message = refused("get_array_module(host_array, gpu_array)",
                      lambda: minifcn.get_array_module(images, images_gpu))
    assert "numpy.ndarray" in message and "to_device" in message, "must name the host array"
    refused("arithmetic between a GPU and a host array: images_gpu + images",
            lambda: images_gpu + images)
    refused("an implicit copy to the host: np.asarray(logits)", lambda: np.asarray(logits))

    best = logits.argmax()
    assert isinstance(best, gpu_xp.ndarray) and best.shape == (), "a reduction is 0-d on GPU"
    refused("a 0-d device array used as a Python int: range(logits.argmax())",
            lambda: range(best))
    loss_value = float(gpu_out[1])
    assert loss_value == float(minifcn.to_numpy(gpu_out[1])), "float() is an explicit copy"
    lesson.say(f"""
        Mixing devices fails loudly rather than copying behind your back: a host batch must
        be moved with to_device, a result read with to_numpy. A reduction such as
        logits.argmax() or loss itself is not a Python number on the GPU but a 0-d device
        array (a {type_name(best)} of shape {best.shape}); it has no __index__, so it
        cannot index a list or bound a range. int(), float() and .item() do work
        (float(loss) = {loss_value:.4f}), and each is a synchronisation: the host waits
        until the GPU has finished everything queued before it. One per logged step is
        fine; one per pixel, or per layer, stalls the GPU. minifcn's layers never do it:
        hyperparameters are Python floats, so the optimizer never reads a device value.
    """)

    # -----------------------------------------------------------------------------------
    lesson.heading("What the stand-in cannot tell you")

    same_stream = np.array_equal(backend.Generator(7).random(5, xp=np),
                                 minifcn.to_numpy(backend.Generator(7).random(5, xp=gpu_xp)))
    if lesson.device == "gpu":
        assert not same_stream, "CuPy's generator should draw other numbers than NumPy's"
    else:
        assert same_stream, "the stand-in draws NumPy's own numbers"
    lesson.say(f"""
        The stand-in only checks that the code would run on CuPy: NumPy does the arithmetic
        underneath. It cannot show speed, the cost of synchronisations (float(), .item(),
        to_numpy are free here), the rounding of GPU kernels (its results equal NumPy's to
        the bit), memory limits, or random streams: from the same seed, CuPy draws other
        numbers than NumPy. Here Generator(7) drew the {'same' if same_stream else 'other'}
        numbers on the "gpu" as on the host, so code that compared dropout masks across
        devices {'would pass here and fail on a real GPU' if same_stream else 'fails'}.
        Hence dropout=0 above, and, in the test suite, masks injected rather than drawn.
    """)

# %% [markdown]
# ## Memory: what a backward keeps, and why prediction needs a fraction of it
#
# One forward of FCN-8s on a larger image, once as training does it and once under
# minifcn.no_grad(), with the host memory each takes measured; and what the layers keep for
# their backward, by kind.

# %%
lesson.heading("Memory: what a backward keeps, and why prediction needs a fraction of it")


def held_by_kind(model):
    """Bytes of the arrays each kind of layer holds in its cache, by class name (an array
    two caches share is counted once)."""
    held, seen = {}, set()

    def add(kind, value, depth=0):
        if backend.is_array(value) and id(value) not in seen:
            seen.add(id(value))
            held[kind] = held.get(kind, 0) + int(value.nbytes)
        elif isinstance(value, tuple) and depth < 3:
            for item in value:
                add(kind, item, depth + 1)
        elif hasattr(value, "__dataclass_fields__") and depth < 3:  # batch norm's cache
            for item in vars(value).values():
                add(kind, item, depth + 1)

    for module in model.modules():
        cache = vars(module).get("_cache")
        if isinstance(cache, tuple):
            add(type(module).__name__, cache)
    return held


def forward_peak(model, image):
    """(the host memory a forward's arrays took at their peak, in bytes, its output)."""
    tracemalloc.start()  # NumPy reports every array it allocates to tracemalloc
    try:
        logits = model(image)
        return tracemalloc.get_traced_memory()[1], logits
    finally:
        tracemalloc.stop()


MEMORY_SIZE = 256 if lesson.quick else 512
minifcn.manual_seed(0)
big_model = build_model("fcn8s", CLASSES, device="cpu").eval()  # the default widths
photo = np.random.default_rng(5).random((1, 3, MEMORY_SIZE, MEMORY_SIZE), dtype=np.float32)
training_peak, kept_logits = forward_peak(big_model, photo)
kept = held_by_kind(big_model)
with minifcn.no_grad():
    predicting_peak, free_logits = forward_peak(big_model, photo)
assert np.array_equal(kept_logits, free_logits), "no_grad must not change a single number"
assert held_by_kind(big_model) == {}, "under no_grad no layer may keep anything"
assert predicting_peak < training_peak / 2, "prediction should need far less memory"
activation = 16 * MEMORY_SIZE * MEMORY_SIZE * 4  # stage 1's output: 16 channels, float32
mib = 2.0**20
kinds = ", ".join(f"{kind} {nbytes / mib:.0f} MiB" for kind, nbytes in
                  sorted(kept.items(), key=lambda item: -item[1]) if nbytes >= mib)
lesson.say(f"""
    FCN-8s at the default widths, in evaluation mode, on one {MEMORY_SIZE} x {MEMORY_SIZE}
    image (host memory measured with tracemalloc, on the CPU whatever --device says). With
    gradients enabled, as in training, the forward kept {sum(kept.values()) / mib:.0f} MiB for
    a backward, by kind of layer: {kinds}. A convolution needs its input for the weight
    gradient (and keeps its im2col columns when they are small enough, so as not to copy
    them again), batch norm its input (centred, in training), ReLU a mask of where x > 0,
    max pooling where each maximum came from. All of it stays until the backward, so the
    forward's peak was {training_peak / mib:.0f} MiB.

    Prediction never runs a backward. Under minifcn.no_grad() each layer forgets its cache as
    soon as its forward returns, ReLU and max pooling do not even make theirs, and the
    models let each activation go once its last reader has run (a skip until its merge).
    What is left at any moment is about one layer's input and output: the peak was
    {predicting_peak / mib:.0f} MiB, {training_peak / predicting_peak:.1f}x less, for the
    same logits to the last bit. (One 16-channel activation at full resolution is
    {activation / mib:.0f} MiB.) Add the convolutions' columns, kept within a budget by
    working in bands of rows, and memory grows with the image only through the activations:
    minifcn predict segments a 12-megapixel photo in under 2 GiB (benchmarks/inference.py).
""")

# %% [markdown]
# ## Timing a training step on each device
#
# Where there is a real GPU, a training step timed on each device.

# %%
lesson.heading("Timing a training step on each device")


def step_milliseconds(model, loss_fn, images, masks, steps):
    """Median wall time of a training step; float(loss) waits for the device each step."""
    optimizer = Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(steps + 1):  # the first step warms up (allocations, kernel compilation)
        started = time.perf_counter()
        logits = model(images)
        loss = loss_fn(logits, masks)
        model.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()
        float(loss)
        times.append(time.perf_counter() - started)
    return 1000.0 * float(np.median(times[1:]))


if lesson.device == "gpu":
    minifcn.manual_seed(0)
    options = dict(widths=(16, 32, 64, 64, 128), head_channels=128, dropout=0.0)
    timing_batch = np.random.default_rng(1).random((16, 3, SIZE, SIZE), dtype=np.float32)
    timing_masks = np.random.default_rng(2).integers(0, CLASSES, (16, SIZE, SIZE))
    results = {}
    for device in ("cpu", "gpu"):
        model = build_model("fcn8s", CLASSES, device=device, **options)
        loss_fn = nn.CrossEntropyLoss(ignore_index=255, device=device)
        results[device] = step_milliseconds(model, loss_fn,
                                            minifcn.to_device(timing_batch, device),
                                            minifcn.to_device(timing_masks, device),
                                            steps=3 if lesson.quick else 10)
    assert all(np.isfinite(t) and t > 0 for t in results.values()), "timings must be positive"
    lesson.say(f"""
        FCN-8s at the default widths, batch 16 at {SIZE} x {SIZE}: a training step takes
        {results['cpu']:.1f} ms on the CPU and {results['gpu']:.1f} ms on the GPU
        ({results['cpu'] / results['gpu']:.1f}x, medians of measured steps, each ended by
        float(loss), which waits for the GPU). The ratio depends on the GPU and on the
        work per step: try larger images, batches or widths, where each kernel launch
        carries more arithmetic.
    """)
else:
    lesson.say("""
        Timings need a real GPU: the stand-in runs on the CPU. On a machine with an NVIDIA
        GPU and CuPy (pip install "minifcn[gpu]"), run
        `python lessons/13_gpu.py --device gpu` to time the same training step on both
        devices.
    """)

lesson.done()
