"""The project's own iopath PathManager: every file the project opens goes through it."""

from iopath.common.file_io import HTTPURLHandler
from iopath.common.file_io import PathManager as _IopathPathManager

__all__ = ["PathManager"]

PathManager = _IopathPathManager()
PathManager.register_handler(HTTPURLHandler())
