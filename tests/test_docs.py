"""The specification and API reference build, with every Sphinx warning an error, so that
a docstring or a cross-reference that breaks fails the test run."""
import pathlib
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
                           "html", str(DOCS), str(tmp_path / "html")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "html" / "api.html").stat().st_size > 10_000


def test_code_cites_only_sections_the_specification_has():
    """Every "docs/maths.rst §N.M" cited in the code names a section of docs/maths.rst."""
    import re
    spec = (DOCS / "maths.rst").read_text()
    have = set(re.findall(r"^§([0-9.]+) ", spec, flags=re.M))
    root = DOCS.parent
    cited = set()
    for path in [*root.glob("src/twotimescale/*.py"), *root.glob("ext/twotimescale/*.p*")]:
        for group in re.findall(r"docs/maths\.rst (§[0-9.§, -]+)", path.read_text()):
            cited |= {s.rstrip(".,") for s in re.findall(r"§?([0-9]+(?:\.[0-9]+)?)", group)}
    assert cited and cited <= have, sorted(cited - have)
