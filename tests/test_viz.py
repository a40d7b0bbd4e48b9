"""The pictures: a row of panels drawn as they are, titled when asked; the predictions
figure written as a PNG."""

from __future__ import annotations

import numpy as np
import pytest

from minifcn import viz
from minifcn.data import Shapes
from minifcn.models import build_model

plt = viz._pyplot()


def test_a_row_of_panels_is_drawn_as_it_is_with_titles_when_asked():
    figure, axes = plt.subplots(2, 2)
    image = np.linspace(-0.5, 1.5, 12).reshape(2, 2, 3)  # floats outside [0, 1]
    colours = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    viz.show_panels(axes[0], [image, colours], ["image", "mask"], fontsize=7)
    viz.show_panels(axes[1], [image, colours])
    for axis in axes.ravel():
        assert list(axis.get_xticks()) == [] and list(axis.get_yticks()) == []
        assert axis.images[0].get_interpolation() == "nearest"
    np.testing.assert_array_equal(axes[0, 0].images[0].get_array(), np.clip(image, 0, 1))
    np.testing.assert_array_equal(axes[0, 1].images[0].get_array(), colours)  # untouched
    assert [axis.get_title() for axis in axes[0]] == ["image", "mask"]
    assert axes[0, 0].title.get_fontsize() == 7
    assert [axis.get_title() for axis in axes[1]] == ["", ""]
    plt.close(figure)


def test_panels_and_axes_must_pair_up():
    figure, axes = plt.subplots(1, 2)
    with pytest.raises(ValueError):
        viz.show_panels(axes, [np.zeros((2, 2, 3))])
    plt.close(figure)


def test_the_predictions_figure_is_written(tmp_path):
    dataset = Shapes(3, 32, seed=0, split="val")
    model = build_model("fcn32s", Shapes.num_classes, widths=(4, 4, 4, 4, 4))
    path = tmp_path / "predictions.png"
    viz.save_predictions(str(path), model, dataset, count=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
