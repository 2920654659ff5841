"""Only for the optional C walk (exporter/sources/_walk.c); everything else is in pyproject.toml.

`optional=True`: with no C compiler or no Python headers the build warns and goes on, and
exporter.sources.du walks in Python (same figures, about twice the CPU per inode).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "exporter.sources._walk",
            sources=["exporter/sources/_walk.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=c99", "-D_GNU_SOURCE", "-Wall", "-Wextra"],
        )
    ]
)
