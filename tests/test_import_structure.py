"""The import rules of the house, read from the source: absolute imports that name the defining module,
no cycles between modules, no lazy package re-exports used from inside the package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nnunet_airway"
# the top-level folders the project card names: links into the package, where the code is
LINKED = ("trainers", "evaluation", "dataset_conversion")
# every folder with Python code a user or CI runs; none may import a top-level ``trainers`` & co.
CODE_FOLDERS = ("nnunet_airway", "tests", "benchmarks")


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["nnunet_airway", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Import | ast.ImportFrom)]


def test_the_top_level_folders_are_links_into_the_package() -> None:
    for name in LINKED:
        link = ROOT / name
        assert link.is_symlink() and link.resolve() == PACKAGE / name
        assert not (PACKAGE / name).is_symlink() and (PACKAGE / name / "__init__.py").is_file()
    assert [path for path in PACKAGE.rglob("*") if path.is_symlink()] == []


def _top_level_imports(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in _imports(path):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            continue
        found += [f"{path.relative_to(root)}:{node.lineno}: {name}" for name in names
                  if name.split(".")[0] in LINKED]
    return found


def test_top_level_import_finder_finds_planted_imports(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("import trainers.base\nfrom evaluation import runner\nfrom nnunet_airway import evaluation\n")
    assert [line.split(": ")[1] for line in _top_level_imports(planted, tmp_path)] == ["trainers.base", "evaluation"]


def test_nothing_imports_the_top_level_links() -> None:
    """``import trainers`` from the repository root would load a second copy of every module (two classes of
    one name); only ``nnunet_airway.trainers`` is the real one."""
    offenders = [hit for folder in CODE_FOLDERS for path in (ROOT / folder).rglob("*.py")
                 for hit in _top_level_imports(path)]
    assert offenders == []


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
