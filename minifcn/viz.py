"""Pictures of a segmenter at work: predictions beside the truth, and training curves.

Everything here runs on the host with matplotlib's non-interactive Agg backend, so it
works on a machine with no screen.
"""

from __future__ import annotations

from . import backend
from .backend import np
from .data import VOID_COLOR, colorize, load_image, voc_palette
from .grad_mode import no_grad

__all__ = ["predict_mask", "predict_masks", "save_curves", "save_predictions", "show_panels"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@no_grad()
def predict_masks(model, images, batch_size: int = 16):
    """Class index per pixel, (N, H, W) on the host, for host images (N, C, H, W); the model
    in evaluation mode, under ``no_grad`` (nothing kept for a backward)."""
    model.eval()
    dtype = next(iter(model.parameters())).dtype
    out = []
    for start in range(0, len(images), batch_size):
        batch = backend.to_device(images[start:start + batch_size], model.device)
        out.append(backend.to_numpy(model(batch.astype(dtype, copy=False)).argmax(axis=1)))
    return np.concatenate(out)


def predict_mask(model, image) -> np.ndarray:
    """Class index per pixel, (H, W) uint8 on the host, for one host image (3, H, W) of any
    size, or the path of an image file (read by :func:`~minifcn.data.load_image`, and then
    held by nothing else: a photo's 144 MB per 12 megapixels are freed once it is padded):
    padded by reflection to a multiple of the model's output stride, segmented under
    ``no_grad``, and cropped back.

    Memory: with no caches kept and the convolutions' columns in bands
    (:func:`~minifcn.functional.im2col.conv_chunks`), the peak is about two of the largest
    activations (a layer's input and output): for FCN-8s at the default widths, 16 channels
    at full resolution, about 130 bytes a pixel for the forward.
    """
    if not hasattr(image, "shape"):
        image = load_image(image)
    height, width = image.shape[1:]
    stride = model.encoder.stride
    pad_h, pad_w = -height % stride, -width % stride
    if pad_h or pad_w:  # reflection needs more rows than it pads; a sliver repeats its edge
        mode = "reflect" if pad_h < height and pad_w < width else "edge"
        image = np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode=mode)
    mask = predict_masks(model, image[None], batch_size=1)[0, :height, :width]
    return mask.astype(np.uint8) if mask.max(initial=0) < 256 else mask


def show_panels(axes, panels, titles=None, fontsize=None) -> None:
    """Draw one row of image panels (an image, colourised masks, ...) into ``axes``, one
    each, pixels as they are (no smoothing) and no ticks; ``titles`` over them if given.

    Args:
        axes: a row of matplotlib axes, as many as ``panels``.
        panels: (H, W, 3) arrays: floats (clipped to [0, 1]) or uint8 colours.
        titles: one string per panel, or None for a row without titles.
        fontsize: of the titles (matplotlib's default if None).
    """
    for column, (axis, panel) in enumerate(zip(axes, panels, strict=True)):
        axis.imshow(np.clip(panel, 0, 1) if panel.dtype.kind == "f" else panel,
                    interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        if titles is not None:
            axis.set_title(titles[column], fontsize=fontsize)


def save_predictions(path: str, model, dataset, count: int = 6) -> None:
    """Rows of image | ground truth | prediction for the first ``count`` items of
    ``dataset``, with a legend of the class colours."""
    plt = _pyplot()
    count = min(count, len(dataset))
    images = np.stack([dataset[i][0] for i in range(count)])
    truths = np.stack([dataset[i][1] for i in range(count)])
    predictions = predict_masks(model, images)
    figure, axes = plt.subplots(count, 3, figsize=(6.6, 2.2 * count + 0.6), squeeze=False)
    for row in range(count):
        panels = (images[row].transpose(1, 2, 0), colorize(truths[row]),
                  colorize(predictions[row]))
        show_panels(axes[row], panels, ("image", "ground truth", "prediction") if row == 0
                    else None)
    names = list(getattr(dataset, "classes", None) or range(dataset.num_classes))
    palette = voc_palette(len(names))  # the colours colorize uses for labels 0..C-1
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[i] / 255.0)
               for i in range(len(names))]
    handles.append(plt.Rectangle((0, 0), 1, 1, color=np.asarray(VOID_COLOR) / 255.0))
    figure.legend(handles, [str(n) for n in names] + ["void (ignored)"], loc="lower center",
                  ncol=min(5, len(handles)), frameon=False)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def save_curves(path: str, rows: list[dict],
                measures=(("mean_iou", "mean IoU"), ("pixel_acc", "pixel accuracy"))) -> None:
    """Training and validation loss, and validation measures (``(column, label)`` pairs,
    by default mean IoU and pixel accuracy), by epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(epochs, [r["train_loss"] for r in rows], marker="o", label="train")
    left.plot(epochs, [r["val_loss"] for r in rows], marker="o", label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    left.legend()
    styles = [dict(marker="o", color="tab:green"), dict(marker=".", color="tab:gray")]
    for (column, label), style in zip(measures, styles, strict=False):
        right.plot(epochs, [r[column] for r in rows], label=label, **style)
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
