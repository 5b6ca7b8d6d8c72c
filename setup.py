"""Packages for setuptools: her2viewer, and resources/ shipped inside it as her2viewer.resources.

The demo bundles stay in the top-level ``resources/`` folder of a checkout; a wheel carries them
as package data, where ``her2viewer.paths.RESOURCES_DIR`` finds them. Everything else about the
build is in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["her2viewer", "her2viewer.*"]), "her2viewer.resources"],
    package_dir={"her2viewer.resources": "resources"},
)
