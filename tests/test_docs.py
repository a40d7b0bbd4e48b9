"""The API reference (minifcn.reference): every public name documented, the docstrings'
examples true, the pages built without a warning, and the lessons' names linked to them."""

from __future__ import annotations

import doctest
import html
import importlib
import inspect
import re
from pathlib import Path

import pytest

from minifcn import reference

MODULES = reference.REFERENCE_MODULES
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _public(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(module_name)
    return [(name, getattr(module, name)) for name in module.__all__
            if not inspect.ismodule(getattr(module, name))]


def test_every_minifcn_module_a_page_lists_has_a_page_too():
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            listed = getattr(module, name)
            if inspect.ismodule(listed) and listed.__name__.startswith("minifcn"):
                assert listed.__name__ in MODULES, f"{module_name} lists {listed.__name__}"


# --- the examples in the docstrings ----------------------------------------------------------


def _doctests() -> list[doctest.DocTest]:
    """The docstrings with examples (>>>) among the public modules and their names, each once."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    found: dict[tuple[str | None, int | None], doctest.DocTest] = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, obj in [(module_name, module), *((f"{module_name}.{name}", obj)
                                                   for name, obj in _public(module_name))]:
            if not (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj)):
                continue
            for test in finder.find(obj, name):
                if test.examples:
                    found.setdefault((test.filename, test.lineno), test)
    return sorted(found.values(), key=lambda test: test.name)


DOCTESTS = _doctests()


def _run(test: doctest.DocTest) -> None:
    """Run one docstring's examples; AssertionError with doctest's report when one fails."""
    report: list[str] = []
    result = doctest.DocTestRunner(optionflags=FLAGS).run(test, out=report.append)
    assert result.failed == 0, "".join(report)


def test_the_key_names_have_examples():
    names = {test.name for test in DOCTESTS}
    for expected in ("minifcn.nn.Conv2d", "minifcn.no_grad",
                     "minifcn.functional.conv_output_size"):
        assert expected in names, f"no example collected for {expected}: {sorted(names)}"


@pytest.mark.parametrize("test", DOCTESTS, ids=[test.name for test in DOCTESTS])
def test_the_docstring_examples_are_true(test):
    _run(test)


def test_a_false_example_fails():
    def double(x):
        """>>> double(2)
        5
        """
        return 2 * x

    [test] = doctest.DocTestFinder().find(double, "double", globs={"double": double})
    with pytest.raises(AssertionError, match=r"Expected:\s+5\s+Got:\s+4"):
        _run(test)


# --- every public name documented --------------------------------------------------------------


@pytest.fixture(scope="module")
def documented():
    pytest.importorskip("pdoc", reason="pdoc, from the course extra, builds the reference")
    return reference.documented_modules()


def _undocumented(documented, module_name: str) -> list[str]:
    """The public names of the module (its __all__, and the methods and properties of its
    classes) without a docstring, as the reference page shows them."""
    import pdoc.doc

    module = documented[module_name]
    missing = [] if module.docstring.strip() else [module_name]
    for name, obj in _public(module_name):
        member = module.members.get(name)
        if member is None:
            missing.append(f"{name} (not on the page)")
            continue
        if not member.docstring.strip():
            missing.append(name)
        if isinstance(member, pdoc.doc.Class):
            for item in member.own_members:
                attribute = inspect.getattr_static(obj, item.name, None)
                if item.name.startswith("_") or not (
                        inspect.isroutine(attribute) or isinstance(attribute, property)):
                    continue
                if not item.docstring.strip():
                    missing.append(f"{name}.{item.name}")
    return missing


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_has_a_docstring(documented, module_name):
    missing = _undocumented(documented, module_name)
    assert not missing, f"{module_name}: no docstring for {', '.join(missing)}"


def test_a_name_without_a_docstring_is_found(documented, monkeypatch):
    monkeypatch.setattr(documented["minifcn.metrics"].members["boundary_f_score"],
                        "docstring", "")
    assert _undocumented(documented, "minifcn.metrics") == ["boundary_f_score"]


# --- the pages -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("pdoc", reason="pdoc, from the course extra, builds the reference")
    site = tmp_path_factory.mktemp("site")
    return site, reference.build_reference(site)


def test_the_reference_builds_without_a_warning(built):
    site, api = built
    assert api.warnings == [], "\n".join(api.warnings)
    assert set(api.pages) == set(MODULES)
    for url in api.pages.values():
        assert (site / url).is_file(), url


def test_a_warning_of_the_build_is_kept(tmp_path, monkeypatch):
    pdoc = pytest.importorskip("pdoc.doc")
    from minifcn import metrics

    monkeypatch.setattr(reference, "REFERENCE_MODULES", ("minifcn.metrics",))
    monkeypatch.setattr(metrics, "__all__", [*metrics.__all__, "no_such_name"])
    pdoc.Module.from_name.cache_clear()  # pdoc keeps each module's documentation
    try:
        api = reference.build_reference(tmp_path)
    finally:
        pdoc.Module.from_name.cache_clear()
    assert any("no_such_name" in warning for warning in api.warnings), api.warnings


def _words(text: str) -> list[str]:
    """The words of a docstring or of a page's text (a role such as :func:`x` reads x; the
    page calls the Args section Arguments)."""
    return [word for word in re.findall(r"[A-Za-z]{3,}", re.sub(r":\w+:`~?([^`]+)`", r"\1",
                                                                 text))
            if word not in ("Args", "Arguments")]


def _section(page: str, name: str) -> str:
    """The text of the page's section for ``name``, from its anchor to the next one."""
    start = page.index(f'<section id="{name}">')
    end = page.find("<section id=", start + 1)
    return page[start:end if end > 0 else len(page)]


