"""minifcn's API reference, part of the course site: one page per public module.

``minifcn course build`` writes ``OUT/api/minifcn.html``, ``OUT/api/minifcn/nn.html``, ... with
pdoc, from the docstrings and the signatures of each module's ``__all__``; every name has an
anchor (``nn.html#Conv2d``, ``nn.html#Conv2d.forward``). Then the lesson pages link the
names they use to those anchors (:func:`link_names`): ``minifcn.nn.Conv2d``, ``nn.Conv2d``,
``F.conv2d_forward`` or ``minifcn.no_grad`` in the text, names in ``code`` spans, and the
names a lesson imports from minifcn in its code cells.

pdoc is in the ``course`` extra (pip install -e ".[course]").
"""

from __future__ import annotations

import ast
import html
import inspect
import re
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FOLDER", "PROSE_ALIASES", "REFERENCE_MODULES", "Reference", "build_reference",
           "documented_modules", "lesson_aliases", "link_names"]

REFERENCE_MODULES = (
    "minifcn", "minifcn.nn", "minifcn.nn.init", "minifcn.nn.parallel", "minifcn.functional",
    "minifcn.models", "minifcn.data", "minifcn.optim", "minifcn.metrics", "minifcn.testing",
    "minifcn.gradcheck", "minifcn.checkpoint", "minifcn.distributed", "minifcn.backend",
    "minifcn.checks")
"""The modules with a reference page, in the order of the sidebar. A minifcn module that
one of them lists in its ``__all__`` (``minifcn.backend``, ``minifcn.nn.init``) is among
them, so that its link from there works."""

FOLDER = "api"
"""The reference's folder inside the site."""

PROSE_ALIASES = {"minifcn": "minifcn", "nn": "minifcn.nn", "F": "minifcn.functional"}
"""Module names that the lessons' text uses without importing them (``nn.Conv2d``,
``F.conv2d_forward``), on top of each lesson's own imports."""

TEMPLATES = Path(__file__).resolve().parent / "reference_templates"
_LINK_CLASS = "minifcn-api"
_DOTTED = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_PYGMENTS_NAME = '<span class="n">{}</span>'
_PYGMENTS_DOT = '<span class="o">.</span>'
# a chain of names in highlighted Python (nn.Conv2d -> three spans); not one that follows a
# dot (the .nn of model.nn is not the module)
_CODE_CHAIN = re.compile(
    r'(?<!<span class="o">\.</span>)<span class="n">([A-Za-z_]\w*)</span>'
    r'(?:<span class="o">\.</span><span class="n">[A-Za-z_]\w*</span>)*')
_CODE_MODULE = re.compile(r'<span class="nn">(minifcn(?:\.\w+)*)</span>')


@dataclass
class Reference:
    """Where each name is documented, as URLs relative to the site's folder."""

    pages: dict[str, str] = field(default_factory=dict)
    """Module name -> its page ("minifcn.nn" -> "api/minifcn/nn.html")."""
    summaries: dict[str, str] = field(default_factory=dict)
    """Module name -> the first sentence of its docstring."""
    anchors: dict[str, str] = field(default_factory=dict)
    """Name as a page shows it -> its anchor ("minifcn.nn.Conv2d.forward" ->
    "api/minifcn/nn.html#Conv2d.forward")."""
    warnings: list[str] = field(default_factory=list)
    """What pdoc warned about while building (the tests require none)."""
    _homes: dict[int, str] = field(default_factory=dict, repr=False)
    _bare: dict[str, str | None] = field(default_factory=dict, repr=False)

    def url(self, dotted: str) -> str | None:
        """The URL documenting ``dotted`` (a module, or a name in one, with its full module
        path): as a page shows it (``minifcn.to_numpy``), else the page of the object it
        names (``minifcn.functional.conv.conv2d_naive`` is ``minifcn.functional``'s);
        None when the reference does not document it."""
        if dotted in self.pages:
            return self.pages[dotted]
        if dotted in self.anchors:
            return self.anchors[dotted]
        found = _lookup(dotted)
        return self._homes.get(id(found)) if _has_identity(found) else None

    def bare(self, name: str) -> str | None:
        """The anchor of a name written alone (``Conv2d``, ``conv_output_size``) when exactly
        one object of that name has a page; else None."""
        return self._bare.get(name)


def _has_identity(obj) -> bool:
    """Objects that are themselves what a page documents (a number or a string is not:
    255 is not IGNORE_INDEX)."""
    return obj is not None and (inspect.ismodule(obj) or inspect.isclass(obj)
                                or inspect.isroutine(obj)
                                or isinstance(obj, property | classmethod | staticmethod))


