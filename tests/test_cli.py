from PIL import Image

from fmq.checkpoint import load_checkpoint
from fmq.cli import main


def test_train_then_sample(tmp_path, toy_npz, capsys):
    ckpt = tmp_path / "toy.safetensors"
    args = ["train", "--dataset", "mnist", "--data", str(toy_npz), "--out", str(ckpt), "--steps", "4",
            "--batch-size", "8", "--base-channels", "8", "--channel-mults", "1,2", "--num-res-blocks", "1",
            "--ckpt-every", "2"]
    assert main(args) == 0
    ck = load_checkpoint(ckpt)
    assert ck.meta["steps"] == 4 and ck.meta["dataset"] == "mnist"
    assert ck.meta["command"].startswith("python -m fmq train") and len(ck.meta["data_sha256"]) == 64
    out = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(ckpt), "--n", "20", "--steps", "3", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.size[0] > img.size[1]  # 10 columns (one per class) by 2 rows
    assert "20 images" in capsys.readouterr().out


def test_clear_errors(tmp_path, capsys):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"garbage!" * 3)
    assert main(["sample", "--checkpoint", str(bad), "--out", str(tmp_path / "g.png")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["train", "--dataset", "mnist", "--data", str(tmp_path / "none.npz"), "--out",
                 str(tmp_path / "m.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err


def test_warmup_compiles_the_kernels_and_says_so(capsys):
    from fmq.cli import main

    assert main(["warmup"]) == 0
    assert "quantizer kernels ready" in capsys.readouterr().out


def test_quantize_then_sample_packed(tmp_path, tiny_model, capsys):
    """The packed runtime draws the same grid as the dequantized model saved as an FP32 checkpoint."""
    from fmq.checkpoint import save_checkpoint
    from fmq.quant.packing import load_packed

    ckpt = save_checkpoint(tiny_model, tmp_path / "fp32.safetensors", sidecar=False)
    packed = tmp_path / "q.safetensors"
    assert main(["quantize", "--checkpoint", str(ckpt), "--method", "ot", "--bits", "2", "--entropy",
                 "--kept-fp16", "--out", str(packed)]) == 0
    out = capsys.readouterr().out
    assert "index entropy" in out and "compression" in out
    model, _, _ = load_packed(packed)
    deq = save_checkpoint(model, tmp_path / "deq.safetensors", sidecar=False)
    args = ["--n", "6", "--steps", "2"]
    assert main(["sample", "--packed", str(packed), *args, "--out", str(tmp_path / "p.png")]) == 0
    assert "resident weights" in capsys.readouterr().out
    assert main(["sample", "--checkpoint", str(deq), *args, "--out", str(tmp_path / "d.png")]) == 0
    assert (tmp_path / "p.png").read_bytes() == (tmp_path / "d.png").read_bytes()
    assert main(["sample", "--packed", str(ckpt), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a packed fmq model" in capsys.readouterr().err
