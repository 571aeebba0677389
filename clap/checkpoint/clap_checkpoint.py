"""Checkpoints: atomic saves, `weights_only` loading, and export of sub-module weights.

Loading policy (torch >= 2.6 made `weights_only=True` the default of `torch.load`): every
checkpoint this project writes holds only tensors and python primitives (int, float, bool, str,
None) inside dicts, lists and tuples -- model weights, optimizer and scheduler states, hook
states, the iteration and the RNG states. `ClapCheckpointer.save` checks this before writing
and names any offending entry, and `ClapCheckpointer` loads with `weights_only=True`, so loading
a checkpoint never runs pickled code. A trusted foreign file that needs full unpickling can be
loaded with `ClapCheckpointer(..., weights_only=False)`, an explicit opt-in.
"""

import logging
import os
import pickle
import re
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
from fvcore.common.checkpoint import Checkpointer

from clap.utils import comm
from clap.utils.file_io import PathManager

__all__ = [
    "ClapCheckpointer",
    "UnreadableCheckpointError",
    "atomic_write",
    "check_weights_only_safe",
    "export_submodules",
    "remove_stale_temporaries",
]

LAST_CHECKPOINT_FILE = "last_checkpoint"

_PRIMITIVES = (int, float, bool, str, bytes, type(None), torch.Size)


def check_weights_only_safe(obj: Any, where: str = "checkpoint") -> None:
    """Raise TypeError naming the first entry of `obj` that `torch.load(weights_only=True)`
    could not read back (anything but tensors and primitives in dicts, lists and tuples)."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, _PRIMITIVES):
        return
    if isinstance(obj, (dict, OrderedDict)):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}, not str or int")
            check_weights_only_safe(value, f"{where}.{key}")
        return
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            check_weights_only_safe(value, f"{where}[{index}]")
        return
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; checkpoints may hold only "
        "tensors and int / float / bool / str / None in dicts, lists and tuples"
    )


# `atomic_write`'s temporary file for <folder>/<name>: <folder>/.<name>.tmp.<pid of the writer>
_TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.tmp\.(?P<pid>\d+)$")


class UnreadableCheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated or corrupt); names the file."""


def _temporary_path(path: str) -> str:
    folder, basename = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{basename}.tmp.{os.getpid()}")


def _process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str) -> List[str]:
    """Delete the temporary files that `atomic_write` left in `folder` when its process was
    killed during a write (`.<name>.tmp.<pid>`, e.g. `.model_0000099.pth.tmp.4242`): those of
    this process and of processes that no longer run. Temporaries of other running processes
    are kept, since they may be writing them now. Call it while this process writes nothing.

    Returns:
        The names of the deleted files.
    """
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        match = _TEMPORARY_NAME.match(name)
        if match is None:
            continue
        pid = int(match.group("pid"))
        if pid != os.getpid() and _process_is_alive(pid):
            continue
        try:
            os.remove(os.path.join(folder, name))
        except FileNotFoundError:  # removed meanwhile (e.g. by another rank's process)
            continue
        removed.append(name)
    if removed:
        logging.getLogger(__name__).warning(
            f"Removed {len(removed)} temporary file(s) of interrupted checkpoint writes from "
            f"{folder}: {', '.join(removed)}"
        )
    return removed


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write a local file so that readers see either the old content or the complete new one.

    `write(file_object)` writes into a temporary file in the same folder, which is flushed to
    disk and then renamed over `path` (os.replace is atomic on POSIX and Windows). If writing
    fails, or the process is killed, `path` keeps its previous content; the temporary file is
    removed on failure.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = _temporary_path(path)
    try:
        with open(temporary, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    try:  # make the rename itself durable
        folder_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder_fd)
    except OSError:
        pass
    finally:
        os.close(folder_fd)


