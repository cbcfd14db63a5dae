"""The installed namespace and the direction of imports (issue 19, items 1-2).

Every module of the product is read with ``ast`` (function-local imports included) and mapped to its
installed name (``ollama_locust.…``). The layers, bottom up:

  0  ollama_locust.contract, ollama_locust.options, ollama_locust.stats, ollama_locust.receive_stamps,
     ollama_locust.descriptors, ollama_locust (the package face)
  1  ollama_locust.simulator.*   — imports nothing of the others
  1  ollama_locust.reports.*     — the post-processor: only layer 0 (never locust, gevent or the load side)
  2  ollama_locust.scenarios.*   — the load side: layers 0-1
  3  ollama_locust.cli, ollama_locust.step, ollama_locust.__main__ — the command
An import to a higher layer, or one that leaves the namespace for an old top-level name, fails; so does
any cycle between modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"ollama_locust": "ollama_locust", "scenarios": "ollama_locust.scenarios",
           "reports": "ollama_locust.reports", "simulator": "ollama_locust.simulator"}
BOTTOM = {"ollama_locust", "ollama_locust.contract", "ollama_locust.options", "ollama_locust.stats",
          "ollama_locust.receive_stamps", "ollama_locust.descriptors"}
COMMAND = {"ollama_locust.cli", "ollama_locust.step", "ollama_locust.__main__"}
OLD_STYLE = re.compile(r"^\s*(from|import)\s+(scenarios|reports|simulator)\b", re.M)
# a module named in a string, as importlib.import_module takes it (file names such as "reports.md" aside)
OLD_MODULE_STRING = re.compile(r"[\"'](scenarios|reports|simulator)\.(?!(?:md|py|json|csv|txt)[\"'])[a-z_]+[\"']")
SKIPPED = {".git", "build", "runs", "test-artifacts"}


def layer(module: str) -> int:
    if module in BOTTOM:
        return 0
    if module in COMMAND:
        return 3
    if module.startswith(("ollama_locust.simulator", "ollama_locust.reports")):
        return 1
    if module.startswith("ollama_locust.scenarios"):
        return 2
    raise AssertionError(f"{module}: no layer; add it to tests/test_layering.py")


def product_modules() -> dict[str, Path]:
    modules = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The product modules ``module`` imports (absolute and relative, at any depth of the code)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:  # `from pkg import submodule` or `import pkg.mod`
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    known = set(modules)
    return {module: imports_of(module, path, known) for module, path in modules.items()}


def test_no_old_style_imports_anywhere():
    """No file of the repository imports the old top-level names (they are not installed any more)."""
    offenders = []
    for path in REPO.rglob("*.py"):
        if SKIPPED & set(path.relative_to(REPO).parts) or path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in [*OLD_STYLE.finditer(text), *OLD_MODULE_STRING.finditer(text)]:
            offenders.append(f"{path.relative_to(REPO)}: {match.group(0).strip()}")
    assert not offenders, "old-style imports: " + "; ".join(offenders)


def test_no_upward_edge():
    graph = import_graph()
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a)]
    assert not upward, "imports that run back up: " + "; ".join(sorted(upward))
    sideways = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
                if layer(a) == layer(b) == 1 and a.split(".")[1] != b.split(".")[1]]
    assert not sideways, "the simulator and the reports must not import each other: " + "; ".join(sideways)


def test_reports_never_import_the_load_side_or_locust():
    modules = product_modules()
    for module, path in modules.items():
        if not module.startswith("ollama_locust.reports"):
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+(locust|gevent)\b", text, re.M), module


def test_no_import_cycle():
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"
