"""Lesson 05: The encoder: output stride 32, receptive fields, and the crops skips need

What this lesson teaches:
- semantic segmentation is classification of every pixel: a segmenter outputs one score
  map per class, and two objects of the same class get the same label (two circles are one
  "circle" region: telling instances apart is another task);
- the two halves of a CNN segmenter: an ENCODER (conv - batch norm - ReLU, then 2x2
  max-pooling, five times: output stride 2**5 = 32, as in the FCN paper) that finds what is
  in the image on an ever coarser grid, and a DECODER that brings the class scores back to
  one per pixel;
- what the sub-sampling buys in computation, counted layer by layer;
- a receptive-field and output-stride calculator for any model: minifcn.models.summary
  and geometry.chain_geometry, and a check on the real (non-linear) encoder that pixels
  outside the receptive field cannot change a feature;
- the "pad 100, crop 19" of the original FCN: its VGG16 trunk's geometry gives the crop
  offsets 5, 9, 19, 27 and 31 that its skip connections and outputs need, computed, not
  guessed; and why minifcn's encoder needs none (offset 0);
- what happens to an image whose size is not a multiple of 32.

New since lesson 04: whole models (minifcn.models), and the bookkeeping of where each
feature-map pixel sits on the image.

Run: python lessons/05_encoder.py [--quick] [--out DIR] [--device gpu]
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
from minifcn.data import PALETTE, Shapes, colorize
from minifcn.models import MODELS, Encoder, build_model, summary
from minifcn.models.geometry import Geometry, chain_geometry, crop_offset

lesson = course.start(__doc__, exercises=["cross_entropy"])
host = np.random.default_rng(0)  # every random input of this lesson comes from here
SIZE = 64


def on_device(array, dtype=np.float32):
    return lesson.asarray(np.asarray(array, dtype=dtype))


# %% [markdown]
# ## 1. Segmentation: one class per pixel
#
# Semantic segmentation labels every pixel with a class; objects of the same class are not
# told apart.

# %%
lesson.heading("1. Segmentation: one class per pixel")


def two_separate_circles(shapes):
    """Index of the first image holding two circles that neither touch nor hide each other,
    and the two circles' pixel masks (drawn from the objects the generator placed)."""
    centres = (np.arange(shapes.image_size) + 0.5).astype(np.float32)
    rows, cols = centres[:, None], centres[None, :]
    for index, classes in enumerate(shapes.objects.classes):
        circles = np.flatnonzero(classes == 1)
        if len(circles) != 2 or (classes > 0).sum() != 2:
            continue  # only the two circles in the image: nothing in front of them
        (r0, c0), (r1, c1) = shapes.objects.centers[index, circles]
        s0, s1 = shapes.objects.sizes[index, circles]
        if np.hypot(r0 - r1, c0 - c1) < s0 + s1 + 4:
            continue
        disks = [(rows - r) ** 2 + (cols - c) ** 2 <= s * s
                 for (r, c), s in zip(shapes.objects.centers[index, circles],
                                      shapes.objects.sizes[index, circles], strict=True)]
        return index, disks
    raise RuntimeError("no image with two separate circles: generate more")


shapes = Shapes(200, image_size=SIZE, seed=0)
index, disks = two_separate_circles(shapes)
image, mask = shapes.images[index], shapes.masks[index]
labels_in_disks = [{int(label) for label in np.unique(mask[disk])} - {shapes.ignore_index}
                   for disk in disks]

minifcn.manual_seed(0)
model = build_model("fcn32s").to(lesson.device).eval()
logits = model(on_device(image[None]))
predicted = minifcn.to_numpy(logits.argmax(axis=1))[0]

