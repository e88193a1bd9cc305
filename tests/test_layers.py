"""The layer rule, read from the source with ``ast`` (nothing under convcli/ is imported).

The package is laid out in layers, each importing only from its own layer or lower ones:

    0 foundation: the modules directly under convcli/ (errors.py, system.py, ...)
    1 geometry   (pure Python: no numpy, no Pillow, anywhere)
    2 engine     (the numpy kernels)
    3 ops
    4 io
    5 run
    6 cli

``convcli/__init__.py`` and ``convcli/__main__.py`` are the package's face: they may import
any layer, and no layered module may import them (``import convcli`` or ``from .. import x``
where x is no module). Every import counts, at module level and inside functions, relative or
absolute; imports under ``if TYPE_CHECKING:`` count for the layers and the private names but
not for cycles or start-up cost, since they never run.

Checked here: (a) no import of a higher layer; (b) no ``_private`` name imported from
another convcli module; (c) no import cycle between modules; (d) geometry and the start-up
path of ``convcli shape`` (cli/entry.py, cli/shape_fast.py, cli/shape.py) load no numpy or
Pillow when imported, following their module-level convcli imports. The ``test_analyser_*``
tests feed the analyser made-up modules, so that a broken analyser cannot pass silently.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "convcli"
LAYERS = {"geometry": 1, "engine": 2, "ops": 3, "io": 4, "draw": 5, "run": 6, "cli": 7}
FOUNDATION = 0  # modules directly under convcli/
FACE = {"convcli", "convcli.__main__"}
HEAVY = {"numpy", "PIL"}
# Imported by `convcli shape` before it answers; numpy or Pillow here would cost every start.
LIGHT_STARTUP = {"convcli.cli.entry", "convcli.cli.shape_fast", "convcli.cli.shape"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    path: str  # its file, relative to the repository
    line: int
    target: str  # a convcli module, or an outside module ("numpy", "dask.array")
    name: str | None  # the name taken from target (from-imports of a non-module name)
    in_function: bool
    type_only: bool  # under `if TYPE_CHECKING:`

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def internal(self) -> bool:
        return self.target == PACKAGE or self.target.startswith(PACKAGE + ".")


def module_name(relpath: str) -> tuple[str, bool]:
    """'convcli/geometry/sizes.py' -> ('convcli.geometry.sizes', False); __init__ -> package, True."""
    parts = relpath[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def layer_of(module: str, packages: set[str]) -> int | None:
    """The module's layer; None for the face or a package outside every layer."""
    if module in FACE:
        return None
    parts = module.split(".")
    if len(parts) == 2 and parts[1] not in LAYERS and module not in packages:
        return FOUNDATION
    return LAYERS.get(parts[1])


def layer_label(module: str, packages: set[str]) -> str:
    layer = layer_of(module, packages)
    if module in FACE:
        return "the package's face"
    if layer == FOUNDATION:
        return "foundation, layer 0"
    return f"{module.split('.')[1]}, layer {layer}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, path: str, is_package: bool, modules: set[str]):
        self.module, self.path, self.modules = module, path, modules
        self.package = module if is_package else module.rpartition(".")[0]
        self.function_depth = 0
        self.type_only_depth = 0
        self.imports: list[Import] = []
        self.unresolved: list[str] = []

    def _add(self, node: ast.stmt, target: str, name: str | None) -> None:
        self.imports.append(
            Import(
                self.module,
                self.path,
                node.lineno,
                target,
                name,
                self.function_depth > 0,
                self.type_only_depth > 0,
            )
        )

    def _function(self, node: ast.AST) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.visit(node.test)
            self.type_only_depth += 1
            for child in node.body:
                self.visit(child)
            self.type_only_depth -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name, None)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base_parts = self.package.split(".")
            if node.level - 1 >= len(base_parts):
                self.unresolved.append(f"{self.path}:{node.lineno}: a relative import above the package")
                return
            base = ".".join(base_parts[: len(base_parts) - (node.level - 1)])
            if node.module:
                base = f"{base}.{node.module}"
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in self.modules:
                self._add(node, submodule, None)
            else:
                self._add(node, base, alias.name)


def collect(sources: dict[str, str]) -> tuple[list[Import], set[str], set[str], list[str]]:
    """Every import in the given files ({relative path: source}), the modules, the packages among
    them, and the problems (a module in no layer, an import of no module)."""
    names = {relpath: module_name(relpath) for relpath in sources}
    modules = {module for module, _ in names.values()}
    packages = {module for module, is_package in names.values() if is_package}
    imports: list[Import] = []
    problems: list[str] = []
    for relpath, source in sorted(sources.items()):
        module, is_package = names[relpath]
        collector = _Collector(module, relpath, is_package, modules)
        collector.visit(ast.parse(source, filename=relpath))
        imports += collector.imports
        problems += collector.unresolved
    for imp in imports:
        if imp.internal and imp.target not in modules:
            problems.append(f"{imp.where}: {imp.module} imports {imp.target}, which is no module")
    for module in sorted(modules):
        if module not in FACE and layer_of(module, packages) is None:
            problems.append(f"{module} is in no layer: add its package to LAYERS in tests/test_layers.py")
    return imports, modules, packages, problems


