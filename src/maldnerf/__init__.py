"""MALD-NeRF object removal: stages of the pipeline as a Python package.

Each stage lives in its own module or subpackage and is exposed as a subcommand of the
``maldnerf`` command line tool (see :mod:`maldnerf.cli`).
"""

__version__ = "0.1.0"
