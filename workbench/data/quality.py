"""Quality assessment on load: a report people read before they trust a dataset.

Checks: too few rows, missing values, missing labels, infinite values, duplicate rows,
constant columns, outliers (robust z-score), label imbalance, overlap between train and
test splits, schema problems (text feature columns). Each finding is a row with a
severity: ``error`` blocks the run, ``warning`` is shown and recorded. Rows are named
counting from 1, the header not counted (row 1 is a CSV file's second line).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import DataError
from ..limits import MIN_ROWS
from .catalog import Dataset

__all__ = ["QualityReport", "assess", "assess_plan", "require_usable"]


def _rows(mask) -> str:
    """``rows 3, 8 and 2 more`` for a boolean mask over the table's rows."""
    where = np.flatnonzero(np.asarray(mask)) + 1
    shown = ", ".join(str(i) for i in where[:5])
    return f"row{'s' if len(where) > 1 else ''} {shown}" + (f" and {len(where) - 5} more" if len(where) > 5 else "")


@dataclasses.dataclass(frozen=True)
class QualityReport:
    dataset: str
    findings: tuple[tuple[str, str, str, float], ...]  # (check, severity, message, value)
    score: float  # 0..100, 100 = nothing found

    @property
    def errors(self) -> list[str]:
        return [m for _, sev, m, _ in self.findings if sev == "error"]

    @property
    def warnings(self) -> list[str]:
        return [m for _, sev, m, _ in self.findings if sev == "warning"]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.findings, columns=["check", "severity", "message", "value"])


def assess(dataset: Dataset, outlier_z: float = 6.0, imbalance_ratio: float = 10.0) -> QualityReport:
    """Assess a tabular dataset (raw frame and, when prepared, its splits)."""
    findings: list[tuple[str, str, str, float]] = []
    frame = dataset.frame
    if frame is None:
        return QualityReport(dataset.name, (), 100.0)
    n = len(frame)
    if n == 0:
        findings.append(("rows", "error", "the table has no rows", 0.0))
        return QualityReport(dataset.name, tuple(findings), 0.0)
    if n < MIN_ROWS:
        findings.append(("rows", "error", f"only {n} row(s); a table needs at least {MIN_ROWS} "
                         "to split into train, valid and test", float(n)))
    if dataset.target is not None and list(frame.columns) == [dataset.target]:
        findings.append(("schema", "error", f"no feature columns: the table holds only the target '{dataset.target}'",
                         0.0))
    numeric = frame.select_dtypes(["number", "bool"])  # True/False columns train as 1/0
    non_numeric = [c for c in frame.columns if c not in numeric.columns and c != dataset.target]
    if non_numeric:
        findings.append(("schema", "error", f"text (non-numeric) feature columns {non_numeric}: encode them as "
                         "numbers or drop them", float(len(non_numeric))))
    for col in numeric.columns:
        infinite = np.isinf(numeric[col].to_numpy(dtype=np.float64))
        if infinite.any():
            findings.append(("infinite", "error", f"column '{col}': infinite value in {_rows(infinite)}; "
                             "replace or drop them", float(infinite.sum())))
    missing = frame.isna().mean()
    for col, share in missing[missing > 0].items():
        if col == dataset.target:  # a label is never imputed: training on a guessed class is silent damage
            findings.append(("labels", "error", f"target '{col}' is missing in {_rows(frame[col].isna())}; "
                             "fill in or drop those rows", float(share)))
            continue
        sev = "error" if share > 0.5 else "warning"
        findings.append(("missing", sev, f"column '{col}': {share:.1%} missing (imputed with the training median)", float(share)))
    dup = int(frame.duplicated().sum())
    if dup:
        findings.append(("duplicates", "warning", f"{dup} duplicate rows ({dup / n:.1%})", float(dup)))
    for col in frame.columns:
        if frame[col].nunique(dropna=True) <= 1 and col != dataset.target:
            findings.append(("constant", "warning", f"column '{col}' is constant", 1.0))
    feats = numeric.drop(columns=[dataset.target], errors="ignore").replace([np.inf, -np.inf], np.nan)
    if not feats.empty:
        med = feats.median()
        mad = (feats - med).abs().median() * 1.4826
        z = ((feats - med).abs() / mad.replace(0, np.nan)).fillna(0)
        n_out = int((z > outlier_z).any(axis=1).sum())
        if n_out:
            findings.append(("outliers", "warning", f"{n_out} rows with a value over {outlier_z} robust SDs from the median", float(n_out)))
    if dataset.target is not None and dataset.target in frame:
        counts = frame[dataset.target].value_counts()
        if len(counts) < 2:
            findings.append(("labels", "error", f"target '{dataset.target}' has a single class", 1.0))
        elif counts.max() / counts.min() > imbalance_ratio:
            findings.append(("imbalance", "warning", f"label imbalance {counts.max() / counts.min():.1f}:1 "
                             f"(most '{counts.idxmax()}', least '{counts.idxmin()}')", float(counts.max() / counts.min())))
    if "X_train" in dataset.arrays and "X_test" in dataset.arrays:
        train_rows = {r.tobytes() for r in dataset.arrays["X_train"]}
        overlap = sum(r.tobytes() in train_rows for r in dataset.arrays["X_test"])
        if overlap:
            findings.append(("leakage", "warning", f"{overlap} test rows also appear in the training split", float(overlap)))
    penalty = sum(25 if sev == "error" else 5 for _, sev, _, _ in findings)
    return QualityReport(dataset.name, tuple(findings), float(max(0, 100 - penalty)))


def require_usable(dataset: Dataset) -> QualityReport:
    """Assess ``dataset`` and raise :class:`DataError` naming it (and its file) on any error finding."""
    report = assess(dataset)
    if report.errors:
        where = f" ({dataset.source})" if dataset.source != "builtin" else ""
        raise DataError(f"dataset '{dataset.name}'{where} fails quality checks: " + "; ".join(report.errors))
    return report


def assess_plan(trainers, user_files: bool, load=None) -> list[dict]:
    """Assess each tabular dataset of a plan's ``trainers`` once: the user's own files
    (``user_files``) or the built-in ones; an ``error`` finding stops the run (:class:`DataError`).

    Returns the ``data_quality`` event payloads (findings and the fitted preprocessing).
    ``load``: how to get a (prepared dataset, preprocessing) pair, :func:`~.prepare.load_prepared`
    by default; a worker passes its cache, which the preload filled (``workbench._worker``).
    The driver checks the user's files before any worker starts, a worker the built-in ones.
    """
    if load is None:
        from .prepare import load_prepared as load

    seen, payloads = set(), []
    for inst in trainers:
        ds = inst.dataset
        if not ds or ds["name"] in seen or bool(ds.get("path")) != user_files:
            continue
        seen.add(ds["name"])
        prepared, pre = load(ds["name"], inst.data_seed, ds.get("path"), ds.get("target"))
        if prepared.frame is None:
            continue
        report = assess(prepared)
        payloads.append({"dataset": ds["name"], "score": report.score, "findings": [list(f) for f in report.findings],
                         "preprocessing": pre.to_dict() if pre else None})
        if report.errors:
            raise DataError(f"dataset '{ds['name']}' fails quality checks: " + "; ".join(report.errors))
    return payloads
