"""Sphinx configuration: the specification (maths, architecture) and the API reference,
built from the installed package's docstrings (numpydoc-style sections, via napoleon)."""
project = "twotimescale"
author = "the twotimescale developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_typehints = "description"
autodoc_member_order = "bysource"
exclude_patterns = ["_build"]
html_theme = "alabaster"
napoleon_use_rtype = False      # return types as text: "shape (m+1,)" names no object
# A shape in a parameter's type, "(m, d)", is read as cross-references to m and d, which
# several network classes define: those are shapes, not objects, so the ambiguity is moot.
suppress_warnings = ["ref.python"]
