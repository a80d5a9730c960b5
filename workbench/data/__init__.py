"""Datasets: catalog, quality assessment and preprocessing."""
from .catalog import KINDS, Dataset, dataset_kind, list_datasets, load_dataset, register_dataset, user_dataset
from .prepare import Preprocessing, prepare
from .quality import QualityReport, assess

__all__ = ["KINDS", "Dataset", "dataset_kind", "list_datasets", "load_dataset", "register_dataset",
           "user_dataset", "Preprocessing", "prepare", "QualityReport", "assess"]
