"""Packaging: every dependency pinned, environment.yml agrees with pyproject.toml."""
import re
import tomllib

import yaml


def _pins(lines):
    return {re.split(r"==", d)[0].lower(): d.split("==")[1] for d in lines if "==" in d}


def test_every_dependency_is_pinned(root):
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    unpinned = [d for d in deps if "==" not in d]
    assert not unpinned, f"unpinned dependencies: {unpinned}"
    assert any(d.startswith("torch==") for d in deps), "torch must be pinned in the same install step"


def test_environment_yml_matches_pyproject(root):
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((root / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(pip_section) == _pins(deps)
    assert "-e ." in pip_section, "environment.yml's pip section installs this repository"


def test_console_script_and_ci(root):
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert meta["scripts"]["llmprep"] == "llmprep.cli:main"
    ci = (root / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (root / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
