"""Rank-aware logging set-up: console on the main rank, one log file per rank."""

import functools
import logging
import os
import sys
from typing import Optional

from clap.utils.file_io import PathManager

_DATE_FORMAT = "%m/%d %H:%M:%S"
_GREEN, _YELLOW, _RED, _RESET = "\033[32m", "\033[33m", "\033[31m", "\033[0m"


class _ConsoleFormatter(logging.Formatter):
    """`[time name]: message`; WARNING and above also show the level name (coloured if asked)."""

    def __init__(self, shown_name: str, colour: bool):
        super().__init__(datefmt=_DATE_FORMAT)
        self._shown_name = shown_name
        self._colour = colour

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"[{self.formatTime(record, self.datefmt)} {self._shown_name}]:"
        body = super().format(record)  # message plus traceback, if any
        level = ""
        if record.levelno >= logging.WARNING:
            level = f" {record.levelname}"
            if self._colour:
                colour = _YELLOW if record.levelno == logging.WARNING else _RED
                level = f" {colour}{record.levelname}{_RESET}"
        if self._colour:
            prefix = f"{_GREEN}{prefix}{_RESET}"
        return f"{prefix}{level} {body}"


def setup_logger(
    output: Optional[str] = None,
    distributed_rank: int = 0,
    *,
    color: bool = True,
    name: str = "clap",
    abbrev_name: Optional[str] = None,
) -> logging.Logger:
    """Configure the logger `name`: console output on rank 0, and a log file on every rank.

    Args:
        output: a file name ending in ".txt" / ".log", or a folder (then `folder/log.txt`).
            Rank r > 0 writes to `<file>.rank<r>`. None: no file.
        distributed_rank: rank of this process; only rank 0 logs to the console.
        color: colour the console prefix and level names when stdout is a terminal.
        name: the logger to configure (its children, e.g. "clap.engine", propagate to it).
        abbrev_name: short name shown in the console prefix instead of `name`.

    Calling it again replaces the handlers an earlier call added to the same logger.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in [h for h in logger.handlers if getattr(h, "_added_by_setup_logger", False)]:
        logger.removeHandler(handler)
    shown_name = abbrev_name if abbrev_name is not None else name
    if distributed_rank == 0:
        console = logging.StreamHandler(stream=sys.stdout)
        console.setLevel(logging.DEBUG)
        console.setFormatter(_ConsoleFormatter(shown_name, colour=color and sys.stdout.isatty()))
        _add_handler(logger, console)
    if output is not None:
        filename = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
        if distributed_rank > 0:
            filename = f"{filename}.rank{distributed_rank}"
        PathManager.mkdirs(os.path.dirname(os.path.abspath(filename)))
        file_handler = logging.StreamHandler(_open_log_file(filename))
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(
            logging.Formatter("[%(asctime)s %(name)s %(levelname)s]: %(message)s", _DATE_FORMAT)
        )
        _add_handler(logger, file_handler)
    return logger


def _add_handler(logger: logging.Logger, handler: logging.Handler) -> None:
    handler._added_by_setup_logger = True
    logger.addHandler(handler)


@functools.lru_cache(maxsize=None)
def _open_log_file(filename: str):
    """One line-buffered append-mode stream per file, shared by every logger writing to it."""
    return PathManager.open(filename, "a", buffering=1)
