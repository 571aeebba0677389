from .catalog import DatasetCatalog

__all__ = ["DatasetCatalog"]
