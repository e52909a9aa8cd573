import pytest
import torch

from fmq.models import ModelConfig, UNet, count_parameters, sinusoidal_embedding

from .conftest import tiny_config


def test_config_json_round_trip():
    cfg = ModelConfig(image_size=32, in_channels=3, channel_mults=(1, 2, 2, 2), num_classes=10, dropout=0.1)
    assert ModelConfig.from_json(cfg.to_json()) == cfg


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="norm_groups"):
        ModelConfig(base_channels=12, norm_groups=8)
    with pytest.raises(ValueError, match="in_channels"):
        ModelConfig(in_channels=2)
    with pytest.raises(ValueError, match="unknown model config fields"):
        ModelConfig.from_dict({"image_size": 28, "bogus": 1})


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_default_sizes_fit_cpu_training(size, channels):
    n = count_parameters(UNet(ModelConfig(image_size=size, in_channels=channels, num_classes=10)))
    assert 1_000_000 <= n <= 3_000_000


@pytest.mark.parametrize("attention", [True, False])
def test_forward_shapes_and_labels(attention):
    torch.manual_seed(0)
    m = UNet(tiny_config(num_classes=3, attention=attention)).eval()
    x = torch.randn(5, 1, 8, 8)
    t = torch.rand(5)
    out_y = m(x, t, torch.tensor([0, 1, 2, 3, 0]))  # 3 is the null label
    assert out_y.shape == x.shape
    out_null = m(x, t, None)
    # None means the null label for every sample
    torch.testing.assert_close(out_null[3], out_y[3])
    assert not torch.allclose(out_null[0], out_y[0])
    # scalar t broadcasts
    torch.testing.assert_close(m(x, torch.tensor(0.3), None), m(x, torch.full((5,), 0.3), None))


def test_time_embedding_distinguishes_times():
    e = sinusoidal_embedding(torch.tensor([0.0, 0.001, 0.5, 1.0]), 32)
    assert e.shape == (4, 32)
    assert (torch.cdist(e, e) + torch.eye(4)).min() > 0.01
