"""The house rules of the package's code, checked on its source: short functions, one definition
of each constant, no defaults read back from signatures, and a loop that knows nothing of photos."""
import ast
import collections
from pathlib import Path

import phasevis_ext

PACKAGE = Path(phasevis_ext.__file__).parent
MAX_FUNCTION_LINES = 60


def _modules():
    return {path: ast.parse(path.read_text()) for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_function_is_longer_than_60_lines():
    long = [f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, tree in _modules().items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_each_constant_is_defined_once():
    where = collections.defaultdict(list)
    for path, tree in _modules().items():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper() and target.id != "__all__":
                    where[target.id].append(str(path.relative_to(PACKAGE)))
    twice = {name: files for name, files in where.items() if len(files) > 1}
    assert not twice, twice


def test_no_defaults_are_read_back_from_signatures():
    """Defaults live in RenderSettings' fields; reading them from a function's signature would be a
    second source of truth."""
    readers = [f"{path.relative_to(PACKAGE)}:{node.lineno}" for path, tree in _modules().items()
               for node in ast.walk(tree)
               if isinstance(node, ast.Attribute) and node.attr == "empty"
               and isinstance(node.value, ast.Attribute) and node.value.attr == "Parameter"]
    assert not readers, readers


def test_the_loop_knows_nothing_of_photos_or_guided_runs():
    loop = (PACKAGE / "render" / "loop.py").read_text()
    tree = ast.parse(loop)
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    assert not {name for name in classes if "Guide" in name or "Photo" in name}, classes
    assert "photo" not in loop.lower() and "guided." not in loop
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if "guided" in m}, imported


def test_the_package_is_split_by_the_flow():
    top = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {"ops", "param", "model", "render", "guided", "io", "atlas"} <= top
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "allocator.py", "checks.py", "cli.py", "cpu_kind.py",
                     "distributed.py"], loose
