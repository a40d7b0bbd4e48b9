"""minifcn.testing, the public toolkit: each assertion passes correct code and fails broken
code with a message that names what is wrong; the strategies draw only what PyTorch accepts;
the pytest plugin runs a user's project on NumPy and the strict CuPy stand-in; the README's
example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minifcn import get_array_module, nn
from minifcn.backend import Generator
from minifcn.functional import (
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_forward,
    cross_entropy_forward,
)
from minifcn.functional.pool import max_pool2d_forward, max_pool2d_indices
from minifcn.nn import BatchNorm2d
from minifcn.testing import (
    CONV_OUTPUT_FORMULA,
    assert_adjoint,
    assert_close_to,
    assert_gradients,
    assert_gradients_accumulate,
    assert_output_shape,
    assert_pair_gradients,
    conv_output_size,
    mismatch_report,
    pool_output_size,
)
from minifcn.testing.strategies import (
    arrays,
    batch_norm_configs,
    conv_configs,
    loss_configs,
    nchw_shapes,
    pool_configs,
    seeds,
    tied_arrays,
)

README = Path(__file__).resolve().parents[1] / "README.md"


class Swish(nn.Module):
    """y = x * sigmoid(x), as a user would write it."""

    def forward(self, x):
        self.x, self.s = x, 1.0 / (1.0 + get_array_module(x).exp(-x))
        return x * self.s

    def backward(self, dy):
        return dy * self.s * (1.0 + self.x * (1.0 - self.s))


class SwishWrongDerivative(Swish):
    def backward(self, dy):
        return dy * self.s  # forgot the product rule's second term


class SwishNoReturn(Swish):
    def backward(self, dy):
        self.dx = dy * self.s * (1.0 + self.x * (1.0 - self.s))


class SwishHostGradient(Swish):
    def backward(self, dy):
        return np.zeros(self.x.shape)  # a NumPy array whatever the input's backend


class Linear(nn.Module):
    """y = x W^T + b with W (F, C), as a user would write it; ``transposed_dw`` is the bug."""

    def __init__(self, features: int, transposed_dw: bool = False):
        super().__init__()
        rng = np.random.default_rng(7)
        self.weight = nn.Parameter(rng.standard_normal((features, features)))
        self.bias = nn.Parameter(rng.standard_normal(features))
        self.transposed_dw = transposed_dw

    def forward(self, x):
        self.x = x
        return x @ self.weight.data.T + self.bias.data

    def backward(self, dy):
        dw = dy.T @ self.x
        self.weight.grad += dw.T if self.transposed_dw else dw
        self.bias.grad += dy.sum(axis=0)
        return dy @ self.weight.data


# ---------------------------------------------------------------------------------------
# assert_gradients


def test_assert_gradients_passes_a_correct_user_module(bk, rng):
    report = assert_gradients(Swish(), bk.asarray(rng.standard_normal((2, 3, 4, 5))))
    assert report.max_error < 1e-6 and set(report.errors) == {"x"}
    report = assert_gradients(Linear(4).to(bk.device), bk.asarray(rng.standard_normal((5, 4))))
    assert set(report.errors) == {"x", "weight", "bias"}


def test_assert_gradients_names_dx_the_index_and_both_values(bk, rng):
    x = bk.asarray(rng.standard_normal((2, 3, 4, 5)))
    with pytest.raises(AssertionError) as caught:
        assert_gradients(SwishWrongDerivative(), x, config={"shape": (2, 3, 4, 5)})
    message = str(caught.value)
    assert "assert_gradients(SwishWrongDerivative): the gradient dx is wrong" in message
    index = tuple(int(i) for i in re.search(r"worst at index \(([\d, ]+)\)", message)
                  .group(1).split(","))
    got = float(re.search(r"got (\S+) \(from backward\)", message).group(1))
    expected = float(re.search(r"expected (\S+) \(central differences", message).group(1))
    # the reported value is backward's at the reported index (assert_gradients' dy: seed + 1)
    module = SwishWrongDerivative()
    y = module(x)
    dy = Generator(1).standard_normal(y.shape, dtype=y.dtype, xp=bk.xp)
    assert got == pytest.approx(float(bk.numpy(module.backward(dy))[index]), rel=1e-12)
    assert got != pytest.approx(expected, rel=1e-3)
    assert "tolerance rtol=1e-06" in message and "configuration: shape=(2, 3, 4, 5)" in message


def test_assert_gradients_names_a_transposed_weight_gradient(bk, rng):
    x = bk.asarray(rng.standard_normal((5, 4)))
    with pytest.raises(AssertionError) as caught:
        assert_gradients(Linear(4, transposed_dw=True).to(bk.device), x)
    message = str(caught.value)
    assert "the gradient weight.grad is wrong" in message
    assert "dx 0.0e+00 (ok)" in message or re.search(r"dx \d\.\de-\d+ \(ok\)", message)
    assert re.search(r"bias\.grad \S+ \(ok\)", message)
    assert "right values in the wrong places" in message  # dW^T holds dW's numbers


def test_assert_gradients_hints_a_zero_gradient_and_a_constant_factor(rng):
    class Zero(Swish):
        def backward(self, dy):
            return dy * 0.0

    class Halved(Swish):
        def backward(self, dy):
            return 0.5 * super().backward(dy)

    x = rng.standard_normal((2, 6))
    with pytest.raises(AssertionError, match="dx is 0 everywhere"):
        assert_gradients(Zero(), x)
    with pytest.raises(AssertionError, match=r"got = 1/2 x expected"):
        assert_gradients(Halved(), x)
    # no hint where none applies (the missing term is neither zero, scale nor permutation)
    with pytest.raises(AssertionError) as caught:
        assert_gradients(SwishWrongDerivative(), x)
    assert "hint" not in str(caught.value)


def test_assert_gradients_says_what_backward_failed_to_give(bk, rng):
    x = bk.asarray(rng.standard_normal((2, 3)))
    with pytest.raises(AssertionError, match=r"returned None for dx: does it return"):
        assert_gradients(SwishNoReturn(), x)
    if bk.name != "numpy":
        with pytest.raises(AssertionError, match=r"dx is a numpy\.ndarray.*get_array_module"):
            assert_gradients(SwishHostGradient(), x)


def test_assert_gradients_needs_float64(rng):
    with pytest.raises(TypeError, match="x is float32; gradient checks need float64"):
        assert_gradients(Swish(), rng.standard_normal((2, 3)).astype(np.float32))
    with pytest.raises(TypeError, match="parameter weight is float32"):
        assert_gradients(Linear(3).to(dtype="float32"), rng.standard_normal((2, 3)))


# ---------------------------------------------------------------------------------------
# assert_gradients_accumulate


class Scale(nn.Module):
    """y = x * weight + bias per feature, as a user would write it, with one of the mistakes
    the check is for: ``assigns`` .grad, ``ignores_frozen`` parameters, or a dx that
    ``depends_on_freezing``."""

    def __init__(self, features: int, mistake: str | None = None):
        super().__init__()
        rng = np.random.default_rng(3)
        self.weight = nn.Parameter(rng.standard_normal(features))
        self.bias = nn.Parameter(rng.standard_normal(features))
        self.mistake = mistake

    def forward(self, x):
        self.x = x
        return x * self.weight.data + self.bias.data

    def backward(self, dy):
        for param, grad in ((self.weight, (dy * self.x).sum(axis=0)),
                            (self.bias, dy.sum(axis=0))):
            if not param.requires_grad and self.mistake != "ignores_frozen":
                continue
            if self.mistake == "assigns":
                param.grad = grad
            else:
                param.grad += grad
        dx = dy * self.weight.data
        if self.mistake == "depends_on_freezing" and not self.weight.requires_grad:
            return 0 * dx
        return dx


def test_assert_gradients_accumulate_passes_correct_modules(bk, rng):
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    module = Scale(3).to(bk.device)
    assert_gradients_accumulate(module, bk.asarray(x), bk.asarray(dy))
    assert module.weight.requires_grad and module.bias.requires_grad  # unfrozen again
    assert not bk.numpy(module.weight.grad).any()  # gradients left at zero
    bn = BatchNorm2d(2, device=bk.device, dtype="float64")
    x4, dy4 = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 2, 3, 3))
    assert_gradients_accumulate(bn, bk.asarray(x4), bk.asarray(dy4), config={"C": 2})


@pytest.mark.parametrize("mistake,expected", [
    ("assigns", r"weight.grad is 1 times one pass's gradient, expected 3: backward must ADD "
                r"into .grad \(param.grad \+= ...\), never assign it"),
    ("ignores_frozen", r"weight has requires_grad=False, yet backward wrote into weight.grad"),
    ("depends_on_freezing", r"freezing weight must change nothing else. dx with weight frozen "
                            r"differs from the expected values"),
])
def test_assert_gradients_accumulate_names_each_mistake(bk, rng, mistake, expected):
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    with pytest.raises(AssertionError, match=expected) as caught:
        assert_gradients_accumulate(Scale(3, mistake).to(bk.device), bk.asarray(x),
                                    bk.asarray(dy), config={"features": 3})
    assert "assert_gradients_accumulate(Scale)" in str(caught.value)


def test_assert_gradients_accumulate_needs_a_trainable_parameter(rng):
    x = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"assert_gradients_accumulate\(ReLU\): the module "
                                         r"has no trainable parameter"):
        assert_gradients_accumulate(nn.ReLU(), x, x)
    frozen = Scale(3).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        assert_gradients_accumulate(frozen, x, x)


# ---------------------------------------------------------------------------------------
# assert_pair_gradients


def conv_problem(rng, bk):
    inputs = dict(x=bk.asarray(rng.standard_normal((2, 3, 6, 5))),
                  weight=bk.asarray(rng.standard_normal((4, 3, 3, 2))),
                  bias=bk.asarray(rng.standard_normal(4)))
    return inputs, dict(stride=(2, 1), padding=1)


def test_assert_pair_gradients_passes_conv2d(bk, rng):
    inputs, static = conv_problem(rng, bk)
    report = assert_pair_gradients(conv2d_forward, conv2d_backward, inputs,
                                   ["x", "weight", "bias"], static=static)
    assert set(report.errors) == {"x", "weight", "bias"} and report.max_error < 1e-6


def test_assert_pair_gradients_names_a_flipped_weight_gradient(bk, rng):
    def backward_flipped(dy, cache):
        dx, dweight, dbias = conv2d_backward(dy, cache)
        return dx, dweight[:, :, ::-1, ::-1], dbias

    inputs, static = conv_problem(rng, bk)
    with pytest.raises(AssertionError) as caught:
        assert_pair_gradients(conv2d_forward, backward_flipped, inputs,
                              ["x", "weight", "bias"], static=static, config=static)
    message = str(caught.value)
    assert "assert_pair_gradients(conv2d_forward): the gradient dweight is wrong" in message
    assert "right values in the wrong places" in message
    assert "configuration: stride=(2, 1), padding=1" in message


def test_assert_pair_gradients_says_which_gradient_is_missing(bk, rng):
    inputs, static = conv_problem(rng, bk)
    with pytest.raises(AssertionError, match="returned None for dbias"):
        assert_pair_gradients(conv2d_forward, lambda dy, c: (*conv2d_backward(dy, c)[:2], None),
                              inputs, ["x", "weight", "bias"], static=static)
    with pytest.raises(AssertionError, match=r"returned 1 gradient\(s\), expected 3"):
        assert_pair_gradients(conv2d_forward, lambda dy, c: (conv2d_backward(dy, c)[0],),
                              inputs, ["x", "weight", "bias"], static=static)
    with pytest.raises(TypeError, match="'w' in wrt must name an array"):
        assert_pair_gradients(conv2d_forward, conv2d_backward, inputs, ["w"], static=static)


# ---------------------------------------------------------------------------------------
# assert_adjoint, assert_output_shape, assert_close_to


def test_assert_adjoint_passes_conv_and_its_transpose_and_fails_a_scaled_one(bk, rng):
    w = bk.asarray(rng.standard_normal((4, 3, 3, 3)))
    x_shape, y_shape = (2, 3, 7, 6), (2, 4, 3, 2)

    def forward(x):
        return conv2d_forward(x, w, stride=2)[0]

    def transpose(y):
        return conv_transpose2d_forward(y, w, stride=2, output_padding=(0, 1))[0]

    assert_adjoint(forward, transpose, x_shape, y_shape, xp=bk.xp)
    with pytest.raises(AssertionError) as caught:
        assert_adjoint(forward, lambda y: 2.0 * transpose(y), x_shape, y_shape, xp=bk.xp,
                       config={"stride": 2})
    message = str(caught.value)
    assert "<A x, y> = " in message and "<x, A^T y> = " in message
    assert "their ratio is 2" in message and "configuration: stride=2" in message
    with pytest.raises(AssertionError, match=r"transpose\(y\) gave \(2, 3, 7, 5\)"):
        assert_adjoint(forward, lambda y: conv_transpose2d_forward(y, w, stride=2)[0],
                       x_shape, y_shape, xp=bk.xp)


def test_assert_output_shape_names_the_formula_and_the_configuration():
    expected = (2, 3, *conv_output_size((7, 6), (3, 3), (2, 2), (1, 1), (1, 1)))
    assert_output_shape((2, 3, 4, 3), expected, formula=CONV_OUTPUT_FORMULA)
    with pytest.raises(AssertionError) as caught:
        assert_output_shape((2, 3, 3, 3), expected, formula=CONV_OUTPUT_FORMULA,
                            config={"kernel_size": 3, "stride": 2, "padding": 1})
    message = str(caught.value)
    assert "(2, 3, 3, 3) differs from the expected (2, 3, 4, 3)" in message
    assert "axis 2: got 3, expected 4" in message and "axis 3" not in message
    assert CONV_OUTPUT_FORMULA in message and "kernel_size=3, stride=2, padding=1" in message


def test_mismatch_report_counts_and_locates_the_worst_entry(bk):
    expected = np.arange(24.0).reshape(2, 3, 4)
    got = expected.copy()
    assert mismatch_report(bk.asarray(got), expected) is None
    got[1, 2, 3] += 0.5
    got[0, 0, 1] += 1e-3
    message = mismatch_report(bk.asarray(got), expected, name="y", config={"k": 3})
    assert message.startswith("y differs from the expected values: 2 of 24 entries (8.3%)")
    assert "worst at index (1, 2, 3): got 23.5, expected 23.0" in message
    assert "max abs error 0.5" in message and "configuration: k=3" in message
    assert mismatch_report(got[0], expected) == ("output has the wrong shape: got (3, 4), "
                                                 "expected (2, 3, 4)")
    nan = np.array([np.nan, 1.0])
    assert mismatch_report(nan, nan) is None
    assert "worst at index (0,): got nan" in mismatch_report(nan, np.array([0.0, 1.0]))
    with pytest.raises(AssertionError, match="1 of 24 entries"):
        assert_close_to(bk.asarray(got), expected, rtol=1e-3)


# ---------------------------------------------------------------------------------------
# strategies


@settings(max_examples=10)
@given(config=batch_norm_configs(), x=arrays(nchw_shapes()))
def test_batch_norm_configs_are_accepted_and_match_torch(torch, config, x):
    x = np.resize(x, config.shape)  # any values; the config's shape
    ours = BatchNorm2d(config.num_features, **config.kwargs, dtype="float64")
    theirs = torch.nn.BatchNorm2d(config.num_features, **config.kwargs, dtype=torch.float64)
    assert_close_to(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), config=config)


@settings(max_examples=10)
@given(config=loss_configs(), seed=seeds)
def test_loss_configs_are_accepted_and_match_torch(torch, config, seed):
    logits = np.random.default_rng(seed).standard_normal(config.logits_shape)
    target = config.target
    assert (target == config.ignore_index).any() or target.size == 1
    assert (target != config.ignore_index).any()
    weight = None if config.weight is None else np.array(config.weight)
    ours, _ = cross_entropy_forward(logits, target, weight, **config.kwargs)
    theirs = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(target),
        None if weight is None else torch.from_numpy(weight), **config.kwargs)
    assert_close_to(ours, theirs.numpy(), config=config)


@settings(max_examples=10)
@given(config=pool_configs(overlapping=True), data=st.data())
def test_overlapping_pool_configs_overlap_and_tie_like_torch(torch, config, data):
    assert all(s < k for s, k in zip(config.stride, config.kernel_size, strict=True))
    x = data.draw(tied_arrays(config.input_shape))
    assert set(np.unique(x)) <= {-2.0, -1.0, 0.0, 1.0, 2.0}
    args = dict(kernel_size=config.kernel_size, stride=config.stride, padding=config.padding,
                ceil_mode=config.ceil_mode)
    y, cache = max_pool2d_forward(x, **args)
    y_torch, i_torch = torch.nn.functional.max_pool2d(torch.from_numpy(x), **args,
                                                      return_indices=True)
    assert_close_to(y, y_torch.numpy(), config=config)
    assert_close_to(max_pool2d_indices(cache), i_torch.numpy(), name="indices", config=config)
    assert y.shape[2:] == pool_output_size(config.size, config.kernel_size, config.stride,
                                           config.padding, ceil_mode=config.ceil_mode)


@given(x=arrays(nchw_shapes(max_size=12), distinct=True))
def test_distinct_arrays_have_no_ties_nor_near_ties(x):
    assert x.dtype == np.float64
    gaps = np.diff(np.sort(x.ravel()))
    assert gaps.size == 0 or gaps.min() >= 6.0 / x.size * (1 - 1e-9)
    assert np.abs(x).max() < 3.0


@settings(max_examples=5)
@given(data=st.data(), x=arrays((2, 3), dtype="float32"), config=conv_configs())
def test_arrays_draws_the_dtype_and_refuses_two_modes(data, x, config):
    assert x.dtype == np.float32 and x.shape == (2, 3) and np.abs(x).max() <= 3.0
    assert data.draw(arrays(st.just(config.input_shape))).shape == config.input_shape
    with pytest.raises(ValueError, match="at most one of"):
        data.draw(arrays((2,), distinct=True, tied=True))


# ---------------------------------------------------------------------------------------
# packaging: imports, the plugin in a user's project, the README's example


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_importing_minifcn_and_its_assertions_needs_neither_hypothesis_nor_pytest():
    result = run_python(
        "import sys\n"
        "sys.modules['hypothesis'] = None  # as if not installed\n"
        "import minifcn, minifcn.testing, minifcn.testing.plugin\n"
        "from minifcn.testing import assert_gradients\n"
        "try:\n"
        "    import minifcn.testing.strategies\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n")
    assert result.returncode == 0, result.stderr
    assert 'pip install "minifcn[test]"' in result.stdout
    result = run_python("import sys, minifcn, minifcn.testing\n"
                        "print(sorted(m for m in ('hypothesis', 'pytest') if m in sys.modules))")
    assert result.returncode == 0 and result.stdout.strip() == "[]", result


def readme_example() -> str:
    """The first Python block of the README's "Property-test your own layer" section."""
    section = README.read_text().split("## Property-test your own layer", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


NP_ON_DEVICE = '''
import numpy as np
from minifcn import nn
from minifcn.testing import assert_close_to


class HostReLU(nn.Module):
    def forward(self, x):
        return np.maximum(np.asarray(x), 0.0)  # np. where xp. was meant


def test_host_relu(xp):
    assert_close_to(HostReLU()(xp.asarray(np.array([-1.0, 2.0]))), np.array([0.0, 2.0]))
'''


def test_a_user_project_runs_on_both_backends_through_the_plugin(pytester):
    pytester.makepyfile(test_readme_example=readme_example(), test_host_relu=NP_ON_DEVICE)
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*::test_swish_gradients[[]numpy[]] PASSED*",
                                 "*::test_swish_gradients[[]strict[]] PASSED*"])
    result.stdout.fnmatch_lines(["*test_host_relu.py::test_host_relu[[]numpy[]] PASSED*",
                                 "*test_host_relu.py::test_host_relu[[]strict[]] FAILED*"])
    result.stdout.fnmatch_lines(["*Implicit conversion to a NumPy array is not allowed*"])
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1 and outcomes.get("passed") >= 3, outcomes


def test_no_hint_when_the_gradient_is_only_slightly_off(rng):
    class SlightlyOff(Swish):
        def backward(self, dy):
            return super().backward(dy) + 1e-5 * dy

    with pytest.raises(AssertionError) as caught:
        assert_gradients(SlightlyOff(), rng.standard_normal((3, 4)))
    assert "the gradient dx is wrong" in str(caught.value) and "hint" not in str(caught.value)
