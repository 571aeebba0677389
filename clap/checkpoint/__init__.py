from .clap_checkpoint import (
    ClapCheckpointer,
    atomic_write,
    check_weights_only_safe,
    export_submodules,
)

__all__ = ["ClapCheckpointer", "atomic_write", "check_weights_only_safe", "export_submodules"]
