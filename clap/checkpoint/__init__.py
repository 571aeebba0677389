from .clap_checkpoint import (
    ClapCheckpointer,
    UnreadableCheckpointError,
    atomic_write,
    check_weights_only_safe,
    export_submodules,
    remove_stale_temporaries,
)

__all__ = [
    "ClapCheckpointer",
    "UnreadableCheckpointError",
    "atomic_write",
    "check_weights_only_safe",
    "export_submodules",
    "remove_stale_temporaries",
]
