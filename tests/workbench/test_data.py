import numpy as np
import pandas as pd
import pytest

from workbench.data import assess, load_dataset, prepare, user_dataset
from workbench.errors import DataError


def test_digits_split_is_stratified_and_scaled_on_train_only():
    ds, pre = prepare(load_dataset("digits"), seed=0)
    a = ds.arrays
    assert len(a["X_train"]) + len(a["X_valid"]) + len(a["X_test"]) == 1797
    assert np.allclose(a["X_train"].mean(0), 0, atol=1e-5)
    assert abs(a["X_test"].mean()) > 1e-4  # test split is transformed, not re-fitted
    assert set(np.unique(a["y_test"])) == set(range(10))
    assert len(pre.means) == 64


def test_quality_report_finds_problems(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2, np.nan, 4, 5, 5, 1000, 3, 2, 4], "const": [1] * 10, "y": [0] * 8 + [1] * 2})
    frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    report = assess(user_dataset("t", path, target="y"))
    checks = set(report.to_frame()["check"])
    assert {"missing", "duplicates", "constant", "outliers"} <= checks
    assert report.score < 100 and not report.errors


def test_blocking_problems_are_errors(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": [1, 2, 3], "name": ["x", "y", "z"], "y": [1, 1, 1]}).to_csv(path, index=False)
    report = assess(user_dataset("t", path, target="y"))
    assert any("non-numeric" in e for e in report.errors)
    assert any("single class" in e for e in report.errors)


def test_bad_files_give_one_clear_message(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        user_dataset("x", tmp_path / "missing.csv")
    (tmp_path / "a.csv").write_text("a,b\n1,2\n")
    (tmp_path / "b.csv").write_text("a,c\n1,2\n")
    with pytest.raises(DataError, match="schema mismatch"):
        user_dataset("x", tmp_path)
    with pytest.raises(DataError, match="target column 'lable' not found, did you mean 'label'"):
        pd.DataFrame({"label": [1], "v": [2]}).to_csv(tmp_path / "c.csv", index=False)
        user_dataset("x", tmp_path / "c.csv", target="lable")


def test_unknown_dataset_suggests():
    with pytest.raises(DataError, match="did you mean 'digits'"):
        load_dataset("digit")


def test_text_labels_and_true_false_features_are_usable(tmp_path):
    """Only text *features* block a run: text labels are classes, True/False columns are 1/0."""
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": range(30), "flag": [i % 3 == 0 for i in range(30)],
                  "y": ["cat" if i % 2 else "dog" for i in range(30)]}).to_csv(path, index=False)
    prepared, _ = prepare(user_dataset("t", path, target="y"))
    assert prepared.meta["classes"] == ["cat", "dog"]
    assert prepared.arrays["X_train"].shape[1] == 2 and not assess(prepared).errors
