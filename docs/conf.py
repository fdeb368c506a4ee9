"""Sphinx configuration for aring's documentation (`make docs`)."""

project = "aring"
author = "the aring developers"
# No intersphinx: the docs must build offline (CI machines have no network).
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
exclude_patterns = ["_build"]
html_theme = "alabaster"