lesson.say(f"""
    A classifier gives one label per image. A semantic segmenter gives one label per PIXEL:
    for an input of shape (1, 3, {SIZE}, {SIZE}), FCN-32s returns logits of shape
    {tuple(logits.shape)}, one score map per class ({', '.join(shapes.classes)}), and the
    predicted mask is the arg-max over the class axis, shape {predicted.shape}. Training
    makes those scores right (lesson 07 trains FCN-32s); this one is untrained.

    Image {index} of the toy data set holds two circles, far apart. In its mask both are
    label 1 ("circle"): the pixels of the first carry the labels {sorted(labels_in_disks[0])},
    those of the second {sorted(labels_in_disks[1])} (the void outline, 255, is left out).
    Nothing in the mask, and no channel of the output, says WHICH circle a pixel belongs to:
    semantic segmentation does not tell instances of a class apart. Counting or separating
    objects (instance segmentation) needs more than a class per pixel.
""")
assert tuple(logits.shape) == (1, shapes.num_classes, SIZE, SIZE), "one score map per class"
assert labels_in_disks[0] == labels_in_disks[1] == {1}, (
    f"both circles should be labelled 'circle' and nothing else: {labels_in_disks}")
assert not (disks[0] & disks[1]).any(), "the two circles are separate objects"


