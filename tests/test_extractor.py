"""Extraction workers: process-level settings."""
import subprocess
import sys

import pytest

PAGE_FAULT_PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "reuse":
    from features.extractor import reuse_freed_memory
    assert reuse_freed_memory()
def allocate_and_free():
    blocks = [np.ones(2 << 20, np.float32) for _ in range(3)]  # 3 x 8 MiB, every page written
    del blocks
allocate_and_free()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    allocate_and_free()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_image_buffers_are_reused_without_page_faults():
    def faults_per_round(mode: str) -> float:
        run = subprocess.run([sys.executable, "-c", PAGE_FAULT_PROBE, mode], check=True,
                             capture_output=True, text=True)
        return float(run.stdout)
    # glibc's defaults give the 24 MiB back on free and fault it in again (6,144 pages of 4 KiB
    # at most); kept for reuse, the same rounds fault (almost) never.
    assert faults_per_round("default") > 200
    assert faults_per_round("reuse") < 20
