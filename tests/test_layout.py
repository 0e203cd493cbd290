"""The package's layout: stages on top of libraries on top of core (core importing only core,
data importing none of the libraries that read it), no import cycles, and every rule running a
stage module.

The import graph is read from the source with `ast`, so that imports inside functions count
as much as those at the top of a module. An edge runs from a module to each pipeline module it
names: `import pipeline.a.b`, `from pipeline.a.b import name` (to pipeline.a.b) and
`from pipeline.a import b` where b is a module (to pipeline.a.b). The package a submodule
belongs to, which Python initialises first, is not an edge of its own.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipeline"
LIBRARIES = ("core", "data", "models", "prune", "generation", "grading", "reporting")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The pipeline module that `name` (a module, or a name inside one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [_owner(alias.name) for alias in node.names if alias.name.split(".")[0] == "pipeline"]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the module's own package
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package.pop()
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    if base.split(".")[0] != "pipeline":
        return []
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else _owner(base) for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """pipeline module -> the pipeline modules it imports, anywhere in its source."""
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[module] = {target for node in ast.walk(tree) for target in _imported(module, node)
                         if target and target != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per back edge a depth-first walk finds."""
    found, state, path = [], {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    assert "pipeline.core.specs" in graph["pipeline.core.artifacts"]  # at the top of the module
    assert "pipeline.generation.requests" in graph["pipeline.preflight"]  # inside a function
    assert "pipeline.generation.budget_forcing" in graph["pipeline.stages.generate"]  # from a package import a module
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def _wrong_imports(package: str, forbidden) -> list[str]:
    """`package`'s modules that import a module of a package that `forbidden(name)` refuses."""
    return [f"{module} imports {target}" for module, targets in sorted(import_graph().items())
            if module.startswith(f"pipeline.{package}.") or module == f"pipeline.{package}"
            for target in sorted(targets) if forbidden(target.split(".")[1] if target.count(".") else "")]


def test_core_imports_only_core():
    """core is the infrastructure under every library: it reads none of them."""
    wrong = _wrong_imports("core", lambda package: package != "core")
    assert not wrong, "\n".join(wrong)


def test_data_imports_no_library_that_reads_data():
    """data (what the workflow reads) sits under pruning, generation, grading and reporting."""
    wrong = _wrong_imports("data", lambda package: package in ("prune", "generation", "grading", "reporting", "stages"))
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_libraries_never_import_a_stage():
    graph = import_graph()
    wrong = [f"{module} imports {target}" for module, targets in sorted(graph.items())
             for target in sorted(targets)
             if module.split(".")[1:2] and module.split(".")[1] in LIBRARIES and target.startswith("pipeline.stages")]
    assert not wrong, "\n".join(wrong)


def test_no_stage_imports_another_stage():
    """What two stages share is a library's: a stage's module is its rule's entry point only."""
    graph = import_graph()
    wrong = [f"{module} imports {target}" for module, targets in sorted(graph.items())
             if module.startswith("pipeline.stages.") for target in sorted(targets)
             if target.startswith("pipeline.stages.") and target != module]
    assert not wrong, "\n".join(wrong)


def _rule_files() -> list[Path]:
    """rules/*.smk in the order the Snakefile includes them (then any it does not)."""
    included = [ROOT / name for name in re.findall(r'^include: "(rules/\w+\.smk)"', (ROOT / "Snakefile").read_text(),
                                                   flags=re.M)]
    return included + sorted(set((ROOT / "rules").glob("*.smk")) - set(included))


def _rule_commands() -> dict[str, list[str]]:
    """rule name -> the modules its shell command runs with `python -m`, for every rule in rules/,
    in rule order."""
    out = {}
    for path in _rule_files():
        blocks = re.split(r"^rule (\w+):", path.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2]):
            out[name] = re.findall(r"python -m ([\w.]+)", body)
    return out


def test_every_rule_runs_a_stage_module():
    commands = _rule_commands()
    assert len(commands) >= 13 and "generate" in commands and "masks" in commands
    for rule, modules in commands.items():
        assert modules, f"rule {rule} runs no `python -m` command"
        for module in modules:
            assert module.startswith("pipeline.stages."), f"rule {rule} runs {module}, not a pipeline.stages module"
            assert module in MODULES, f"rule {rule} runs {module}, which does not exist"


def test_every_stage_module_is_a_rule_command_with_a_main():
    run = {module for modules in _rule_commands().values() for module in modules}
    for module, path in MODULES.items():
        if not module.startswith("pipeline.stages.") or path.name == "__init__.py":
            continue
        assert module in run, f"{module} is run by no rule"
        tree = ast.parse(path.read_text())
        assert any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body), module
        assert "if __name__ == \"__main__\":" in path.read_text(), module


def test_the_stages_package_lists_every_stage_in_rule_order():
    import pipeline.stages

    listed = re.findall(r"^- (\w+) ", pipeline.stages.__doc__, flags=re.M)
    stages = {module.rpartition(".")[2] for module in MODULES if module.startswith("pipeline.stages.")}
    assert set(listed) == stages
    first_rule = {}
    for rule, modules in _rule_commands().items():
        for module in modules:
            first_rule.setdefault(module.rpartition(".")[2], len(first_rule))
    rules_in_order = [stage for stage, _ in sorted(first_rule.items(), key=lambda item: item[1])]
    assert listed == rules_in_order
