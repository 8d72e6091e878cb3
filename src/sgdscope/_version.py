"""The installed version of sgdscope, with no other import (runner and report read it)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sgdscope")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
