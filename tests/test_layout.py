"""The package layout: no import cycles, a pure quantization core, commands that stand alone."""
import ast
import os
import subprocess
import sys

from conftest import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "slimext")


def _module_name(path):
    relative = os.path.relpath(path, REPO_ROOT)[:-3].replace(os.sep, ".")
    return relative[:-len(".__init__")] if relative.endswith(".__init__") else relative


def _modules():
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                found[_module_name(path)] = path
    return found


def _imports(path, module, known):
    """Every slimext module `module` imports, at the top or inside a function."""
    with open(path) as stream:
        tree = ast.parse(stream.read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + ["{}.{}".format(base, alias.name) for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


def import_graph():
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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
                result.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def _reaches(graph, start, prefixes):
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for target in graph.get(node, ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return sorted(m for m in seen if m.startswith(prefixes))


def test_no_import_cycles_in_slimext():
    # A package importing its own submodules (slimext.quant -> slimext.quant.plan) is not a
    # cycle of modules; only edges between different modules count, imports in functions too.
    graph = import_graph()
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    assert _cycles(graph) == []


def test_the_graph_sees_imports_inside_functions():
    # Guards the test above: a lazy import is an edge too.
    graph = import_graph()
    assert "slimext.quant.export" in graph["slimext.quant.qat"]


def test_quant_core_never_reaches_analysis_commands_or_slim():
    graph = import_graph()
    for module in [m for m in graph if m.startswith("slimext.quant")]:
        assert _reaches(graph, module, ("slimext.analysis", "slimext.commands",
                                        "slimext.slim")) == [], module


def test_commands_do_not_import_other_commands():
    # Shared command code lives in common, slim_config, errors and engine_progress; a command module
    # (one tool) imports none of the others.
    shared = {"slimext.commands.common", "slimext.commands.slim_config",
              "slimext.commands.errors", "slimext.commands.pretrain_check",
              "slimext.commands.engine_progress"}
    graph = import_graph()
    commands = [m for m in graph if m.startswith("slimext.commands.") and m not in shared]
    for module in commands:
        assert sorted(t for t in graph[module] if t in commands) == [], module


def test_quant_is_importable_without_ppdet():
    # ppdet made unimportable: `import ppdet` raises ImportError in the child process.
    code = ("import sys; sys.modules['ppdet'] = None\n"
            "import slimext.quant, slimext.quant.export, slimext.quant.coverage\n"
            "from slimext.quant import QATQuantizer, PTQCalibrator\n"
            "assert not [m for m in sys.modules if m.startswith(('ppdet.', 'slimext.analysis'))]\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
