"""The pruning stages' lean process: packages marked absent must not break loading a model."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.workflow_util import ROOT

# transformers imports scikit-learn when it is installed; scikit-learn needs scipy, which the lean
# process marks absent. A stand-in scikit-learn that imports scipy the same way shows the clash.
CHECK = """
from pipeline.core.environment import lean_process
lean_process()
from transformers import AutoModelForCausalLM, GenerationMixin
import transformers.utils.import_utils as utils
print("loaded", utils.is_sklearn_available(), utils.is_scipy_available())
"""


def test_a_model_class_loads_beside_an_installed_scikit_learn(tmp_path):
    fake = tmp_path / "sklearn"
    (fake / "metrics").mkdir(parents=True)
    (fake / "__init__.py").write_text("import scipy.sparse\n__version__ = '1.6.0'\n")
    (fake / "metrics" / "__init__.py").write_text("import scipy.sparse\ndef roc_curve(*a, **k): pass\n")
    (tmp_path / "scikit_learn-1.6.0.dist-info").mkdir()
    (tmp_path / "scikit_learn-1.6.0.dist-info" / "METADATA").write_text("Name: scikit-learn\nVersion: 1.6.0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded False False" in done.stdout
