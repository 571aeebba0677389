from .build import build_test_loader, build_train_loader, get_dataset_dicts
from .catalog import DatasetCatalog
from .collate import collate_batch
from .mapper import build_mapper

__all__ = [
    "DatasetCatalog",
    "build_mapper",
    "build_test_loader",
    "build_train_loader",
    "collate_batch",
    "get_dataset_dicts",
]
