"""Sphinx configuration for alchemy-obs (builds offline: no intersphinx)."""

import shutil
import sys
from importlib import resources
from pathlib import Path

import alchemy_obs

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "alchemy-obs"
author = "alchemy-obs developers"
copyright = "2026, alchemy-obs developers"
release = alchemy_obs.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "config_reference",
]
autosummary_generate = True
# Module pages show every public function and class in full (numpydoc's Parameters and
# Returns, with units), not only a one-line summary table.
templates_path = ["_templates"]
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"  # the numpydoc sections give types with units; signatures stay short
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_mock_imports: list[str] = []
exclude_patterns = ["_build"]
html_theme = "pydata_sphinx_theme"
html_title = "alchemy-obs"
html_theme_options = {"navigation_with_keys": False, "header_links_before_dropdown": 6}
# The whole table of contents in the left sidebar on every page (pydata's default shows only
# the current top-level section's children, which is empty on most narrative pages).
html_sidebars = {"**": ["sidebar-site-toc.html"]}
html_css_files = ["alchemy.css"]
# MathJax ships with the site (from the django-static-mathjax wheel of the docs extra): the
# maths renders without network access. tex-svg.js is self-contained (no font files).
_mathjax = Path(__file__).parent / "_mathjax"
_mathjax.mkdir(exist_ok=True)
shutil.copyfile(resources.files("mathjax") / "static" / "mathjax" / "es5" / "tex-svg.js",
                _mathjax / "tex-svg.js")
html_static_path = ["_static", "_mathjax"]
mathjax_path = "tex-svg.js"
