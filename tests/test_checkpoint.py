import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from fmq.checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint
from fmq.models import UNet

from .conftest import tiny_config


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = UNet(tiny_config(num_classes=3))
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"dataset": "toy", "steps": 3})
    return model, path


def test_round_trip_is_bit_exact(saved):
    model, path = saved
    ck = load_checkpoint(path)
    assert ck.config == model.config and ck.meta == {"dataset": "toy", "steps": 3}
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck.model.state_dict()[k]), k
    x = torch.randn(2, 1, 8, 8)
    model.eval()
    torch.testing.assert_close(ck.model(x, 0.5), model(x, 0.5), rtol=0, atol=0)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["model_config"]["num_classes"] == 3 and sidecar["steps"] == 3
    assert read_header(path)[0] == model.config


def test_truncated_file(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    for cut in (len(data) // 2, 100, 5):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|corrupt|too short|not a safetensors"):
            load_checkpoint(bad)


def test_pickle_and_torch_save_are_refused_without_unpickling(saved, tmp_path):
    model, _ = saved
    p = tmp_path / "model.pkl"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(p)
    z = tmp_path / "model.pt"
    torch.save(model.state_dict(), z)
    with pytest.raises(CheckpointError, match="zip|never unpickles"):
        load_checkpoint(z)


def test_wrong_shapes_and_foreign_files(saved, tmp_path):
    model, _ = saved
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}  # safetensors wants the standard layout
    meta = {"fmq_format": "fmq-checkpoint/1", "model_config": model.config.to_json(), "meta": "{}"}
    name = "stem.weight"
    wrong = dict(sd, **{name: torch.zeros(8, 1, 5, 5)})
    p = tmp_path / "wrong.safetensors"
    save_file(wrong, str(p), metadata=meta)
    with pytest.raises(CheckpointError, match="stem.weight.*shape"):
        load_checkpoint(p)
    missing = {k: v for k, v in sd.items() if k != name}
    save_file(missing, str(p), metadata=meta)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(p)
    save_file(sd, str(p))  # a safetensors file without fmq metadata
    with pytest.raises(CheckpointError, match="not an fmq checkpoint"):
        load_checkpoint(p)
    nan = dict(sd, **{name: torch.full_like(sd[name], float("nan"))})
    save_file(nan, str(p), metadata=meta)
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")
