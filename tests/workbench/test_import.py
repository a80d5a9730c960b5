import subprocess
import sys


def test_import_workbench_loads_no_jupyter_or_plotting():
    code = ("import sys, workbench; workbench.list_models(); "
            "bad = [m for m in ('ipywidgets', 'IPython', 'matplotlib.pyplot') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_data_layer_imports_no_model_package():
    code = ("import sys; from workbench.data import load_dataset; load_dataset('sem_linear', 0); "
            "bad = sorted(m for m in sys.modules if m.startswith('workbench.models')); print(bad); "
            "sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
