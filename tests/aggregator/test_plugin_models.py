"""plugin: models from entry points, and every way a plugin can fail: not installed, another distribution or
version than the project pins, a module that does not import, a target that is not callable, a factory that
raises or returns something other than an `nn.Module`. Each is one `ModelError` line naming the plugin.

The plugins are a distribution written onto `sys.path` here (a `.dist-info` folder and a module), which is all
`importlib.metadata` needs: no pip, nothing installed for good."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from aggregator.models import (
    ENTRY_POINT_GROUP,
    ModelContext,
    ModelError,
    ModelSource,
    PluginVersionMismatch,
    build,
    find_plugin,
    installed_plugins,
)

CONTEXT = ModelContext("classification", 3, (4,))
MODULE = """
from torch import nn

CONSTANT = 3


def linear(context):
    return nn.Linear(context.feature_shape[0], context.num_outputs)


def raising(context):
    raise RuntimeError("no GPU here")


def not_a_module(context):
    return {"weight": [1, 2, 3]}
"""
ENTRY_POINTS = {
    "tm_linear": "tm_bad_plugins:linear",
    "tm_raising": "tm_bad_plugins:raising",
    "tm_not_a_module": "tm_bad_plugins:not_a_module",
    "tm_not_callable": "tm_bad_plugins:CONSTANT",
    "tm_missing_module": "tm_no_such_module:factory",
}


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "tm_bad_plugins-0.3.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tm-bad-plugins\nVersion: 0.3.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in ENTRY_POINTS.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")
    (site / "tm_bad_plugins.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("tm_bad_plugins", None)  # the next test's folder is another one


def plugin(name, distribution=None, version=None):
    return ModelSource("plugin", name, distribution=distribution, version=version)


def test_a_plugin_builds_from_its_entry_point_with_its_pins(plugins):
    found = installed_plugins()["tm_linear"]
    assert (found.distribution, found.version, found.target) == (
        "tm-bad-plugins",
        "0.3.0",
        "tm_bad_plugins:linear",
    )
    built = build(plugin("tm_linear", "tm-bad-plugins", "0.3.0"), CONTEXT, seed=0)
    assert built.uri == "plugin:tm_linear"
    assert built.details == {"distribution": "tm-bad-plugins", "version": "0.3.0"}
    again = build(plugin("tm_linear", "tm_bad_plugins", "0.3.0"), CONTEXT, seed=0)  # names compare normalized
    assert all(
        torch.equal(a, b) for a, b in zip(built.module.parameters(), again.module.parameters(), strict=True)
    )


def test_pins_that_do_not_match_refuse_to_build(plugins):
    with pytest.raises(
        PluginVersionMismatch, match=r"tm-bad-plugins 0\.3\.0 is installed, the project pins 0\.2\.9"
    ):
        build(plugin("tm_linear", "tm-bad-plugins", "0.2.9"), CONTEXT)
    with pytest.raises(
        PluginVersionMismatch,
        match="comes from tm-bad-plugins here, but the project pins someone-elses-models",
    ):
        find_plugin("tm_linear", "someone-elses-models", "0.3.0")
    with pytest.raises(
        ModelError, match=r"'tm_absent' is not installed \(tm-x==1\.0\).*model install --project P"
    ):
        find_plugin("tm_absent", "tm-x", "1.0")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("tm_raising", "plugin:tm_raising: the model factory failed: RuntimeError: no GPU here"),
        ("tm_not_a_module", "plugin:tm_not_a_module: the factory returned dict, not a torch.nn.Module"),
        ("tm_not_callable", "plugin:tm_not_callable: tm_bad_plugins:CONSTANT is not callable"),
        (
            "tm_missing_module",
            "plugin:tm_missing_module (tm-bad-plugins 0.3.0) failed to load: No module named",
        ),
    ],
)
def test_a_plugin_that_fails_is_one_line_naming_it(plugins, name, message):
    with pytest.raises(ModelError) as raised:
        build(plugin(name), CONTEXT)
    assert message in str(raised.value) and "\n" not in str(raised.value)
