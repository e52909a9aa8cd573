"""The method registry: every method is registered once, with what it needs, and configs obey it."""

from __future__ import annotations

import pytest

from fmq import quant
from fmq.methods import METHODS, check_method_bits, method_spec, plain_methods
from fmq.qconfig import CalibConfig, QuantConfig


def test_every_plain_quantizer_is_registered_and_every_plain_spec_has_a_quantizer():
    assert set(plain_methods()) == set(quant.METHODS)
    for name, spec in METHODS.items():
        assert spec.name == name and spec.summary and 1 <= spec.min_bits <= spec.max_bits <= 8


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="unknown quantization method 'kmeans'.*ot"):
        method_spec("kmeans")


def test_plain_methods_take_integer_widths_only():
    assert check_method_bits("ot", 3) == 3 and check_method_bits("ot", 3.0) == 3
    for bad in (0, 9, 2.5, True, "2"):
        with pytest.raises(ValueError, match="bits"):
            check_method_bits("ot", bad)


def test_plain_methods_refuse_calibration_settings():
    with pytest.raises(ValueError, match="not a calibrated method"):
        QuantConfig("ot", 2, calibration=CalibConfig())


def test_calib_config_validates_and_round_trips():
    c = CalibConfig(steps=0, widths=(4, 1, 2, 2))
    assert c.widths == (1, 2, 4) and CalibConfig.from_dict(c.to_dict()) == c
    for bad in (dict(samples=0), dict(steps=-1), dict(lr=0), dict(widths=(0, 2)), dict(widths=(9,)), dict(batch=1.5)):
        with pytest.raises(ValueError, match="calibration"):
            CalibConfig(**bad)
    with pytest.raises(ValueError, match="unknown calibration config fields"):
        CalibConfig.from_dict({"colour": 1})
