"""demo/demo.py on images of every kind (and broken ones), for each task, on a tiny generated
video, and on an 8000 x 6000 photograph within bounded memory."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image

from maskformer import get_maskformer_cfg
from maskformer.data.io import read_image
from tests.common import REPO_ROOT
from tests.scripts import load_script, run_script

demo = load_script("demo/demo.py")

SEMANTIC_CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart", "maskformer_R18_quickstart.yaml")
PANOPTIC_CONFIG = os.path.join(
    REPO_ROOT, "configs", "coco-panoptic", "maskformer_panoptic_R50.yaml"
)
# The quickstart and COCO panoptic recipes at a size that runs in a fraction of a second.
TINY = [
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32",
    "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "MODEL.MASK_FORMER.HIDDEN_DIM", "32",
    "MODEL.MASK_FORMER.NHEADS", "4",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8",
    "MODEL.MASK_FORMER.DEC_LAYERS", "2",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "128",
    "MODEL.DEVICE", "cpu",
]  # fmt: skip
SEMANTIC_OPTS = [*TINY, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "6"]
PANOPTIC_OPTS = [
    *TINY,
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "7",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1",
    "DATASETS.TEST", '("quickstart_panoptic_val",)',
    "TEST.DETECTIONS_PER_IMAGE", "5",  # instance output: drawing 40 random masks is slow
]  # fmt: skip


def _weights(path, config, opts):
    """Weights of the model `config` + `opts` builds (untrained, but a complete checkpoint)."""
    torch.manual_seed(0)
    model = build_model(get_maskformer_cfg(config, [*opts, "MODEL.WEIGHTS", ""]))
    torch.save({"model": model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """task -> (config file, --opts with MODEL.WEIGHTS)."""
    d = tmp_path_factory.mktemp("weights")
    sem = _weights(d / "semantic.pth", SEMANTIC_CONFIG, SEMANTIC_OPTS)
    pan = _weights(d / "panoptic.pth", PANOPTIC_CONFIG, PANOPTIC_OPTS)
    return {
        "semantic": (SEMANTIC_CONFIG, [*SEMANTIC_OPTS, "MODEL.WEIGHTS", sem]),
        "panoptic": (PANOPTIC_CONFIG, [*PANOPTIC_OPTS, "MODEL.WEIGHTS", pan]),
        "instance": (PANOPTIC_CONFIG, [*PANOPTIC_OPTS, "MODEL.WEIGHTS", pan]),
    }


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _exif_rotated_jpeg(path, h, w):
    """A JPEG stored as (h, w) whose EXIF orientation 6 says: rotate 90 degrees to display, so
    it displays as (w, h)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_rgb(h, w)).save(path, exif=exif, quality=90)


# name -> displayed (H, W); written by `_write_inputs`.
GOOD = {
    "colour.jpg": (48, 64),
    "grey.png": (40, 30),
    "rgba.png": (33, 50),
    "palette.png": (36, 36),
    "grey16.png": (30, 45),
    "rotated.jpg": (60, 40),  # stored 40 x 60
    "one_pixel.png": (1, 1),
    "three_by_five.png": (3, 5),
    "palette.gif": (20, 24),  # written as palette.gif.png: OpenCV does not write GIF
}
BAD = ["not_an_image.png", "truncated.jpg"]