def _lookup(dotted: str):
    """The object ``dotted`` names among the loaded minifcn modules (no import runs), or
    None. Attributes first (``minifcn.functional.im2col`` is the function that the package
    exports, not the submodule of that name), then the longest loaded module
    (``minifcn.functional.im2col.im2col``, as a lesson imports it). A class's attributes
    are looked up without calling descriptors (a property, not its value)."""
    parts = dotted.split(".")
    if parts[0] != "minifcn" or "minifcn" not in sys.modules:
        return None
    starts = [(sys.modules["minifcn"], 1)]
    for split in range(len(parts), 1, -1):
        if ".".join(parts[:split]) in sys.modules:
            starts.append((sys.modules[".".join(parts[:split])], split))
            break
    for found, split in starts:
        for part in parts[split:]:
            try:
                found = (inspect.getattr_static(found, part) if inspect.isclass(found)
                         else getattr(found, part))
            except AttributeError:
                break
        else:
            return found
    return None


def build_reference(site: str | Path) -> Reference:
    """Write the reference pages into ``site``/api/ with pdoc and return where each name is.

    Every module of :data:`REFERENCE_MODULES` gets a page (``api/minifcn/nn.html``) with
    each name of its ``__all__``: signature, docstring, and for a class its methods.
    pdoc's warnings are kept in :attr:`Reference.warnings`.
    """
    import pdoc.render

    site = Path(site)
    folder = site / FOLDER
    reference = Reference()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        modules = documented_modules()
        for name, module in modules.items():
            page = folder / f"{name.replace('.', '/')}.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            text = pdoc.render.html_module(module, modules)
            page.write_text(text)
            url = page.relative_to(site).as_posix()
            reference.pages[name] = url
            reference.summaries[name] = _summary(name, module.docstring)
            members = set(module.members)
            for anchor in re.findall(r'\bid="([A-Za-z_][\w.]*)"', text):
                if anchor.split(".")[0] in members:
                    reference.anchors[f"{name}.{anchor}"] = f"{url}#{anchor}"
        (folder / "search.js").write_text(pdoc.render.search_index(modules))
    reference.warnings = [f"{item.category.__name__}: {item.message}" for item in caught]
    _index_objects(reference)
    return reference


def documented_modules() -> dict:
    """pdoc's view of :data:`REFERENCE_MODULES` (``pdoc.doc.Module`` by name), configured
    as the reference renders them. A constant that a package re-exports (``UPSAMPLE_MODES``
    in minifcn.models) shows the docstring written where it is assigned."""
    import pdoc.doc
    import pdoc.render

    pdoc.render.configure(docformat="google", show_source=True, template_directory=TEMPLATES,
                          footer_text=f"minifcn {_version()}")
    modules = {name: pdoc.doc.Module.from_name(name) for name in REFERENCE_MODULES}
    for module in modules.values():
        for member in module.members.values():
            if isinstance(member, pdoc.doc.Variable) and not member.docstring:
                origin = _assigned_in(module.obj, member.name)
                found = pdoc.doc.Module.from_name(origin).get(member.name) if origin else None
                if found is not None and found.docstring:
                    member.docstring = found.docstring
            elif isinstance(member, pdoc.doc.Class):
                _show_inherited_constructor(member)
    for module in modules.values():
        _keep_stars(module)
    return modules


_STAR = re.compile(r"(?<=[\w)\]])\*(?=[\w(\[])")
_CODE_SPAN = re.compile(r"(``.*?``|`[^`]*`)")


def _keep_stars(doc) -> None:
    """The docstrings of ``doc`` and its members with a star between two terms escaped, so
    that Markdown shows ``C*KH*KW`` and ``2*PH - DH*(KH - 1)`` as written rather than in
    italics. Code is left as it is: code spans, and lines indented as a code block (or an
    example)."""
    import pdoc.doc

    def escaped(line: str) -> str:
        if line.startswith("    "):
            return line
        return "".join(part if index % 2 else _STAR.sub(r"\*", part)
                       for index, part in enumerate(_CODE_SPAN.split(line)))

    if doc.docstring and "*" in doc.docstring:
        doc.docstring = "\n".join(escaped(line) for line in doc.docstring.split("\n"))
    if isinstance(doc, pdoc.doc.Namespace):
        for member in doc.own_members if isinstance(doc, pdoc.doc.Class) else (
                doc.members.values()):
            if isinstance(member, pdoc.doc.Doc) and member is not doc:
                _keep_stars(member)


def _show_inherited_constructor(cls) -> None:
    """A class whose ``__init__`` comes from a minifcn base class (Dropout2d from Dropout)
    shows it as its own, so that its section has its signature: ``Dropout2d(p=0.5, ...)``.
    (pdoc lists it among the inherited members otherwise.)"""
    init = cls.members.get("__init__")
    own = (cls.taken_from[0], f"{cls.taken_from[1]}.__init__")
    if init is None or init.taken_from == own or init.taken_from[0].split(".")[0] != "minifcn":
        return
    init.taken_from = own
    for cached in ("_members_by_origin", "own_members", "inherited_members"):
        cls.__dict__.pop(cached, None)


