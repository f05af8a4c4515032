"""Every executable (`ros2 run frs_ros <name>` launcher, pip console script) points at a real main()."""

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = sorted((ROOT / "scripts" / "nodes").iterdir())


def _module_defines_main(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not importable"
    tree = ast.parse(Path(spec.origin).read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)


@pytest.mark.parametrize("launcher", LAUNCHERS, ids=lambda p: p.name)
def test_launcher_targets_a_main_and_is_installed(launcher):
    text = launcher.read_text()
    module = re.search(r"^\s*from ([\w.]+) import main", text, re.M).group(1)
    assert _module_defines_main(module)
    assert launcher.stat().st_mode & 0o111, f"{launcher.name} is not executable"
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert f"scripts/nodes/{launcher.name}\n" in cmake, f"{launcher.name} is not installed by CMakeLists.txt"


def test_console_scripts_match_launchers():
    setup = (ROOT / "setup.py").read_text()
    scripts = dict(re.findall(r'"([\w-]+)=([\w.]+):main"', setup))
    assert scripts, "setup.py declares no console scripts"
    launchers = {p.name for p in LAUNCHERS}
    for name, module in scripts.items():
        assert name in launchers, f"console script {name} has no `ros2 run` launcher"
        assert _module_defines_main(module)