def _write_inputs(folder):
    os.makedirs(folder, exist_ok=True)
    p = lambda name: os.path.join(folder, name)  # noqa: E731
    Image.fromarray(_rgb(48, 64)).save(p("colour.jpg"), quality=90)
    Image.fromarray(_rgb(40, 30)[..., 0]).save(p("grey.png"))
    rgba = np.concatenate([_rgb(33, 50), _rgb(33, 50, 1)[..., :1]], axis=2)
    Image.fromarray(rgba, "RGBA").save(p("rgba.png"))
    Image.fromarray(_rgb(36, 36)).convert("P").save(p("palette.png"))
    grey16 = (np.arange(30 * 45).reshape(30, 45) * 48).astype(np.uint16)
    cv2.imwrite(p("grey16.png"), grey16)
    _exif_rotated_jpeg(p("rotated.jpg"), 40, 60)
    Image.fromarray(_rgb(1, 1)).save(p("one_pixel.png"))
    Image.fromarray(_rgb(3, 5)).save(p("three_by_five.png"))
    Image.fromarray(_rgb(20, 24)).convert("P").save(p("palette.gif"))
    with open(p("not_an_image.png"), "w") as f:
        f.write("this is text\n")
    Image.fromarray(_rgb(48, 64)).save(p("full.jpg"), quality=90)
    with open(p("full.jpg"), "rb") as f:
        data = f.read()
    os.remove(p("full.jpg"))
    with open(p("truncated.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])


def _run(capsys, config, opts, *args):
    status = demo.main(["--config-file", config, *args, "--opts", *opts])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("task", ["semantic", "panoptic", "instance"])
def test_images_of_every_kind_for_each_task(task, models, tmp_path, capsys):
    inputs = tmp_path / "in"
    _write_inputs(inputs)
    missing = str(tmp_path / "missing.jpg")
    out = tmp_path / "out"
    config, opts = models[task]
    status, stdout, stderr = _run(
        capsys, config, opts, "--input", str(inputs), missing, "--output", str(out),
        "--task", task, "--confidence-threshold", "0",
    )  # fmt: skip
    assert status == 1  # some inputs failed; the others were drawn
    errors = [line for line in stderr.splitlines() if line.startswith("demo: error:")]
    assert len(errors) == 3
    for name, line in zip(["not_an_image.png", "truncated.jpg", missing], errors):
        assert name in line
    assert "Image file not found" in errors[2]
    expected = {
        n if n.endswith(demo.WRITABLE_EXTENSIONS) else n + ".png": hw for n, hw in GOOD.items()
    }
    assert sorted(os.listdir(out)) == sorted(expected)  # no temporary or half-written file
    for name, (h, w) in expected.items():
        with Image.open(out / name) as im:
            im.verify()  # a complete, valid PNG / JPEG
        with Image.open(out / name) as im:
            assert im.format == ("JPEG" if name.endswith(".jpg") else "PNG")
            assert (im.height, im.width) == (h, w), name
    # Something was drawn over the image.
    original = read_image(str(inputs / "colour.jpg"), "RGB").astype(int)
    drawn = np.asarray(Image.open(out / "colour.jpg")).astype(int)
    assert np.abs(drawn - original).mean() > 5
    assert f"demo: {len(GOOD)} images in" in stdout and "s per image" in stdout
    assert "3 failed" in stdout


def test_default_task_is_the_richest_the_config_enables(models, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(_rgb(40, 50)).save(inputs / "a.png")
    config, opts = models["panoptic"]
    status, stdout, _ = _run(capsys, config, opts, "--input", str(inputs / "a.png"), "--output",
                             str(tmp_path / "a_overlay.png"))  # fmt: skip
    assert status == 0
    assert "drawing the panoptic output" in stdout  # the panoptic config enables PANOPTIC_ON
    with Image.open(tmp_path / "a_overlay.png") as im:
        assert im.size == (50, 40)


def test_no_weights_refuses_unless_allowed(models, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(_rgb(20, 30)).save(image)
    config, opts = models["semantic"]
    no_weights = [*opts, "MODEL.WEIGHTS", ""]
    status, _, stderr = _run(
        capsys, config, no_weights, "--input", str(image), "--output", str(tmp_path / "o.png")
    )
    assert status == 2
    assert "MODEL.WEIGHTS is empty" in stderr and "--allow-random-weights" in stderr
    assert not (tmp_path / "o.png").exists()
    status, _, _ = _run(capsys, config, no_weights, "--input", str(image), "--output",
                        str(tmp_path / "o.png"), "--allow-random-weights")  # fmt: skip
    assert status == 0 and (tmp_path / "o.png").exists()


def test_weights_of_another_model_are_refused(models, tmp_path, capsys):
    # Panoptic weights (7 classes) for the 6-class semantic model: the classifier does not fit.
    config, opts = models["semantic"]
    other = [*opts, "MODEL.WEIGHTS", models["panoptic"][1][-1]]
    image = tmp_path / "a.png"
    Image.fromarray(_rgb(20, 30)).save(image)
    status, _, stderr = _run(
        capsys, config, other, "--input", str(image), "--output", str(tmp_path / "o.png")
    )
    assert status == 2
    assert "not trained weights for this config" in stderr
    assert "sem_seg_head.predictor.class_embed" in stderr


def test_output_names_that_clash_or_replace_inputs_are_refused(models, tmp_path, capsys):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(_rgb(20, 30)).save(tmp_path / sub / "x.png")
    config, opts = models["semantic"]
    args = ["--input", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png")]
    status, _, stderr = _run(capsys, config, opts, *args, "--output", str(tmp_path / "out"))
    assert status == 2 and "would both be drawn to" in stderr
    status, _, stderr = _run(capsys, config, opts, "--input", str(tmp_path / "a"), "--output",
                             str(tmp_path / "a"))  # fmt: skip
    assert status == 2 and "would replace the image" in stderr
    # Folders keep the inputs' relative paths: no clash. Overlays in a subfolder of the inputs
    # are not inputs the next time.
    for _ in range(2):
        status, _, _ = _run(capsys, config, opts, "--input", str(tmp_path), "--output",
                            str(tmp_path / "out"))  # fmt: skip
        assert status == 0
        assert sorted(os.listdir(tmp_path / "out")) == ["a", "b"]
    assert os.path.isfile(tmp_path / "out" / "a" / "x.png")
    assert os.path.isfile(tmp_path / "out" / "b" / "x.png")


def test_glob_patterns(models, tmp_path, capsys):
    for name in ("a.png", "b.png", "c.jpg"):
        Image.fromarray(_rgb(20, 30)).save(tmp_path / name)
    config, opts = models["semantic"]
    out = tmp_path / "out"
    status, _, stderr = _run(capsys, config, opts, "--input", str(tmp_path / "*.png"),
                             str(tmp_path / "*.webp"), "--output", str(out))  # fmt: skip
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    assert status == 1 and "*.webp: no file matches" in stderr


def _write_video(path, frames, h=48, w=64):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(_rgb(h, w, seed=i))
    writer.release()


def _frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.mark.parametrize("task", ["semantic", "panoptic", "instance"])
def test_video(task, models, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    _write_video(video, 3)
    config, opts = models[task]
    out = str(tmp_path / "out") + os.sep  # a folder: out/clip.mp4
    status, stdout, stderr = _run(capsys, config, opts, "--video-input", str(video), "--output",
                                  out, "--task", task, "--confidence-threshold", "0")  # fmt: skip
    assert status == 0, stderr
    assert os.listdir(tmp_path / "out") == ["clip.mp4"]  # no temporary file left
    frames = _frames(tmp_path / "out" / "clip.mp4")
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
    assert "demo: 3 frames in" in stdout and "s per frame" in stdout


def test_video_and_webcam_errors(models, tmp_path, capsys):
    config, opts = models["semantic"]
    status, _, stderr = _run(capsys, config, opts, "--video-input", str(tmp_path / "no.mp4"),
                             "--output", str(tmp_path / "o.mp4"))  # fmt: skip
    assert status == 2 and "no.mp4: no such file" in stderr
    video = tmp_path / "clip.mp4"
    _write_video(video, 1)
    status, _, stderr = _run(capsys, config, opts, "--video-input", str(video), "--output",
                             str(tmp_path / "o.mkv"))  # fmt: skip
    assert status == 2 and ".mp4, .avi" in stderr
    status, _, stderr = _run(capsys, config, opts, "--webcam", "99")  # no such camera here
    assert status == 2 and "cannot open camera 99" in stderr


@pytest.mark.slow
def test_large_photograph_in_bounded_memory(models, tmp_path):
    """8000 x 6000: the script's real exit status, its output size, and its peak memory (the
    full-size Visualizer alone would need ~7 GB, the model's full-size score maps ~1.2 GB)."""
    big = tmp_path / "big.jpg"
    x, y = np.arange(8000).astype(np.uint8), np.arange(6000).astype(np.uint8)
    image = np.empty((6000, 8000, 3), np.uint8)  # gradients and squares (uint8 wraps)
    image[..., 0], image[..., 1] = x[None], y[:, None]
    image[..., 2] = (np.arange(6000) // 32).astype(np.uint8)[:, None] + x[None] // 32
    cv2.imwrite(str(big), image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del image
    config, opts = models["semantic"]
    argv = ["demo/demo.py", "--config-file", config, "--input", str(big),
            str(tmp_path / "missing.png"), "--output", str(tmp_path / "out"),
            "--max-draw-megapixels", "1", "--opts", *opts]  # fmt: skip
    # Run as a script, then report its peak resident memory: VmHWM, the high-water mark of this
    # program's own memory (ru_maxrss would also count this test process's, inherited through
    # vfork and exec).
    code = (
        "import runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        "try:\n    runpy.run_path('demo/demo.py', run_name='__main__')\n"
        "except SystemExit as e:\n    status = e.code\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(f'peak GiB {int(hwm.split()[1]) / 2**20:.2f}')\nsys.exit(status)\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="2")
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 1, run.stderr[-2000:]  # missing.png failed, big.jpg did not
    assert "missing.png" in run.stderr
    with Image.open(tmp_path / "out" / "big.jpg") as im:
        assert im.size == (8000, 6000)
    peak = float(run.stdout.split("peak GiB ")[1].split()[0])
    assert peak < 2.0, run.stdout  # measured 1.5 GiB, of which 0.8 GiB is torch and detectron2


# --- the commands as typed ------------------------------------------------------------------

IMPORTS_AFTER = """
import runpy, sys
sys.argv = ["demo/demo.py", *{argv!r}]
try:
    runpy.run_path("demo/demo.py", run_name="__main__")
except SystemExit as e:
    status = e.code
print("heavy:", sorted(m for m in ("torch", "cv2", "detectron2") if m in sys.modules))
sys.exit(status)
"""


@pytest.mark.parametrize(
    "argv, status", [(["--help"], 0), ([], 2), (["--input", "a.jpg", "--task", "x"], 2)]
)
def test_help_and_argument_errors_answer_before_heavy_imports(argv, status):
    run = subprocess.run(
        [sys.executable, "-c", IMPORTS_AFTER.format(argv=argv)],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        capture_output=True,
        text=True,
    )
    assert run.returncode == status, run.stderr
    assert "heavy: []" in run.stdout
    if status == 2:
        assert run.stderr.strip().splitlines()[-1].startswith("demo.py: error:")


def test_default_config_and_weights_offline_is_one_line(tmp_path, capsys, monkeypatch):
    # As typed by a new user: no --config-file, no --output, no network.
    import urllib.error

    from detectron2.utils.file_io import PathManager

    def offline(path, **kwargs):
        if "://" in path:
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        return path

    monkeypatch.setattr(PathManager, "get_local_path", offline)
    monkeypatch.chdir(tmp_path)
    Image.fromarray(_rgb(20, 30)).save(tmp_path / "img.jpg")
    status = demo.main(["--input", "img.jpg"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("demo:")]
    assert status == 2
    assert len(err) == 1
    assert demo.DEFAULT_WEIGHTS in err[0] and "cannot download" in err[0]
    assert "tools/quickstart.sh" in err[0] and "--opts MODEL.WEIGHTS" in err[0]
    assert "ImageNet" not in err[0] and "R-50.pkl" not in err[0]
    assert os.listdir(tmp_path) == ["img.jpg"]


def _offline(tmp_path):
    """Environment in which every download fails at once (a proxy on a closed port) and
    nothing is cached yet."""
    proxy = "http://127.0.0.1:9"
    return {
        "FVCORE_CACHE": str(tmp_path / "download_cache"),
        **{k: proxy for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")},
        "NO_PROXY": "",
        "no_proxy": "",
    }


def test_offline_with_a_config_points_to_its_trained_model_not_its_backbone(tmp_path):
    # The config's MODEL.WEIGHTS is the ImageNet R-50 that training starts from; passing that
    # file would only be refused (the head would be random).
    work = tmp_path / "work"
    work.mkdir()
    Image.fromarray(_rgb(20, 30)).save(work / "img.jpg")
    run = run_script("demo/demo.py", "--config-file", demo.DEFAULT_CONFIG, "--input", "img.jpg",
                     cwd=str(work), env=_offline(tmp_path))  # fmt: skip
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("demo: error: detectron2://ImageNetPretrained/torchvision/R-50.pkl")
    assert f"fetch its trained model {demo.DEFAULT_WEIGHTS} (MODEL_ZOO.md)" in line
    assert "--opts MODEL.WEIGHTS /path/to/model_final_d8dbeb.pkl" in line
    assert "/path/to/R-50.pkl" not in line and "tools/quickstart.sh" in line
    assert os.listdir(work) == ["img.jpg"]


def test_model_zoo_weights_are_those_listed_for_the_config():
    assert demo.model_zoo_weights(demo.DEFAULT_CONFIG) == demo.DEFAULT_WEIGHTS
    swin = os.path.join(REPO_ROOT, "configs", "ade20k", "swin", "maskformer_swin_tiny.yaml")
    assert demo.model_zoo_weights(swin) == (
        "https://dl.fbaipublicfiles.com/maskformer/semantic-ade20k/maskformer_swin_tiny_bs16_160k/"
        "model_final_8657a5.pkl"
    )
    assert demo.model_zoo_weights(SEMANTIC_CONFIG) is None  # the quickstart: no official model


def test_without_output_the_overlay_goes_to_the_default_folder(models, tmp_path, capsys,
                                                                monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    Image.fromarray(_rgb(20, 30)).save(tmp_path / "img.jpg")
    config, opts = models["semantic"]
    status, stdout, _ = _run(capsys, config, opts, "--input", "img.jpg")
    assert status == 0
    assert os.path.join("demo_output", "img.jpg") in stdout
    with Image.open(tmp_path / "demo_output" / "img.jpg") as im:
        assert im.size == (30, 20)


def test_a_failed_input_is_not_announced_as_an_overlay(models, tmp_path, capsys):
    config, opts = models["semantic"]
    out = str(tmp_path / "out") + os.sep
    status, stdout, stderr = _run(capsys, config, opts, "--input", str(tmp_path / "none.jpg"),
                                  "--output", out)  # fmt: skip
    assert status == 1 and "none.jpg" in stderr
    assert "overlay" not in stdout and not (tmp_path / "out").exists()
    Image.fromarray(_rgb(20, 30)).save(tmp_path / "a.png")
    status, stdout, _ = _run(capsys, config, opts, "--input", str(tmp_path / "a.png"),
                             str(tmp_path / "none.jpg"), "--output", out)  # fmt: skip
    assert status == 1 and f"demo: 1 overlay in {out}" in stdout
    assert os.listdir(tmp_path / "out") == ["a.png"]


def test_config_and_checkpoint_errors_are_one_line(models, tmp_path, capsys):
    config, opts = models["semantic"]
    image = tmp_path / "a.png"
    Image.fromarray(_rgb(20, 30)).save(image)
    args = ["--input", str(image), "--output", str(tmp_path / "o.png")]

    def one_line(*extra):
        status, _, stderr = _run(capsys, config, [*opts, *extra], *args)
        lines = [ln for ln in stderr.splitlines() if ln.startswith("demo:")]
        assert status == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
        assert not (tmp_path / "o.png").exists()
        return lines[0]

    line = one_line("MODEL.MASK_FORMER.NUM_QUERIES", "8")
    assert (
        "MODEL.MASK_FORMER.NUM_QUERIES" in line and "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES" in line
    )
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(opts[-1], "rb").read()[:1000])
    line = one_line("MODEL.WEIGHTS", str(truncated))
    assert str(truncated) in line
    malicious = tmp_path / "evil.pkl"
    malicious.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    line = one_line("MODEL.WEIGHTS", str(malicious))
    assert str(malicious) in line and "refused" in line
    assert not (tmp_path / "pwned").exists()
