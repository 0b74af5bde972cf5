"""TFOD's own test modules, run through the compat layer: a strong check of the stack.

Slow: the model builder's two dozen tests build real models of every
meta-architecture (6.5 minutes on 2 shared cores), the decoder's took 3.
"""

from __future__ import annotations

import pytest

from tests.conftest import run_python

RUN = """
import tfodkit.compat, unittest
suite = unittest.defaultTestLoader.loadTestsFromName({module!r})
result = unittest.TextTestRunner(verbosity=0).run(suite)
print("RESULT", result.testsRun, len(result.failures), len(result.errors), len(result.skipped))
"""


@pytest.mark.slow
@pytest.mark.parametrize("module,min_tests", [
    ("object_detection.builders.model_builder_tf2_test", 20),
    ("object_detection.data_decoders.tf_example_decoder_test", 20),
])
def test_tfod_test_module_passes(module, min_tests):
    out = run_python(RUN.format(module=module), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")][-1]
    ran, failures, errors, _skipped = map(int, line.split()[1:])
    assert ran >= min_tests and failures == 0 and errors == 0, out.stderr[-3000:]
