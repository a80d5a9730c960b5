"""Causal reasoning engine: DAGMA causal discovery, guaranteed DAGs, interventional queries.

Importing this package registers the ``causal_reasoning_engine`` trainer.
"""
from ._effects import StructuralEquations, topological_order
from ._graph import graph_metrics, is_dag, read_graph_csv, to_dag
from ._trainer import CausalReasoningEngine
from ...data.sem import TrueSEM, sem_dataset

__all__ = ["CausalReasoningEngine", "StructuralEquations", "TrueSEM", "graph_metrics", "is_dag", "read_graph_csv",
           "sem_dataset", "to_dag", "topological_order"]