def _assigned_in(module, name: str, depth: int = 3) -> str | None:
    """The module whose code assigns ``name``, following ``from .x import name`` in
    ``module``'s source (a few levels); None when it cannot tell."""
    import importlib.util

    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return None
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom):
            continue
        origin = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                             module.__package__ or module.__name__)
        imported = sys.modules.get(origin)
        if imported is None:
            continue
        if any((alias.name == name and not alias.asname)
               or (alias.name == "*" and name in getattr(imported, "__all__", ()))
               for alias in node.names):
            further = _assigned_in(imported, name, depth - 1) if depth > 1 else None
            return further or origin
    return None


def _summary(name: str, docstring: str) -> str:
    """The first sentence of a module's docstring ("minifcn: " left out of minifcn's)."""
    paragraph = " ".join(docstring.strip().split("\n\n")[0].split())
    sentence = re.split(r"(?<=\.)\s+(?=[A-Z])", paragraph)[0].removeprefix(f"{name}: ")
    return sentence[:1].upper() + sentence[1:]


def _version() -> str:
    import minifcn

    return minifcn.__version__


def _index_objects(reference: Reference) -> None:
    """Each documented object's home: of the pages that show it, the one of the module
    that defines it (to_numpy is minifcn.backend's, also shown on minifcn's page)."""
    homes: dict[int, tuple[int, str]] = {}
    bare: dict[str, set[int]] = {}
    for dotted, url in [*reference.pages.items(), *reference.anchors.items()]:
        found = _lookup(dotted)
        if not _has_identity(found):
            continue
        defined_in = getattr(inspect.getmodule(found), "__name__", "") or ""
        page_module = next(name for name in reference.pages if url.startswith(
            reference.pages[name] + "#") or url == reference.pages[name])
        closeness = len(page_module) if (defined_in + ".").startswith(page_module + ".") else 0
        if id(found) not in homes or closeness > homes[id(found)][0]:
            homes[id(found)] = (closeness, url)
        if "." not in url.partition("#")[2] and not inspect.ismodule(found):
            bare.setdefault(dotted.rsplit(".", 1)[1], set()).add(id(found))
    reference._homes = {key: url for key, (_, url) in homes.items()}
    reference._bare = {name: reference._homes[next(iter(ids))] if len(ids) == 1 else None
                       for name, ids in bare.items()}


# --- links from the lessons --------------------------------------------------------------


def lesson_aliases(sources: Iterable[str]) -> dict[str, str]:
    """What a lesson's code binds to minifcn: ``{"minifcn": "minifcn", "nn": "minifcn.nn",
    "Shapes": "minifcn.data.Shapes"}`` from its imports. A name that the lesson also
    assigns (``models = {...}``) is left out: it may not mean the import."""
    aliases: dict[str, str] = {}
    assigned: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for name in node.names:
                    if name.name.split(".")[0] == "minifcn":
                        if name.asname:
                            aliases[name.asname] = name.name
                        else:
                            aliases["minifcn"] = "minifcn"
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module and (
                    node.module.split(".")[0] == "minifcn"):
                for name in node.names:
                    aliases[name.asname or name.name] = f"{node.module}.{name.name}"
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                assigned.add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                assigned.add(node.name)
            elif isinstance(node, ast.arg):
                assigned.add(node.arg)
    return {name: target for name, target in aliases.items() if name not in assigned}


def _resolve(parts: list[str], aliases: dict[str, str], reference: Reference,
             bare: bool) -> tuple[int, str] | None:
    """The longest prefix of ``parts`` (a name written ``a.b.c``) that the reference
    documents: (number of parts, URL). A name alone only when ``bare`` and it is not a
    module (``nn`` alone is not linked; ``Shapes`` is)."""
    if parts[0] not in aliases:
        return None
    for count in range(len(parts), 0 if bare else 1, -1):
        url = reference.url(".".join([aliases[parts[0]], *parts[1:count]]))
        if url and (count > 1 or "#" in url):
            return count, url
    return None


def _link(url: str, inner: str) -> str:
    return f'<a class="{_LINK_CLASS}" href="{html.escape(url)}">{inner}</a>'


