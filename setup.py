"""Builds the native core; all metadata lives in pyproject.toml."""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

# _native.pyx includes one .pxi per concern and the C helpers by topic: a change
# to any of them rebuilds the module.
sources = sorted(str(p) for p in Path("aring").glob("_core/*.pxi"))
headers = sorted(str(p) for p in Path("aring").glob("includes/*.h"))

extensions = [
    Extension(
        "aring._native",
        ["aring/_native.pyx"],
        include_dirs=["aring"],
        depends=["aring/_native.pxd", *sources, *headers],
        extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3},
        include_path=["aring"],
    )
)
