import pytest
import torch

from fmq.data import load_npz
from fmq.flow import TrainConfig, _Trainer, cfm_loss, state_path, train
from fmq.models import UNet

from .conftest import tiny_config


def _cfg(tmp_path, data, steps, **kw):
    base = dict(dataset="toy", data=str(data), out=str(tmp_path / "m.safetensors"), steps=steps, batch_size=32,
                lr=2e-3, warmup=10, ckpt_every=5, log_every=5, model=tiny_config(num_classes=2))
    base.update(kw)
    return TrainConfig(**base)


def _eval_loss(model: UNet, data) -> float:
    g = torch.Generator().manual_seed(123)
    model.eval()
    with torch.no_grad():
        return sum(cfm_loss(model, data.images, data.labels, g).item() for _ in range(4)) / 4


def test_config_json_round_trip(tmp_path, toy_npz):
    cfg = _cfg(tmp_path, toy_npz, 7, hflip=True, bf16=True)
    assert TrainConfig.from_json(cfg.to_json()) == cfg


def test_training_lowers_the_loss_clearly(tmp_path, toy_npz):
    data = load_npz(toy_npz)
    cfg = _cfg(tmp_path, toy_npz, 300, ckpt_every=300)
    torch.manual_seed(0)
    before = _eval_loss(UNet(cfg.model), data)
    ema = train(cfg, data, progress=False)
    after = _eval_loss(ema, data)
    assert after < 0.6 * before, (before, after)


def test_resume_is_exact(tmp_path, toy_npz):
    data = load_npz(toy_npz)
    straight = train(_cfg(tmp_path / "a", toy_npz, 10), data, progress=False)
    cfg_b = _cfg(tmp_path / "b", toy_npz, 10)
    train(_cfg(tmp_path / "b", toy_npz, 5), data, progress=False)  # interrupted after 5 steps
    assert state_path(cfg_b.out).exists()
    resumed = train(cfg_b, data, progress=False)
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_label_dropout_uses_null_label(tmp_path, toy_npz):
    data = load_npz(toy_npz)
    t = _Trainer(_cfg(tmp_path, toy_npz, 1, label_dropout=0.5, batch_size=400), data)
    _, y = t.batch()
    null = (y == 2).float().mean().item()
    assert 0.35 < null < 0.65
    assert set(y.tolist()) <= {0, 1, 2}


def test_init_from_checkpoint_continues_the_step_count(tmp_path, toy_npz):
    data = load_npz(toy_npz)
    first = train(_cfg(tmp_path / "a", toy_npz, 6), data, progress=False)
    ckpt = tmp_path / "a" / "m.safetensors"
    t = _Trainer(_cfg(tmp_path / "b", toy_npz, 12, init_from=str(ckpt)), data)
    t.init_from_checkpoint(str(ckpt))
    assert t.step == 6
    for k, v in first.state_dict().items():
        assert torch.equal(t.model.state_dict()[k], v) and torch.equal(t.ema.state_dict()[k], v)
    t.train_step()  # fresh Adam moments: the lr warms up again from the warm start
    assert t.opt.param_groups[0]["lr"] == pytest.approx(t.cfg.lr / t.cfg.warmup)
    t.save_state()
    again = _Trainer(t.cfg, data)
    again.load_state(state_path(t.cfg.out))
    assert (again.step, again.warm_from) == (7, 6)
    cont = train(_cfg(tmp_path / "b", toy_npz, 12, init_from=str(ckpt)), data, progress=False)
    assert not torch.equal(cont.state_dict()["stem.weight"], first.state_dict()["stem.weight"])
    from fmq.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "b" / "m.safetensors").meta["steps"] == 12
    with pytest.raises(Exception, match="another model config"):
        _Trainer(_cfg(tmp_path / "c", toy_npz, 3, model=tiny_config(num_classes=3)), data).init_from_checkpoint(
            str(ckpt))
