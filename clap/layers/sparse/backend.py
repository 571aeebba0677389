"""Choice of the sparse-convolution backend (`MODEL.SPARSE_BACKEND`)."""

import importlib.util

__all__ = ["BACKENDS", "resolve_sparse_backend", "torchsparse_available"]

BACKENDS = ("auto", "torchsparse", "torch")


def torchsparse_available() -> bool:
    """Whether the `torchsparse` package can be imported."""
    return importlib.util.find_spec("torchsparse") is not None


def resolve_sparse_backend(name: str, device: str = "cpu") -> str:
    """Turn a `MODEL.SPARSE_BACKEND` value into "torch" or "torchsparse".

    "auto" picks torchsparse when it is importable and the model runs on CUDA (torchsparse's
    strided convolutions are CUDA-only), else the pure-torch backend. "torchsparse" raises an
    error when the package cannot be imported.
    """
    if name not in BACKENDS:
        raise ValueError(f"MODEL.SPARSE_BACKEND must be one of {BACKENDS}, got {name!r}")
    if name == "auto":
        use_torchsparse = torchsparse_available() and str(device).startswith("cuda")
        return "torchsparse" if use_torchsparse else "torch"
    if name == "torchsparse" and not torchsparse_available():
        raise ImportError(
            "MODEL.SPARSE_BACKEND is 'torchsparse' but the torchsparse package cannot be imported;"
            " install torchsparse 2.x (built from source) or set MODEL.SPARSE_BACKEND to 'torch' "
            "or 'auto'"
        )
    return name
