"""Datasets: catalog, quality assessment and preprocessing."""
from .catalog import KINDS, Dataset, list_datasets, load_dataset, register_dataset, user_dataset

__all__ = ["KINDS", "Dataset", "list_datasets", "load_dataset", "register_dataset", "user_dataset"]
