"""The README's "write a retriever plugin" tutorial, copied as printed, installs and works."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```(?:python|toml)\n# file: (?P<path>\S+)\n(?P<body>.*?)```", re.S)


def tutorial_files() -> dict[str, str]:
    text = README.read_text()
    return {m["path"]: f"# file: {m['path']}\n{m['body']}" for m in BLOCK.finditer(text)}


def test_tutorial_package_installs_and_is_listed(tmp_path):
    files = tutorial_files()
    assert set(files) == {"ravlm-numpy-flat/pyproject.toml",
                          "ravlm-numpy-flat/ravlm_numpy_flat.py",
                          "ravlm-numpy-flat/test_numpy_flat.py"}
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(tmp_path / "ravlm-numpy-flat")],
        capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}

    listed = subprocess.run([sys.executable, "-m", "ravlm_bench", "list", "retrievers", "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    row = rows["numpy-flat"]
    assert (row["name"], row["plugin"], row["description"]) == (
        "numpy-flat", "numpy_flat", "brute force in numpy")
    assert row["params_declared"] is True
    assert [(p["name"], p["type"], p["default"]) for p in row["params"]] == [
        ("chunk", "int", 1024)]

    conformance = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(tmp_path / "ravlm-numpy-flat" / "test_numpy_flat.py")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert conformance.returncode == 0, conformance.stdout + conformance.stderr
    assert "1 passed" in conformance.stdout
