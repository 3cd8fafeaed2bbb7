"""tools/benchmarks/gpu.py in reduced mode on the CPU: the one table, its rows and columns, and
checks computed from the run."""

import json
import math

import pytest
import torch

from tests.scripts import load_script
from tools.benchmarks.gpu_rows import loss_checks


@pytest.fixture
def one_thread():
    # Small ops on a busy CPU wait for their threads more than they compute.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_reduced_run_prints_one_table_with_computed_checks(one_thread, tmp_path, capsys):
    tool = load_script("tools/benchmarks/gpu.py")
    result = tool.main(["--reduced", "--threads", "1", "--json", str(tmp_path / "gpu.json")])
    assert json.loads((tmp_path / "gpu.json").read_text()) == json.loads(json.dumps(result))
    lines = capsys.readouterr().out.splitlines()
    assert "mode: REDUCED" in lines[0] and "get_cpu_capability()" in lines[0]
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| " + " | ".join(tool.COLUMNS) + " |"
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert all(len(r) == len(tool.COLUMNS) for r in rows)
    assert lines[-1] == "checks: all passed"
    # ADE20K R50 and Swin-T: 2 training rows, 3 variants x 2 batch sizes; COCO: 1 + 1.
    phases = [(r[0], r[1], r[2], r[3]) for r in rows]
    assert len(phases) == len(set(phases)) == 2 * (2 + 6) + 2
    assert ("ADE20K Swin-T", "train", "fp16", "2") in phases
    assert ("COCO panoptic R50", "infer", "fp32", "1") in phases
    for r in result["rows"]:
        assert r["ms"] > 0 and r["peak_mib"] > 0
        assert math.isclose(
            r["images_per_s"],
            r["batch"] * 1000 / r["ms"] if r["phase"] == "train" else 1000 / r["ms"],
        )
    checks = {
        (r["model"], r["phase"], r["precision"], r["batch"]): r["checks"] for r in result["rows"]
    }
    finite, ratio = checks["ADE20K R50", "train", "fp16", 2]
    assert finite["ok"] and finite["value"] == 1.0
    # Computed on the run: float16 rounding moves the loss, by less than 1%.
    assert ratio["ok"] and 0 < abs(ratio["value"] - 1) < 0.01
    agree, diff = checks["ADE20K Swin-T", "infer", "fp16", 2]
    assert 0.9 < agree["value"] <= 1.0 and 0 < diff["value"] < 0.1
    assert checks["ADE20K R50", "infer", "fp32 channels-last", 1][1]["value"] < 1e-4
    assert (
        "official 4334 MB/GPU"
        in next(r for r in rows if r[:3] == ["ADE20K R50", "train", "fp32"])[-1]
    )


def test_loss_checks_fail_on_a_non_finite_loss_or_a_far_float16_loss():
    finite, ratio = loss_checks([1.0, float("nan")], ratio=1.02)
    assert finite["ok"] is False and finite["value"] == 0.5
    assert ratio["ok"] is False
    assert [c["ok"] for c in loss_checks([2.0, 1.5], ratio=0.995)] == [True, True]


def test_full_mode_without_cuda_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit, match="no CUDA device here; --reduced runs"):
        load_script("tools/benchmarks/gpu.py").main([])
