"""Config node with project-local file access, and the `configurable` decorator."""

import functools
import inspect

from fvcore.common.config import CfgNode as _FvcoreCfgNode

from clap.utils.file_io import PathManager


class CfgNode(_FvcoreCfgNode):
    """A yacs/fvcore config node whose files are opened through the project PathManager.

    Adds over fvcore: a clear error for a missing file, and keys that are checked against the
    default tree (unknown keys and type mismatches raise errors naming the key).
    """

    @classmethod
    def _open_cfg(cls, filename):
        if not PathManager.exists(filename):
            raise FileNotFoundError(f"Config file not found: {filename}")
        return PathManager.open(filename, "r")

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a yaml file (following `_BASE_` chains) into this node."""
        if not PathManager.exists(cfg_filename):
            raise FileNotFoundError(f"Config file not found: {cfg_filename}")
        loaded = self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe)
        loaded = type(self)(loaded)
        self.merge_from_other_cfg(loaded)

    def merge_from_list(self, cfg_list: list) -> None:
        """Merge `KEY VALUE` pairs (command-line overrides); unknown keys raise KeyError."""
        if len(cfg_list) % 2 != 0:
            raise ValueError(f"Overrides must be KEY VALUE pairs, got an odd list: {cfg_list}")
        for full_key in cfg_list[0::2]:
            node = self
            for part in full_key.split("."):
                if not isinstance(node, _FvcoreCfgNode) or part not in node:
                    raise KeyError(f"Non-existent config key: {full_key}")
                node = node[part]
        super().merge_from_list(cfg_list)


def get_cfg() -> CfgNode:
    """A fresh copy of the project's default config tree (`clap/config/defaults.py`)."""
    from .defaults import _C

    return _C.clone()


def configurable(init_func):
    """Let a class be built either from explicit arguments or from a config.

    Decorate `__init__` of a class that defines `from_config(cls, cfg, *args, **kwargs) -> dict`.
    Then `Cls(cfg, ...)` calls `from_config` to turn the config into keyword arguments for
    `__init__`, and `Cls(a=..., b=...)` keeps working with explicit arguments.
    """
    if init_func.__name__ != "__init__":
        raise TypeError("@configurable decorates __init__ only")

    @functools.wraps(init_func)
    def wrapped(self, *args, **kwargs):
        from_config = getattr(type(self), "from_config", None)
        if from_config is None or not inspect.ismethod(from_config):
            raise TypeError(f"{type(self).__name__} needs a classmethod from_config")
        if _called_with_cfg(*args, **kwargs):
            explicit = _call_from_config(from_config, *args, **kwargs)
            init_func(self, **explicit)
        else:
            init_func(self, *args, **kwargs)

    return wrapped


def _called_with_cfg(*args, **kwargs) -> bool:
    if args and isinstance(args[0], _FvcoreCfgNode):
        return True
    return isinstance(kwargs.get("cfg", None), _FvcoreCfgNode)


def _call_from_config(from_config, *args, **kwargs) -> dict:
    """Call `from_config` with the arguments it accepts; pass the rest through to `__init__`."""
    signature = inspect.signature(from_config)
    if signature.parameters and list(signature.parameters)[0] != "cfg":
        raise TypeError(f"{from_config.__qualname__} must take `cfg` as its first argument")
    takes_var_kwargs = any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )
    if takes_var_kwargs:
        return from_config(*args, **kwargs)
    accepted = set(signature.parameters)
    for_from_config = {k: v for k, v in kwargs.items() if k in accepted}
    passthrough = {k: v for k, v in kwargs.items() if k not in accepted}
    result = from_config(*args, **for_from_config)
    result.update(passthrough)
    return result