class ClapCheckpointer(Checkpointer):
    """fvcore Checkpointer with atomic saves, `weights_only` loading and the project PathManager.

    A checkpoint `<save_dir>/<name>.pth` is a dict: "model" (the unwrapped model's state dict),
    one entry per checkpointable (e.g. "trainer": iteration, optimizer, hook states), plus the
    extra keyword arguments of `save` (e.g. "iteration", "rng_states"). `<save_dir>/last_checkpoint`
    names the newest complete file; it is replaced atomically after the checkpoint itself.

    `load` also accepts a file holding a bare state dict (name -> tensor), e.g. weights written
    by `export_submodules`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: Optional[bool] = None,
        weights_only: bool = True,
        **checkpointables: Any,
    ):
        """
        Args:
            model: the model (a DDP / DataParallel wrapper is unwrapped).
            save_dir: folder of the checkpoints and of `last_checkpoint`.
            save_to_disk: write files; None means "on the main rank only".
            weights_only: passed to `torch.load`; False unpickles arbitrary objects (only for
                trusted files).
            checkpointables: objects with `state_dict` / `load_state_dict` saved alongside.
        """
        if save_to_disk is None:
            save_to_disk = comm.is_main_process()
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.path_manager = PathManager
        self.weights_only = weights_only
        self.logger = logging.getLogger(__name__)

    def save(self, name: str, **kwargs: Any) -> None:
        """Write `<save_dir>/<name>.pth` atomically, then point `last_checkpoint` at it.

        Raises:
            TypeError: when some state is not weights_only-loadable (nothing is written then).
        """
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, checkpointable in self.checkpointables.items():
            data[key] = checkpointable.state_dict()
        data.update(kwargs)
        check_weights_only_safe(data)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Atomically replace `last_checkpoint` with the given file name."""
        save_file = os.path.join(self.save_dir, LAST_CHECKPOINT_FILE)
        atomic_write(save_file, lambda f: f.write(last_filename_basename), mode="w")

    def load(self, path: str, checkpointables: Optional[Iterable[str]] = None) -> Dict[str, Any]:
        """Load the model (and the named checkpointables, all by default) from `path`.

        Returns:
            The entries of the file not consumed (e.g. "iteration", "rng_states").
        Raises:
            FileNotFoundError: naming the path when it does not exist.
        """
        if path and not os.path.isfile(path) and not self.path_manager.exists(path):
            raise FileNotFoundError(f"Checkpoint not found: {path}")
        if checkpointables is not None:
            checkpointables = list(checkpointables)
        return super().load(path, checkpointables=checkpointables)

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """With `resume` and a `last_checkpoint` in `save_dir`: load everything from the file it
        names. If that file cannot be read (truncated, corrupt), warn and load the newest other
        training checkpoint of `save_dir` that can be read. Otherwise load only the model
        weights of `path` (if given).

        Returns:
            The entries of the loaded file not consumed (e.g. "iteration", "rng_states").
        Raises:
            UnreadableCheckpointError: naming the file, when no checkpoint can be read.
        """
        if not (resume and self.has_checkpoint()):
            return super().resume_or_load(path, resume=resume)
        named = self.get_checkpoint_file()
        try:
            return self.load(named)
        except UnreadableCheckpointError as error:
            unreadable = error
        for candidate in self._training_checkpoints_newest_first(exclude=named):
            try:
                if "iteration" not in self._load_file(candidate):
                    continue  # not written by a training run (e.g. exported weights)
            except (RuntimeError, ValueError) as error:  # unreadable, or not a checkpoint
                self.logger.warning(f"Skipping {candidate} while resuming: {error}")
                continue
            self.logger.warning(
                f"{unreadable} Resuming from {candidate} instead, the newest checkpoint of "
                f"{self.save_dir} that can be read."
            )
            return self.load(candidate)
        raise UnreadableCheckpointError(
            f"{unreadable} No other checkpoint in {self.save_dir} can be read to resume from."
        ) from unreadable

    def _training_checkpoints_newest_first(self, exclude: str) -> List[str]:
        """The `.pth` files of `save_dir` but `exclude`, the last written first."""
        exclude = os.path.abspath(exclude)
        paths = [os.path.abspath(os.path.join(self.save_dir, name))
                 for name in os.listdir(self.save_dir)
                 if name.endswith(".pth") and not name.startswith(".")]
        paths = [p for p in paths if p != exclude and os.path.isfile(p)]
        # newest first; on equal times "model_final" before "model_0000123", later before earlier
        return sorted(paths, key=lambda p: (os.path.getmtime(p), p), reverse=True)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        try:
            data = torch.load(filename, map_location="cpu", weights_only=self.weights_only)
        except pickle.UnpicklingError as error:
            raise RuntimeError(
                f"Could not load {filename} with weights_only=True: it holds objects other than "
                "tensors and primitives. If you trust the file, load it with "
                "ClapCheckpointer(..., weights_only=False)."
            ) from error
        except (RuntimeError, EOFError, OSError) as error:
            if isinstance(error, FileNotFoundError):
                raise
            size = os.path.getsize(filename) if os.path.isfile(filename) else 0
            raise UnreadableCheckpointError(
                f"Checkpoint {filename} ({size} bytes) cannot be read: it is truncated or "
                f"corrupt ({type(error).__name__}: {error})."
            ) from error
        if not isinstance(data, dict):
            raise ValueError(f"{filename}: expected a dict, found a {type(data).__name__}")
        if "model" not in data:
            if not all(isinstance(v, torch.Tensor) for v in data.values()):
                raise ValueError(
                    f"{filename}: neither a checkpoint (no 'model' entry) nor a state dict "
                    "(name -> tensor)"
                )
            data = {"model": data}
        return data


def export_submodules(model_state: Dict[str, torch.Tensor], prefixes: Iterable[str]) -> dict:
    """The entries of a model state dict that belong to the given sub-modules.

    Args:
        model_state: name -> tensor (e.g. `torch.load(ckpt)["model"]`).
        prefixes: sub-module names such as "lidar_backbone" or "fusion"; an entry belongs to
            "a" when its name is "a" or starts with "a.". Names are kept unchanged, so the result
            loads into another model with sub-modules of the same names (e.g. a detector built on
            the pre-trained encoders): `torch.save(export_submodules(...), path)` and set
            MODEL.WEIGHTS to the path.
    Raises:
        KeyError: naming a prefix that matches no entry (and the top-level names present).
    """
    prefixes = [p.rstrip(".") for p in prefixes]
    exported = OrderedDict()
    for prefix in prefixes:
        matched = [k for k in model_state if k == prefix or k.startswith(prefix + ".")]
        if not matched:
            top_level = sorted({k.split(".")[0] for k in model_state})
            raise KeyError(f"No weights under '{prefix}'. Top-level names: {top_level}")
        for key in matched:
            exported[key] = model_state[key]
    return exported
