"""The package's layout is its architecture: layers import only downward, no import circles, apps stay on top.

    core -> io -> model -> stages -> engines -> pipeline -> apps -> cli / the package's public face
"""

import ast
import os
from importlib import metadata

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vidbatch")
LAYERS = {"core": 0, "io": 1, "model": 2, "stages": 3, "engines": 4, "pipeline": 5, "apps": 6, "cli": 7, "": 7}


def module_name(path):
    relative = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
    return relative[: -len(".__init__")] if relative.endswith(".__init__") else relative


def modules():
    found = {}
    for root, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                found[module_name(path)] = ast.parse(open(path, encoding="utf-8").read(), path)
    return found


def layer(module):
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else ""]


def imports(tree, top_level_only=False):
    """vidbatch modules imported; top_level_only: those run at import time (not in functions or TYPE_CHECKING)."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vidbatch")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vidbatch"):
            for alias in node.names:  # `from vidbatch.io import storage` imports the module vidbatch.io.storage
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if os.path.exists(os.path.join(os.path.dirname(PACKAGE), *candidate.split(".")) + ".py")
                          else node.module)
    return found


ALL = modules()


@pytest.mark.parametrize("name", sorted(ALL))
def test_imports_run_only_downward(name):
    if name == "vidbatch":
        return  # the public face imports what it exposes
    upward = sorted(m for m in imports(ALL[name]) if m != "vidbatch" and layer(m) > layer(name))
    assert not upward, f"{name} (layer {layer(name)}) imports a higher layer: {upward}"
    if layer(name) < LAYERS["cli"]:
        assert "vidbatch" not in imports(ALL[name]), f"{name} imports the package's public face"


def test_no_import_circles():
    graph = {name: {m for m in imports(tree) if m in ALL} for name, tree in ALL.items()}  # function-level too
    seen, stack, cycles = set(), [], []

    def visit(node, path):
        if node in path:
            cycles.append(path[path.index(node):] + [node])
            return
        if node in seen:
            return
        path.append(node)
        for nxt in graph[node]:
            visit(nxt, path)
        path.pop()
        seen.add(node)

    for name in graph:
        visit(name, stack)
    packages = {n for n in ALL if os.path.isdir(os.path.join(os.path.dirname(PACKAGE), *n.split(".")))}
    cycles = [c for c in cycles if not set(c) & packages]  # a package's __init__ is imported by its own modules
    assert cycles == []


def test_apps_are_imported_by_nothing_below_them():
    for name, tree in ALL.items():
        if layer(name) < LAYERS["apps"]:
            assert not [m for m in imports(tree) if m.startswith("vidbatch.apps")], name


def test_a_laptop_install_brings_no_test_tools_and_no_ray():
    requirements = metadata.requires("vidbatch") or []
    runtime = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip().lower() for r in requirements
               if "extra ==" not in r}
    assert runtime and not runtime & {"pytest", "pytest-timeout", "hypothesis", "moto", "flask", "av", "ray"}, runtime
    extras = {r.split("extra ==")[1].strip().strip("'\"") for r in requirements if "extra ==" in r}
    assert {"ray", "test"} <= extras


def test_version_is_defined_once_and_printed(capsys):
    import vidbatch
    from vidbatch.cli import main

    assert vidbatch.__version__ == metadata.version("vidbatch")
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"vidbatch {vidbatch.__version__}"
