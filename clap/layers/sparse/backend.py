"""Choice of the sparse-convolution backend (`MODEL.SPARSE_BACKEND`)."""

import importlib.util

__all__ = ["BACKENDS", "resolve_sparse_backend", "spconv_available", "torchsparse_available"]

BACKENDS = ("auto", "torchsparse", "spconv", "torch")

_INSTALL_HINTS = {
    "torchsparse": "install torchsparse 2.x (built from source)",
    "spconv": "install the spconv 2.x wheel matching torch's CUDA version (e.g. spconv-cu126)",
}


def torchsparse_available() -> bool:
    """Whether the `torchsparse` package can be imported."""
    return importlib.util.find_spec("torchsparse") is not None


def spconv_available() -> bool:
    """Whether the `spconv` package (2.x, any of its CUDA or CPU wheels) can be imported."""
    return importlib.util.find_spec("spconv") is not None


def resolve_sparse_backend(name: str, device: str = "cpu") -> str:
    """Turn a `MODEL.SPARSE_BACKEND` value into "torch", "torchsparse" or "spconv".

    "auto" picks, for a model on CUDA, torchsparse when it is importable, else spconv when it is
    importable, else the pure-torch backend; on the CPU always the pure-torch backend
    (torchsparse's strided convolutions are CUDA-only and spconv's CPU build has no backward).
    "torchsparse" / "spconv" raise an error when the package cannot be imported.
    """
    if name not in BACKENDS:
        raise ValueError(f"MODEL.SPARSE_BACKEND must be one of {BACKENDS}, got {name!r}")
    available = {"torchsparse": torchsparse_available, "spconv": spconv_available}
    if name == "auto":
        if str(device).startswith("cuda"):
            for candidate in ("torchsparse", "spconv"):
                if available[candidate]():
                    return candidate
        return "torch"
    if name in available and not available[name]():
        raise ImportError(
            f"MODEL.SPARSE_BACKEND is {name!r} but the {name} package cannot be imported; "
            f"{_INSTALL_HINTS[name]} or set MODEL.SPARSE_BACKEND to 'torch' or 'auto'"
        )
    return name
