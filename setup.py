"""Only for the optional C extensions; everything else is in pyproject.toml: the du walk
(exporter/sources/_walk.c) and the bbolt tree walk (exporter/sources/_bolt.c).

`optional=True`: with no C compiler or no Python headers the build warns and goes on, and
exporter.sources.du walks in Python (same figures, about twice the CPU per inode), and
exporter.sources.bolt reads in Python (the same result, several times the CPU per element).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "exporter.sources._walk",
            sources=["exporter/sources/_walk.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=c99", "-D_GNU_SOURCE", "-Wall", "-Wextra"],
        ),
        Extension(
            "exporter.sources._bolt",
            sources=["exporter/sources/_bolt.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=c99", "-D_GNU_SOURCE", "-Wall", "-Wextra"],
        ),
    ]
)