def save_labels_figure(path):
    instances = np.zeros(mask.shape, dtype=np.uint8)
    instances[disks[0]], instances[disks[1]] = 1, 2
    panels = [(np.clip(image.transpose(1, 2, 0), 0, 1), "image"),
              (colorize(mask, PALETTE), "semantic mask: both are 'circle'\n(cream: void "
                                        "outline, 255)"),
              (instances, "instances: circle 1, circle 2\n(what this task does NOT ask for)")]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 4.3))
    instance_colours = matplotlib.colors.ListedColormap(["black", "tab:orange", "tab:cyan"])
    for ax, (panel, title) in zip(axes, panels, strict=True):
        ax.imshow(panel, cmap=instance_colours if panel.ndim == 2 else None,
                  interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"One label per pixel (toy image {index})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("labels_per_pixel.png")
save_labels_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 2. Encoder and decoder
#
# An encoder of convolutions and sub-sampling, then a decoder that brings the coarse
# features back to one score per pixel and class.

# %%
lesson.heading("2. Encoder and decoder")

x = on_device(image[None])
features = model.encoder(x)
scores = model.score_fr(model.fc7(model.fc6(features.pooled[-1])))
upsampled = model.upscore32(scores)
parts = [("image", x, 1)]
parts += [(f"encoder stage {k}: (conv-BN-ReLU) x2, max-pool", pooled, 2 ** k)
          for k, pooled in enumerate(features.pooled, start=1)]
parts += [("fc6, fc7 (3x3, 1x1 convs), score_fr (1x1)", scores, 32),
          ("decoder: upscore32 (transposed conv, x32)", upsampled, 1)]
print(f"  {'part':<46}{'output shape':<20}{'stride':>6}")
for part, array, stride in parts:
    print(f"  {part:<46}{str(tuple(array.shape)):<20}{stride:>6}")
print()
lesson.say(f"""
    The ENCODER is a classification network's trunk: five stages, each two 3x3
    convolutions (each followed by batch normalization and a ReLU, lesson 04) and a 2x2
    max-pool. Every pool halves the map, so after five the map is 2**5 = {model.encoder.stride}
    times smaller than the image: its OUTPUT STRIDE is 32, as in the FCN paper. The FCN then
    replaces the classifier's fully connected layers by convolutions (fc6, fc7, with
    dropout, and the 1x1 score layer), so the network takes an image of any allowed size
    and outputs a coarse {tuple(scores.shape[2:])} map of class scores instead of one
    score vector.

    The DECODER projects those coarse scores back onto the pixels. FCN-32s does it in one
    step, a x32 transposed convolution (lessons 06 and 07). The encoders of segmenters are
    much alike; they differ mostly in their decoders: skip connections from finer stages
    (FCN-16s/8s), pooling indices (SegNet), whole feature maps (U-Net).
""")
assert model.encoder.stride == 32, "five 2x2 poolings"
for k, pooled in enumerate(features.pooled, start=1):
    assert tuple(pooled.shape[2:]) == (SIZE // 2 ** k,) * 2, f"stage {k}: {pooled.shape}"
assert tuple(upsampled.shape) == tuple(logits.shape), "the decoder returns to full size"


def conv_multiply_adds(table, prefix):
    """Multiply-adds of the convolutions in the rows whose name starts with ``prefix``:
    one per weight per output pixel (the encoder's convolutions have no bias)."""
    return sum(row.params * row.output_shape[2] * row.output_shape[3] for row in table.rows
               if row.name.startswith(prefix) and row.kind == "Conv2d")


table = summary(model, (1, 3, SIZE, SIZE))
stage_cost = [conv_multiply_adds(table, f"encoder.stage{k}.") for k in range(1, 6)]
# Stage 5's convolutions as they would cost on a full-size map: 16x16 times more pixels.
unpooled_stage5 = stage_cost[4] * (2 ** 4) ** 2
print("  multiply-adds of each stage's two convolutions, one image:")
for k, (cost, width) in enumerate(zip(stage_cost, model.encoder.widths, strict=True), 1):
    side = SIZE // 2 ** (k - 1)
    print(f"    stage {k}: {width:>3} channels on {side:>2}x{side:<2}  {cost / 1e6:7.2f} M")
print(f"    stage 5 without the four poolings before it: {unpooled_stage5 / 1e6:7.1f} M")
print()
lesson.say(f"""
    Sub-sampling is also what makes a deep encoder affordable. A convolution costs in
    proportion to its output pixels, so the encoder can widen its deeper stages: stage 5
    has {model.encoder.widths[4] // model.encoder.widths[0]}x the channels of stage 1 and
    still costs {stage_cost[0] / stage_cost[4]:.1f}x less ({stage_cost[4] / 1e6:.1f} M
    multiply-adds against {stage_cost[0] / 1e6:.1f} M), where at full resolution it would
    cost {unpooled_stage5 / stage_cost[4]:.0f}x more. (Lesson 03 measured the other two
    gains: a wider field of view and features that move less when the image moves.)
""")
assert stage_cost[4] < stage_cost[0] / 2, f"stage 5 should cost less than stage 1: {stage_cost}"
assert unpooled_stage5 == 256 * stage_cost[4], "16x16 times more output pixels"


# %% [markdown]
# ## 3. Receptive field and output stride, for any model
#
# `summary()` computes, for every layer of any model, its output shape, its stride in input
# pixels and its receptive field.

# %%
lesson.heading("3. Receptive field and output stride, for any model")

print(table)
print()
lesson.say("""
    minifcn.models.summary runs a model once and follows every layer's output through
    minifcn.models.geometry: its shape, its parameters, its STRIDE (how many input pixels
    apart two neighbouring pixels of the map are) and its RECEPTIVE FIELD (RF: how many
    input pixels one of its pixels can see, along one axis). Each layer updates them by
    lesson 03's rules: a K-wide window adds (K - 1) x stride to the RF, and a stride-S
    layer multiplies the stride by S. It knows nothing about any particular model, so it
    works for all of them:
""")


def bottleneck(table):
    """The last row at the model's coarsest stride: the deepest, widest-seeing features."""
    coarsest = max(row.geometry.jump for row in table.rows)
    return [row for row in table.rows if row.geometry.jump == coarsest][-1]


print(f"  {'model':<8}{'parameters':>12}  {'coarsest map':<14}{'its stride':>11}{'its RF':>8}"
      f"{'output RF':>11}")
tables = {}
for name in MODELS:
    tables[name] = summary(build_model(name).to(lesson.device), (1, 3, SIZE, SIZE))
    deepest = bottleneck(tables[name])
    print(f"  {name:<8}{tables[name].total_params:>12,}  {deepest.name:<14}"
          f"{deepest.geometry.jump:>11g}{deepest.geometry.rf:>8g}"
          f"{tables[name].output.geometry.rf:>11g}")
print()

encoder_layers = [layer for pair in model.encoder.stages() for layer in pair]
by_name = {row.name: row for row in table.rows}
stage_geometry = [chain_geometry(encoder_layers[:2 * k]) for k in range(1, 6)]
lesson.say(f"""
    Every model here shares the encoder, so all reach stride 32, where one feature sees
    {stage_geometry[4].rf:g} pixels: more than the whole {SIZE}x{SIZE} image (the rest is
    zero padding). That wide view is what lets the coarse map decide what each region is.
    The same numbers come from geometry.chain_geometry applied to any list of layers,
    without running anything: the encoder's five stages give strides
    {[int(g.jump) for g in stage_geometry]} and receptive fields
    {[int(g.rf) for g in stage_geometry]}.
""")
assert all(bottleneck(t).geometry.jump == 32 for t in tables.values()), "output stride 32"
for k, geometry in enumerate(stage_geometry, start=1):
    row = by_name[f"encoder.pool{k}"]
    assert row.geometry == geometry, f"pool{k}: summary {row.geometry} vs {geometry}"
    assert geometry.jump == 2 ** k, f"pool{k} stride {geometry.jump}"
rf = 1
for k in range(1, 6):
    jump = 2 ** (k - 1)
    rf += 2 * (3 - 1) * jump + (2 - 1) * jump  # two 3x3 convolutions, then a 2x2 pool
    assert stage_geometry[k - 1].rf == rf, f"stage {k}: RF {stage_geometry[k - 1].rf} != {rf}"


def outside_field_changes_nothing(encoder, stage, pixel, size):
    """Randomise every image pixel outside the receptive field of feature ``pixel`` of
    ``pool<stage>``: that feature must not change at all. Then change the field itself:
    it must. Returns the field's (first, last) row and the two changes, relative to the
    feature's largest channel."""
    g = chain_geometry(list(encoder_layers[:2 * stage]))
    centre = g.start + pixel * g.jump
    first, last = int(centre - (g.rf - 1) / 2), int(centre + (g.rf - 1) / 2)
    inside = np.zeros((size, size), dtype=bool)
    inside[max(first, 0):last + 1, max(first, 0):last + 1] = True
    base = host.random((1, 3, size, size))
    outside_changed = np.where(inside, base, host.random(base.shape))
    inside_changed = np.where(inside, host.random(base.shape), base)
    outputs = [minifcn.to_numpy(encoder(on_device(a, np.float64)).pooled[stage - 1])
               [0, :, pixel, pixel] for a in (base, outside_changed, inside_changed)]
    scale = np.abs(outputs[0]).max()
    return ((first, last), float(np.abs(outputs[1] - outputs[0]).max() / scale),
            float(np.abs(outputs[2] - outputs[0]).max() / scale))


minifcn.manual_seed(1)
# Eval mode: batch norm then uses its running statistics, the same affine map for every
# image; in training mode its batch statistics would tie each pixel to all the others.
encoder = Encoder(widths=(4, 8, 8, 8, 8) if lesson.quick else model.encoder.widths)
encoder = encoder.to(lesson.device, "float64").eval()
stage, pixel = 3, 4
(first, last), outside_change, inside_change = outside_field_changes_nothing(
    encoder, stage, pixel, SIZE)
lesson.say(f"""
    A check on the real encoder, with its ReLUs, max-pools and batch norms (in evaluation
    mode): feature ({pixel}, {pixel}) of pool{stage} has a receptive field of rows and
    columns {first}..{last}. Redrawing every image pixel outside that square at random
    changes its {encoder.widths[stage - 1]} channels by exactly {outside_change:g};
    redrawing the square itself changes them by up to {inside_change:.0%} of the largest.
""")
assert last - first + 1 == stage_geometry[stage - 1].rf, "the square is one receptive field"
assert outside_change == 0.0, f"pixels outside the field changed the feature: {outside_change}"
assert inside_change > 0.05, f"pixels inside the field should matter: {inside_change}"


def save_receptive_field_figure(path):
    """Per stage: the grid of feature centres on the image, and one feature's field."""
    fig, axes = plt.subplots(1, 5, figsize=(17, 4.2))
    # Wide enough for the largest field, which runs furthest off the image.
    low = stage_geometry[4].start - stage_geometry[4].rf / 2 - 6
    high = stage_geometry[4].start + stage_geometry[4].rf / 2 + 6
    for k, (ax, g) in enumerate(zip(axes, stage_geometry, strict=True), start=1):
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1),
                  extent=(-0.5, SIZE - 0.5, SIZE - 0.5, -0.5))
        ax.add_patch(plt.Rectangle((-0.5, -0.5), SIZE, SIZE, fill=False, edgecolor="black",
                                   lw=1, ls=":"))
        centres = g.start + g.jump * np.arange(SIZE // int(g.jump))
        rows, cols = np.meshgrid(centres, centres)
        ax.plot(cols, rows, ".", color="white", ms=max(1.0, g.jump / 4), mec="black", mew=0.3)
        chosen = centres[0]  # the top-left feature: its field runs off the image
        ax.add_patch(plt.Rectangle((chosen - g.rf / 2, chosen - g.rf / 2), g.rf, g.rf,
                                   fill=False, edgecolor="red", lw=2))
        ax.plot(chosen, chosen, "o", color="red", ms=5)
        ax.set_xlim(low, high)
        ax.set_ylim(high, low)
        ax.set_title(f"pool{k}: {SIZE // int(g.jump)}x{SIZE // int(g.jump)} features,\n"
                     f"stride {g.jump:g}, receptive field {g.rf:g}", fontsize=10)
        ax.set_xlabel("column (image pixels)")
    axes[0].set_ylabel("row (image pixels)")
    fig.suptitle(f"Where the encoder's features sit on a {SIZE}x{SIZE} image (dots) and what "
                 f"the top-left one sees (red); outside the dotted square: zero padding")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


path = lesson.figure("receptive_fields.png")
save_receptive_field_figure(path)
lesson.saved(path)


# %% [markdown]
# ## 4. The original FCN: pad 100, crop 19
#
# Why the original FCN padded its first convolution by 100 pixels and cropped its outputs,
# computed.

# %%
lesson.heading("4. The original FCN: pad 100, crop 19")


def vgg16_fcn_trunk(first_padding):
    """The FCN paper's VGG16 as one-channel layers: five stages of 3x3 convolutions
    (2, 2, 3, 3, 3 of them; the very first padded by ``first_padding``, the rest by 1),
    each stage ending in a 2x2 max-pool; then fc6, a 7x7 convolution with no padding, and
    fc7, 1x1. One channel is enough: geometry does not depend on the channel counts."""
    layers = []
    for stage, convs in enumerate((2, 2, 3, 3, 3)):
        for i in range(convs):
            padding = first_padding if stage == 0 and i == 0 else 1
            layers.append(nn.Conv2d(1, 1, 3, padding=padding, device=lesson.device))
        layers.append(nn.MaxPool2d(2, 2))
    return layers + [nn.Conv2d(1, 1, 7, device=lesson.device),
                     nn.Conv2d(1, 1, 1, device=lesson.device)]


def upsampled(geometry, kernel, stride):
    """Geometry after the FCN's up-sampling: a transposed convolution with no padding."""
    return chain_geometry([nn.ConvTranspose2d(1, 1, kernel, stride=stride)], geometry)


trunk = vgg16_fcn_trunk(first_padding=100)
image_geometry = Geometry()
pool3, pool4 = chain_geometry(trunk[:10]), chain_geometry(trunk[:14])
fc7 = chain_geometry(trunk)
up2 = upsampled(fc7, 4, 2)            # FCN-16s/8s: score x2 ...
up4 = upsampled(up2, 4, 2)            # FCN-8s: ... and x2 again
offsets = {
    "pool4 scores, to add to score x2": crop_offset(big=pool4, small=up2),
    "pool3 scores, to add to score x4": crop_offset(big=pool3, small=up4),
    "FCN-32s output (x32, kernel 64)": crop_offset(big=upsampled(fc7, 64, 32),
                                                   small=image_geometry),
    "FCN-16s output (x16, kernel 32)": crop_offset(big=upsampled(up2, 32, 16),
                                                   small=image_geometry),
    "FCN-8s output (x8, kernel 16)": crop_offset(big=upsampled(up4, 16, 8),
                                                 small=image_geometry),
}
print("  geometry (pixel i of a map sits at start + i * stride on the image):")
for name, g in (("pool3", pool3), ("pool4", pool4), ("fc7 / scores", fc7)):
    print(f"    {name:<13} stride {g.jump:>3g}   start {g.start:>7g}   RF {g.rf:>4g}")
print("  crop offsets, by geometry.crop_offset:")
for name, offset in offsets.items():
    print(f"    {name:<34} {offset:>3}")
print()

# The same trunk with "same" padding everywhere cannot take a small image at all.
small_image = on_device(host.random((1, 1, SIZE, SIZE)))
map_sizes, refused = [], None
for layer in vgg16_fcn_trunk(first_padding=1):
    try:
        small_image = layer(small_image)
    except ValueError as error:
        refused = error
        break
    map_sizes.append(small_image.shape[2])
padded_100 = on_device(host.random((1, 1, SIZE, SIZE)))
for layer in trunk:
    padded_100 = layer(padded_100)
full_output = nn.ConvTranspose2d(1, 1, 64, stride=32, device=lesson.device)(padded_100)
misaligned = None
try:
    crop_offset(big=upsampled(chain_geometry(vgg16_fcn_trunk(first_padding=1)), 64, 32),
                small=image_geometry)
except ValueError as error:
    misaligned = error

lesson.say(f"""
    The FCN paper made VGG16, a classifier for 224x224 images, fully convolutional. Its
    fc6 became a 7x7 convolution WITHOUT padding, which needs a pool5 map of at least 7x7,
    i.e. an image of at least 7 x 32 = 224 pixels. With ordinary padding, a {SIZE}x{SIZE}
    image shrinks to {map_sizes[-1]}x{map_sizes[-1]} at pool5 and fc6 refuses it:
    "{str(refused).split(': ')[-1]}". The authors' fix was to pad the very first
    convolution by 100 pixels: now any image gets through (a {SIZE}x{SIZE} image gives
    {padded_100.shape[2]}x{padded_100.shape[3]} scores, up-sampled x32 to
    {full_output.shape[2]}x{full_output.shape[3]}).

    The price: every map is shifted with respect to the image, by an amount that depends
    on the path it took. Follow where pixel 0 of each map sits (its "start", in image
    pixels): pool4 starts at {pool4.start:g}, the scores at {fc7.start:g}. A transposed
    convolution with no padding moves the start back by (K - 1)/2 of its output pixels,
    and to add two maps or return to the image, the bigger one is cropped by the difference
    of starts over the stride. geometry.crop_offset gives exactly the crops of the FCN
    reference code: 5 for pool4, 9 for pool3, and 19, 27, 31 for the outputs of FCN-32s,
    16s and 8s. Without the 100-pixel padding, the x32 output would start inside the image:
    "{str(misaligned).split(': ', 1)[-1]}".
""")
assert list(offsets.values()) == [5, 9, 19, 27, 31], f"the FCN's offsets: {offsets}"
assert fc7.jump == 32 and fc7.rf == 404, f"FCN-32s's coarse map: {fc7}"
assert refused is not None and map_sizes[-1] == SIZE // 32, "fc6 needs a 7x7 pool5"
assert tuple(padded_100.shape[2:]) == (2, 2), f"scores of a 64-px image: {padded_100.shape}"
assert full_output.shape[2] - offsets["FCN-32s output (x32, kernel 64)"] >= SIZE, (
    "after the crop there is still a full image's worth of output")
assert misaligned is not None and "misaligned by -80" in str(misaligned), misaligned


# %% [markdown]
# ## 5. minifcn's encoder needs no crop
#
# With 'same' padding, minifcn's encoder keeps maps aligned with the image, so no crop is
# needed.

# %%
lesson.heading("5. minifcn's encoder needs no crop")

fcn8s = build_model("fcn8s").to(lesson.device)
encoder_layers_8s = [layer for pair in fcn8s.encoder.stages() for layer in pair]
pool4_scores = chain_geometry(encoder_layers_8s[:8])
score_x2 = chain_geometry([fcn8s.upscore2], chain_geometry(
    encoder_layers_8s + [fcn8s.fc6, fcn8s.fc7, fcn8s.score_fr]))
lesson.say(f"""
    minifcn pads every 3x3 convolution by 1 ("same" padding: the size is kept), has no
    7x7 fc6, and accepts only images whose sides are multiples of 32. Then every map of
    stage k is exactly the image size / 2**k, and its pixels are centred on the blocks they
    pool: pool4's pixel 0 starts at {pool4_scores.start:g} = (16 - 1)/2, and so does the x2
    up-sampled score map ({score_x2.start:g}, stride {score_x2.jump:g} for both). FCN-8s
    computes its crops from this geometry when it is built, and they come out as
    crop_pool4.offset = {fcn8s.crop_pool4.offset} and crop_pool3.offset =
    {fcn8s.crop_pool3.offset}: nothing to cut.
""")
assert fcn8s.crop_pool4.offset == (0, 0), fcn8s.crop_pool4.offset
assert fcn8s.crop_pool3.offset == (0, 0), fcn8s.crop_pool3.offset
assert crop_offset(big=pool4_scores, small=score_x2) == 0, (pool4_scores, score_x2)


# %% [markdown]
# ## 6. Images that are not a multiple of 32
#
# What happens to an image whose sides are not a multiple of the overall stride of 32, and
# what to do about it.

# %%
lesson.heading("6. Images that are not a multiple of 32")

odd_size = (48, 64)
odd_image = on_device(host.random((1, 3, *odd_size)))
try:
    fcn8s(odd_image)
    refusal = None
except ValueError as error:
    refusal = error
odd_features = fcn8s.encoder(odd_image)
odd_sizes = [tuple(p.shape[2:]) for p in odd_features.pooled]
print(f"  fcn8s({odd_size[0]}x{odd_size[1]} image): ValueError: {refusal}")
print(f"  the encoder alone: pooled map sizes {odd_sizes}")
print()
lesson.say(f"""
    A {odd_size[0]}-pixel side is 1.5 x 32: halving it gives {odd_sizes[3][0]} rows at
    pool4, and the next 2x2 pool can only keep {odd_sizes[4][0]} of them (the last row is
    dropped). Up-sampling that x2 gives {2 * odd_sizes[4][0]} rows, which cannot be added
    to pool4's {odd_sizes[3][0]}, and the final output would not be {odd_size[0]} rows
    either. Rather than fail somewhere deep inside, the models check the size first and
    say why. Pad or resize such images to a multiple of 32 first (SegmentationFolder,
    which reads images from disk, scales and crops them to its image_size).
""")
assert refusal is not None and "multiples of 32" in str(refusal), refusal
assert odd_sizes[3][0] == 3 and odd_sizes[4][0] == 1, odd_sizes
assert 2 * odd_sizes[4][0] != odd_sizes[3][0], "the x2 up-sampled map cannot meet pool4"

lesson.done()