def layer_violations(imports: list[Import], packages: set[str]) -> list[str]:
    found = []
    for imp in imports:
        if not imp.internal or imp.module in FACE:
            continue
        mine, theirs = layer_of(imp.module, packages), layer_of(imp.target, packages)
        if mine is None:
            continue  # reported by collect()
        label = layer_label(imp.module, packages)
        if imp.target in FACE:
            found.append(
                f"{imp.where}: {imp.module} ({label}) imports {imp.target}"
                f"{'.' + imp.name if imp.name else ''}: the package's face is above every layer"
            )
        elif theirs is not None and theirs > mine:
            found.append(
                f"{imp.where}: {imp.module} ({label}) imports {imp.target} "
                f"({layer_label(imp.target, packages)}), a higher layer"
            )
    return found


def private_violations(imports: list[Import]) -> list[str]:
    return [
        f"{imp.where}: {imp.module} imports the private name {imp.name} from {imp.target}"
        for imp in imports
        if imp.internal
        and imp.name
        and imp.target != imp.module
        and imp.name.startswith("_")
        and not imp.name.startswith("__")
    ]


def import_graph(imports: list[Import]) -> dict[str, dict[str, list[Import]]]:
    """module -> imported convcli module -> the imports making that edge (runtime imports only)."""
    graph: dict[str, dict[str, list[Import]]] = {}
    for imp in imports:
        if imp.internal and not imp.type_only and imp.target != imp.module:
            graph.setdefault(imp.module, {}).setdefault(imp.target, []).append(imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively; the components of more than one module, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    nodes = sorted(set(graph) | {t for edges in graph.values() for t in edges})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def cycle_violations(imports: list[Import]) -> list[str]:
    graph = import_graph(imports)
    found = []
    for component in strongly_connected(graph):
        members = set(component)
        edges = [
            f"    {imp.where}: {imp.module} -> {imp.target}{' (in a function)' if imp.in_function else ''}"
            for module in component
            for target, imps in sorted(graph.get(module, {}).items())
            if target in members
            for imp in imps
        ]
        found.append(f"import cycle among {', '.join(component)}:\n" + "\n".join(dict.fromkeys(edges)))
    return found


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def heavy_violations(imports: list[Import], modules: set[str], packages: set[str]) -> list[str]:
    """numpy/Pillow anywhere in geometry; loaded by importing a light start-up module."""
    geometry = {m for m in modules if layer_of(m, packages) == LAYERS["geometry"]}
    found = []
    for imp in imports:
        if imp.module in geometry and imp.target.split(".")[0] in HEAVY:
            found.append(f"{imp.where}: {imp.module} imports {imp.target}; geometry is pure Python")
    module_level: dict[str, list[Import]] = {}
    for imp in imports:
        if not imp.in_function and not imp.type_only:
            module_level.setdefault(imp.module, []).append(imp)
    checked = sorted((modules & LIGHT_STARTUP) | geometry)
    for start in checked:
        # Breadth first through module-level imports (and the packages each import runs).
        chain: dict[str, list[str]] = {start: [start]}
        queue = [start]
        while queue:
            module = queue.pop(0)
            for imp in module_level.get(module, []):
                if imp.target.split(".")[0] in HEAVY:
                    via = " -> ".join(chain[module])
                    found.append(
                        f"{imp.where}: importing {start} loads {imp.target} at module level (via {via})"
                    )
                elif imp.internal:
                    for reached in [*_ancestors(imp.target), imp.target]:
                        if reached in modules and reached not in chain:
                            chain[reached] = [*chain[module], reached]
                            queue.append(reached)
    return sorted(set(found))


def read_tree() -> dict[str, str]:
    tree = {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted((ROOT / PACKAGE).rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    # A C extension's source (convcli/io/_pngrows.c, built by setup.py) is a module too, one
    # that imports nothing of convcli.
    for path in sorted((ROOT / PACKAGE).rglob("*.c")):
        tree[path.relative_to(ROOT).with_suffix(".py").as_posix()] = ""
    return tree


def _analyse(sources: dict[str, str]) -> dict[str, list[str]]:
    imports, modules, packages, problems = collect(sources)
    return {
        "tree": problems,
        "layers": layer_violations(imports, packages),
        "private": private_violations(imports),
        "cycles": cycle_violations(imports),
        "heavy": heavy_violations(imports, modules, packages),
    }


def _report(found: list[str], rule: str) -> str:
    return f"{len(found)} {rule}:\n" + "\n".join(found)


_TREE = _analyse(read_tree())


# ------------------------------------------------------------------------ the tree


def test_every_module_is_in_a_layer_and_every_import_resolves():
    assert not _TREE["tree"], _report(_TREE["tree"], "problems")


def test_no_module_imports_a_higher_layer():
    assert not _TREE["layers"], _report(_TREE["layers"], "upward imports")


def test_no_private_name_is_imported_from_another_module():
    assert not _TREE["private"], _report(_TREE["private"], "private names imported")


def test_no_import_cycle():
    assert not _TREE["cycles"], _report(_TREE["cycles"], "import cycles")


def test_geometry_and_shape_startup_load_no_numpy_or_pillow():
    assert not _TREE["heavy"], _report(_TREE["heavy"], "heavy imports")


def test_the_tree_was_read():
    assert len(read_tree()) > 20 and "convcli/geometry/sizes.py" in read_tree()


# ------------------------------------------------------- the analyser on made-up trees

_BASE = {
    "convcli/__init__.py": "",
    "convcli/errors.py": "",
    "convcli/geometry/__init__.py": "",
    "convcli/geometry/sizes.py": "from ..errors import ConvcliError\n",
    "convcli/engine/__init__.py": "",
    "convcli/engine/filtering.py": "from ..geometry.sizes import as_pair\n",
    "convcli/run/__init__.py": "",
    "convcli/run/batch.py": "def f():\n    from ..engine import filtering\n",
    "convcli/cli/__init__.py": "",
    "convcli/cli/entry.py": "import sys\n",
}


def _with(files: dict[str, str]) -> dict[str, list[str]]:
    return _analyse({**_BASE, **files})


def test_analyser_passes_a_clean_tree():
    assert _analyse(_BASE) == {"tree": [], "layers": [], "private": [], "cycles": [], "heavy": []}


def test_analyser_reports_an_upward_import():
    found = _with(
        {"convcli/geometry/fake.py": "import re\n\n\ndef f():\n    from ..engine.filtering import filter2d\n"}
    )
    assert found["layers"] == [
        "convcli/geometry/fake.py:5: convcli.geometry.fake (geometry, layer 1) imports "
        "convcli.engine.filtering (engine, layer 2), a higher layer"
    ]
    absolute = _with({"convcli/errors.py": "import convcli.cli.entry\n"})["layers"]
    assert len(absolute) == 1 and absolute[0].startswith("convcli/errors.py:1: "), absolute
    face = _with({"convcli/engine/fake.py": "from .. import filter2d\n"})["layers"]
    assert len(face) == 1 and "the package's face is above every layer" in face[0], face


def test_analyser_reports_a_private_name():
    found = _with(
        {"convcli/run/fake.py": "def f():\n    from ..engine.filtering import _divisor, as_kernel\n"}
    )
    assert found["private"] == [
        "convcli/run/fake.py:2: convcli.run.fake imports the private name "
        "_divisor from convcli.engine.filtering"
    ]


def test_analyser_reports_a_cycle_through_function_level_imports():
    found = _with(
        {
            "convcli/run/batch.py": "def f():\n    from .chunked import g\n",
            "convcli/run/chunked.py": "from .batch import f\n",
        }
    )
    assert len(found["cycles"]) == 1, found["cycles"]
    assert found["cycles"][0].startswith("import cycle among convcli.run.batch, convcli.run.chunked:")
    assert (
        "convcli/run/batch.py:2: convcli.run.batch -> convcli.run.chunked (in a function)"
        in found["cycles"][0]
    )
    typing_only = _with(
        {
            "convcli/run/chunked.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
            "    from .batch import f\n",
            "convcli/run/batch.py": "from .chunked import g\n",
        }
    )
    assert typing_only["cycles"] == []


def test_analyser_reports_numpy_in_geometry_and_on_the_shape_startup_path():
    found = _with({"convcli/geometry/fake.py": "def f():\n    import numpy as np\n"})
    assert found["heavy"] == [
        "convcli/geometry/fake.py:2: convcli.geometry.fake imports numpy; geometry is pure Python"
    ]
    io = {"convcli/io/__init__.py": "", "convcli/io/images.py": "import sys\nfrom PIL import Image\n"}
    chain = _with({**io, "convcli/cli/shape_fast.py": "from ..io.images import read_size\n"})
    assert chain["heavy"] == [
        "convcli/io/images.py:2: importing convcli.cli.shape_fast loads PIL at module "
        "level (via convcli.cli.shape_fast -> convcli.io.images)"
    ], chain["heavy"]
    in_function = _with(
        {**io, "convcli/cli/shape_fast.py": "def f():\n    from ..io.images import read_size\n"}
    )
    assert in_function["heavy"] == []


def test_analyser_reports_a_module_outside_the_layers_and_a_missing_module():
    found = _with({"convcli/extras/__init__.py": "", "convcli/run/fake.py": "from ..engine.gone import x\n"})
    assert "convcli.extras is in no layer: add its package to LAYERS in tests/test_layers.py" in found["tree"]
    assert (
        "convcli/run/fake.py:1: convcli.run.fake imports convcli.engine.gone, which is no module"
        in found["tree"]
    ), found["tree"]