def _takes_arguments(cls) -> bool:
    """Whether a class's constructor has parameters to show (not an exception's *args)."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters)


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_is_on_its_page_with_signature_and_docstring(built, documented,
                                                                       module_name):
    site, api = built
    page = (site / api.pages[module_name]).read_text()
    for name, obj in _public(module_name):
        assert f'<section id="{name}">' in page, f"{module_name}.{name} has no section"
        # the section without its source code ("View Source"), which holds the docstring too
        section = re.sub(r'<div class="pdoc-code codehilite">.*?</pre></div>', "",
                         _section(page, name), flags=re.DOTALL)
        shown = section[section.index('<div class="docstring">'):]
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", shown)).split())
        first_words = _words(documented[module_name].members[name].docstring)[:6]
        assert " ".join(_words(text)).find(" ".join(first_words)) >= 0, (
            f"{module_name}.{name}: its docstring ({' '.join(first_words)} ...) is not on the "
            f"page")
        if inspect.isroutine(obj) or (inspect.isclass(obj) and _takes_arguments(obj)):
            assert 'class="signature' in section, f"{module_name}.{name}: no signature"
        elif inspect.isclass(obj):
            assert f'<span class="name">{name}</span>' in section, f"{module_name}.{name}"


# --- links from the lessons ----------------------------------------------------------------------


def test_names_in_text_and_code_link_to_their_anchors(built):
    _, api = built
    page = (
        '<div class="jp-RenderedMarkdown"><p>See nn.Conv2d, minifcn.nn.Upsample. and '
        'F.conv2d_forward; minifcn.no_grad() too, not torch.nn.Conv2d nor nn.Nothing. '
        '<code>minifcn.to_numpy(x)</code> <code>Conv2d</code> <code>summary()</code> '
        '<a href="x.html">nn.ReLU</a></p></div>'
        '<pre>nn.Conv2d printed</pre>'
        '<div class="highlight hl-ipython3"><pre><span></span>'
        '<span class="n">y</span> <span class="o">=</span> <span class="n">nn</span>'
        '<span class="o">.</span><span class="n">Conv2d</span><span class="p">(</span>'
        '<span class="n">Shapes</span><span class="p">(),</span> <span class="n">model</span>'
        '<span class="o">.</span><span class="n">nn</span></pre></div>')
    linked = reference.link_names(page, api, {"nn": "minifcn.nn",
                                              "Shapes": "minifcn.data.Shapes"})

    def link(url: str, inner: str) -> str:
        return f'<a class="minifcn-api" href="{url}">{inner}</a>'

    assert link("api/minifcn/nn.html#Conv2d", "nn.Conv2d") + "," in linked
    assert link("api/minifcn/nn.html#Upsample", "minifcn.nn.Upsample") + "." in linked
    assert link("api/minifcn/functional.html#conv2d_forward", "F.conv2d_forward") in linked
    assert link("api/minifcn.html#no_grad", "minifcn.no_grad") + "()" in linked
    assert "not torch.nn.Conv2d nor nn.Nothing." in linked
    assert link("api/minifcn.html#to_numpy", "<code>minifcn.to_numpy(x)</code>") in linked
    assert link("api/minifcn/nn.html#Conv2d", "<code>Conv2d</code>") in linked
    assert link("api/minifcn/models.html#summary", "<code>summary()</code>") in linked
    assert '<a href="x.html">nn.ReLU</a>' in linked, "a link stays as it is"
    assert "<pre>nn.Conv2d printed</pre>" in linked, "printed output is not code"
    assert link("api/minifcn/nn.html#Conv2d", '<span class="n">nn</span><span class="o">.'
                '</span><span class="n">Conv2d</span>') in linked
    assert link("api/minifcn/data.html#Shapes", '<span class="n">Shapes</span>') in linked
    assert '<span class="o">.</span><span class="n">nn</span></pre>' in linked, (
        "model.nn is an attribute, not the module")


def test_a_lessons_aliases_come_from_its_imports():
    aliases = reference.lesson_aliases([
        "import minifcn\nfrom minifcn import nn, models\nimport numpy as np\n",
        "from minifcn.data import Shapes as Toy\nfrom minifcn.functional.conv import "
        "conv2d_naive\nmodels = {}\n"])
    assert aliases == {"minifcn": "minifcn", "nn": "minifcn.nn", "Toy": "minifcn.data.Shapes",
                       "conv2d_naive": "minifcn.functional.conv.conv2d_naive"}


def test_names_resolve_where_they_are_documented(built):
    _, api = built
    assert api.url("minifcn.nn.Conv2d.forward") == "api/minifcn/nn.html#Conv2d.forward"
    # inherited: documented on the base class
    assert api.url("minifcn.nn.Conv2d.parameters") == "api/minifcn/nn.html#Module.parameters"
    # through a submodule, as a lesson imports it
    assert api.url("minifcn.functional.conv.conv2d_naive") == (
        "api/minifcn/functional.html#conv2d_naive")
    assert api.url("minifcn.nn") == "api/minifcn/nn.html"
    assert api.url("minifcn.nn.NoSuchLayer") is None
    assert api.bare("Conv2d") == "api/minifcn/nn.html#Conv2d"


def test_the_template_ships_with_the_package():
    assert (Path(reference.TEMPLATES) / "module.html.jinja2").is_file()
