"""Config dataclasses built from mappings: unknown keys are errors, lists become tuples."""

from dataclasses import dataclass

import pytest

from frs_ros.config_util import dataclass_from_mapping
from frs_ros.reasoning.config import ReasonerConfig, ReasonerConfigError


@dataclass(frozen=True)
class _Cfg:
    rate_hz: float = 10.0
    sizes: tuple = (1, 2)


def test_known_keys_and_list_to_tuple():
    cfg = dataclass_from_mapping(_Cfg, {"rate_hz": 5.0, "sizes": [3, 4]}, ValueError, "demo")
    assert cfg == _Cfg(rate_hz=5.0, sizes=(3, 4))
    assert dataclass_from_mapping(_Cfg, None, ValueError, "demo") == _Cfg()


def test_unknown_key_names_it_and_the_valid_ones():
    with pytest.raises(KeyError, match=r"unknown demo config key\(s\) \['rate_hzz'\]; valid keys are \['rate_hz', 'sizes'\]"):
        dataclass_from_mapping(_Cfg, {"rate_hzz": 1.0}, KeyError, "demo")


def test_reasoner_config_rejects_typos_and_casts_budgets():
    with pytest.raises(ReasonerConfigError, match="max_new_tokns"):
        ReasonerConfig.from_dict({"max_new_tokns": 3})
    cfg = ReasonerConfig.from_dict({"reasoning_budgets": [16.0, 32.0, 48.0]})
    assert cfg.reasoning_budgets == (16, 32, 48) and all(isinstance(b, int) for b in cfg.reasoning_budgets)
