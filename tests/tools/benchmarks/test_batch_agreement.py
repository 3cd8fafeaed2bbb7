"""tools/benchmarks/batch_agreement.py on a registered dataset of two images of different
sizes: the smaller one alone and batched with the larger one."""

from detectron2.data import DatasetCatalog
from PIL import Image

from tests.scripts import load_script
from tests.tools.benchmarks.conftest import block_image


def test_share_of_pixels_labelled_alike_alone_and_batched(tiny_config, varied_weights, tmp_path):
    files = []
    for i, (h, w) in enumerate([(64, 90), (60, 120)]):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(block_image(h, w)).save(files[-1])
    name = f"test_batch_agreement_{tmp_path.name}"
    DatasetCatalog.register(name, lambda: [{"file_name": f} for f in files])
    try:
        shares = load_script("tools/benchmarks/batch_agreement.py").main(
            ["--config-file", tiny_config, "--dataset", name, "--pairs", "3",
             "--opts", "MODEL.WEIGHTS", varied_weights, "INPUT.FORMAT", "RGB"]
        )  # fmt: skip
    finally:
        DatasetCatalog.remove(name)
    assert len(shares) == 1  # two images make one pair
    # The padding of the batch reaches the smaller image's convolutions and attention.
    assert 0 < shares[0] < 1.0