def _link_code(code: str, aliases: dict[str, str], reference: Reference) -> str:
    """Names in highlighted Python (Pygments' spans) that the reference documents."""

    def chain(found: re.Match) -> str:
        text = found.group(0)
        parts = re.findall(r'<span class="n">([A-Za-z_]\w*)</span>', text)
        resolved = _resolve(parts, aliases, reference, bare=True)
        if not resolved:
            return text
        count, url = resolved
        linked = _PYGMENTS_DOT.join(_PYGMENTS_NAME.format(part) for part in parts[:count])
        return _link(url, linked) + text[len(linked):]

    def module(found: re.Match) -> str:  # import minifcn.data: only a module with a page
        url = reference.pages.get(found.group(1))
        return _link(url, found.group(0)) if url else found.group(0)

    return _CODE_MODULE.sub(module, _CODE_CHAIN.sub(chain, code))


def _link_prose(text: str, aliases: dict[str, str], reference: Reference) -> str:
    """Dotted names in running text: ``nn.Conv2d``, ``minifcn.no_grad``, ``F.softmax``."""

    def dotted(found: re.Match) -> str:
        parts = found.group(0).split(".")
        resolved = _resolve(parts, aliases, reference, bare=False)
        if not resolved:
            return found.group(0)
        count, url = resolved
        name = ".".join(parts[:count])
        return _link(url, name) + found.group(0)[len(name):]

    return _DOTTED.sub(dotted, text)


def _code_span_url(text: str, aliases: dict[str, str], reference: Reference) -> str | None:
    """A ``code`` span that is a name, or a call of one (``nn.Conv2d``, ``Upsample``,
    ``minifcn.no_grad()``, ``minifcn.to_numpy(x)``)."""
    found = re.fullmatch(r"\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\(.*\))?\s*", text)
    if not found:
        return None
    parts = found.group(1).split(".")
    resolved = _resolve(parts, aliases, reference, bare=True)
    if resolved and resolved[0] == len(parts):
        return resolved[1]
    return reference.bare(parts[0]) if len(parts) == 1 else None


def link_names(page: str, reference: Reference, aliases: dict[str, str] | None = None) -> str:
    """``page`` (an HTML lesson page) with the names the reference documents linked to it.

    - In text: dotted names whose first part is a module (``minifcn.nn.Conv2d``,
      ``nn.Conv2d``, ``F.conv2d_forward``, ``minifcn.no_grad``; ``nn`` and ``F`` as in
      :data:`PROSE_ALIASES`, or as the lesson imports them).
    - ``code`` spans that are a name: dotted as above, or one the lesson imports, or one
      that a single reference page documents (``Conv2d``).
    - In highlighted code: names reached from the lesson's imports (``aliases``, see
      :func:`lesson_aliases`): ``nn.Conv2d(...)``, ``Shapes(...)``, ``minifcn.to_numpy``.

    Text inside links, ``<pre>`` outputs, scripts and styles is left alone.
    """
    code_aliases = dict(aliases or {})
    text_aliases = {**PROSE_ALIASES, **{name: target for name, target in code_aliases.items()
                                        if inspect.ismodule(_lookup(target))}}
    span_aliases = {**PROSE_ALIASES, **code_aliases}
    pieces = re.split(r"(<script\b.*?</script>|<style\b.*?</style>)", page,
                      flags=re.DOTALL | re.IGNORECASE)
    return "".join(piece if index % 2 else _link_piece(piece, reference, code_aliases,
                                                       text_aliases, span_aliases)
                   for index, piece in enumerate(pieces))


def _link_piece(piece: str, reference: Reference, code_aliases, text_aliases,
                span_aliases) -> str:
    parts = re.split(r"(<[^>]*>)", piece)
    out: list[str] = []
    inside = {"a": 0, "pre": 0, "code": 0, "title": 0, "head": 0}
    index = 0
    while index < len(parts):
        part = parts[index]
        if part.startswith("<"):
            tag = re.match(r"<(/?)([A-Za-z][\w-]*)", part)
            if tag and tag.group(2).lower() in inside:
                name = tag.group(2).lower()
                if (name == "code" and not tag.group(1) and not inside["pre"]
                        and not inside["a"] and index + 2 < len(parts)
                        and parts[index + 2] == "</code>"):
                    url = _code_span_url(html.unescape(parts[index + 1]), span_aliases,
                                         reference)
                    if url:
                        out.append(_link(url, part + parts[index + 1] + "</code>"))
                        index += 3
                        continue
                inside[name] = max(0, inside[name] + (-1 if tag.group(1) else 1))
            out.append(part)
        elif inside["pre"] and not inside["a"]:
            out.append(part)  # code is linked below, as a whole highlighted block
        elif not any(inside.values()):
            out.append(_link_prose(part, text_aliases, reference))
        else:
            out.append(part)
        index += 1
    linked = "".join(out)
    return re.sub(r'(<div class="highlight[^"]*"><pre>)(.*?)(</pre>)',
                  lambda found: found.group(1) + _link_code(found.group(2), code_aliases,
                                                            reference) + found.group(3),
                  linked, flags=re.DOTALL)
