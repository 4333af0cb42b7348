"""How the command line ends: bad input exits 2 with one line, a bug exits 1 and says so; and how
the package's modules depend on each other."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from phasevis_ext import cli
from phasevis_ext.render import visualize as render_visualize

PACKAGE = Path(cli.__file__).parent


def test_bad_input_exits_2_and_a_bug_exits_1(tmp_path, capsys, monkeypatch):
    argv = ["visualize", "logit:0", "--out", str(tmp_path), "--steps", "1", "--crops", "1", "--image-size", "16",
            "--no-progress"]
    assert cli.main([*argv, "--steps", "0"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("phasevis: error: steps must be an int >= 1") and err.count("\n") == 1

    def broken(*args, **kwargs):
        raise ValueError("an internal invariant failed")  # a plain ValueError is a bug, not bad input

    monkeypatch.setattr(render_visualize, "render_units", broken)
    assert cli.main(argv) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("phasevis: internal error: ValueError: an internal invariant failed")
    assert "test_cli.py:" in err and "PHASEVIS_TRACEBACK=1" in err and err.count("\n") == 1
    monkeypatch.setenv("PHASEVIS_TRACEBACK", "1")
    assert cli.main(argv) == cli.EXIT_INTERNAL
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "phasevis_ext", "atlas", "--help"], capture_output=True, text=True,
                          cwd=PACKAGE.parent, timeout=120)
    assert done.returncode == 0 and "--new-run" in done.stdout


def test_the_command_line_does_not_load_the_atlas_unless_asked():
    code = "import sys, phasevis_ext.cli; print(sorted(m for m in sys.modules if m.startswith('phasevis_ext')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent,
                          timeout=120)
    loaded = done.stdout
    assert done.returncode == 0, done.stderr
    assert "phasevis_ext.cli" in loaded
    assert "'phasevis_ext.atlas" not in loaded


def _imports(path: Path) -> set[str]:
    """phasevis_ext modules a file imports, at any depth of its code."""
    package = "phasevis_ext." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = package.removesuffix(".__init__")
    base = package if path.name == "__init__.py" else package.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                root = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{root}.{node.module}" if node.module else root
            else:
                module = node.module or ""
            names = [f"{module}.{alias.name}" for alias in node.names]
            found |= {n for n in [module, *names] if n.startswith("phasevis_ext")}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("phasevis_ext")}
    return found


def test_the_import_graph_has_no_cycle():
    files = {("phasevis_ext." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"}
    graph = {name: {m for m in _imports(path) if m in files and m != name} for name, path in files.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of concepts.
    graph = {name: {m for m in deps if not (name == "phasevis_ext" or m.startswith(name + "."))}
             for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*path, node, dep])}")
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
    assert graph["phasevis_ext.atlas"] and "phasevis_ext.cli" not in set().union(*graph.values())


def test_the_command_line_renders_with_the_library_defaults_and_its_help_says_which(tmp_path):
    """Options the user leaves out are not passed, so visualize's own defaults apply; the values the
    help states are those a run without the options records."""
    import json
    import re

    parser = cli.build_parser()
    kwargs = cli.render_overrides(parser.parse_args(["visualize", "logit:1", "--out", "x"]))
    assert not {"steps", "image_size", "crops", "box_size", "noise", "batch_size"} & set(kwargs)
    given = cli.render_overrides(parser.parse_args(["visualize", "logit:1", "--out", "x", "--steps", "7",
                                                    "--crops", "2"]))
    assert (given["steps"], given["crops"]) == (7, 2)
    help_text = " ".join(parser._subparsers._group_actions[0].choices["visualize"].format_help().split())
    stated = {name: int(re.search(rf"--{name} \S+ [^(]*\(default: (\d+)\)", help_text)[1])
              for name in ("steps", "crops")}
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\n\n\ndef build():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), "
        "nn.Linear(4, 3))\n")
    out = tmp_path / "out"
    assert cli.main(["visualize", "logit:1", "--model", f"{tmp_path}/net.py:build", "--image-size", "8",
                     "--input-size", "8", "--no-progress", "--out", str(out)]) == cli.EXIT_OK
    ran = json.loads((out / "results.json").read_text())["settings"]
    assert {name: ran[name] for name in stated} == stated
