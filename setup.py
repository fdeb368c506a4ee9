"""Builds the native core; all metadata lives in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "aring._native",
        ["aring/_native.pyx"],
        include_dirs=["aring"],
        depends=["aring/_aring.h", "aring/_native.pxd"],
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
