"""Named data sets: a name maps to a function that returns the list of per-sample dicts."""

from typing import Callable, Dict, List


class _DatasetCatalog:
    """name -> callable returning list[dict]. The callable runs on every `get` (it may cache)."""

    def __init__(self):
        self._loaders: Dict[str, Callable[[], List[dict]]] = {}

    def register(self, name: str, loader: Callable[[], List[dict]]) -> None:
        if not callable(loader):
            raise TypeError(f"DatasetCatalog.register('{name}'): loader must be callable")
        if name in self._loaders:
            raise KeyError(f"Data set '{name}' is already registered")
        self._loaders[name] = loader

    def get(self, name: str) -> List[dict]:
        if name not in self._loaders:
            known = ", ".join(sorted(self._loaders)) or "none"
            raise KeyError(f"Data set '{name}' is not registered. Registered: {known}")
        return self._loaders[name]()

    def remove(self, name: str) -> None:
        self._loaders.pop(name)

    def list(self) -> List[str]:
        return sorted(self._loaders)

    def __contains__(self, name: str) -> bool:
        return name in self._loaders


DatasetCatalog = _DatasetCatalog()
