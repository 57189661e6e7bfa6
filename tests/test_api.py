"""The package's public face: lazy public API, and packaging metadata that agrees with itself."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import mvgviz

REPO = Path(__file__).resolve().parents[1]


def test_public_api_resolves_every_name():
    for name in mvgviz.__all__:
        assert getattr(mvgviz, name) is not None, name
    assert mvgviz.fit.__module__ == "mvgviz.pipeline"
    assert mvgviz.Model.__module__ == "mvgviz.results"


def test_public_functions_are_not_shadowed_by_submodules(tiny_root, tmp_path):
    """Importing a submodule sets it as an attribute of the package: no public function may share
    a submodule's name (``mvgviz.evaluate`` stayed the function after a fit)."""
    import pkgutil
    modules = {m.name for m in pkgutil.iter_modules(mvgviz.__path__)}
    assert not modules & set(mvgviz.__all__)
    mvgviz.fit(tiny_root, "widget", layers="_blocks[4]", cache=tmp_path, device="cpu")
    assert callable(mvgviz.evaluate) and mvgviz.evaluate([0.1, 0.9], [0, 1])["image_auroc"] == 1.0


def test_import_mvgviz_imports_no_torch():
    code = "import sys, mvgviz; mvgviz.load; mvgviz.Model; print('torch' in sys.modules, 'streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_unknown_attribute_is_an_attribute_error():
    try:
        mvgviz.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def _requirements(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~\[ ]", line, maxsplit=1)[0].lower()
            out[name] = line[len(name):].replace(" ", "")
    return out


def test_pyproject_and_requirements_agree():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = _requirements("\n".join(meta["dependencies"]))
    reqs = _requirements((REPO / "requirements.txt").read_text())
    assert deps == reqs
    assert meta["version"] == mvgviz.__version__
