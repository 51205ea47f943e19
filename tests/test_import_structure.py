"""The import rules of the house, read from the source: absolute imports that name the defining module,
no cycles between modules, no lazy package re-exports used from inside the package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> folder that holds it (nnunet_airway/trainers etc. are links to the top-level folders)
PACKAGE_FOLDERS = {
    "nnunet_airway": ROOT / "nnunet_airway",
    "nnunet_airway.trainers": ROOT / "trainers",
    "nnunet_airway.evaluation": ROOT / "evaluation",
    "nnunet_airway.dataset_conversion": ROOT / "dataset_conversion",
}
LINKED = {"trainers", "evaluation", "dataset_conversion"}


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package, folder in PACKAGE_FOLDERS.items():
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder)
            if package == "nnunet_airway" and relative.parts[0] in LINKED:
                continue
            parts = [*package.split("."), *relative.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Import | ast.ImportFrom)]


def test_the_links_point_at_the_top_level_folders() -> None:
    for name in LINKED:
        assert (ROOT / "nnunet_airway" / name).resolve() == (ROOT / name).resolve()


def test_no_relative_imports() -> None:
    relative = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in MODULES.values() for node in _imports(path)
                if isinstance(node, ast.ImportFrom) and node.level > 0]
    assert relative == []


def test_package_code_never_uses_the_lazy_top_level_exports() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in MODULES.values() for node in _imports(path)
                 if isinstance(node, ast.ImportFrom) and node.module == "nnunet_airway"
                 and any(alias.name[0].isupper() or alias.name.startswith("attention") for alias in node.names)]
    assert offenders == []


def _module_level_edges() -> dict[str, set[str]]:
    """module -> project modules it imports at import time (imports inside functions run later)."""
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        targets: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            targets.update(c for c in candidates if c in MODULES and c != name)
        edges[name] = targets
    return edges


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if state.get(target) is None and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_between_modules() -> None:
    edges = _module_level_edges()
    # a package's __init__ importing its own modules is how packages export; a module importing its
    # package's __init__ back would close a loop, and is caught like any other
    assert _find_cycle(edges) is None


def test_no_function_level_import_cycles_either() -> None:
    """Imports inside functions count too: generate <-> preview style loops are hidden there."""
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets: set[str] = set()
        for node in _imports(path):
            if isinstance(node, ast.ImportFrom) and node.module:
                candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                candidates = [alias.name for alias in node.names]
            targets.update(c for c in candidates if c in MODULES and c != name and not MODULES[c].name == "__init__.py")
        edges[name] = targets
    assert _find_cycle(edges) is None


def test_library_modules_set_no_matplotlib_backend() -> None:
    offenders = [str(path.relative_to(ROOT)) for path in MODULES.values() if "matplotlib.use(" in path.read_text()]
    assert offenders == []
