"""Models from installed distributions (`plugin:NAME`), found the way Ape finds its plugins: entry points.

A distribution exposes a model factory in the `trustmarket.models` entry-point group::

    [project.entry-points."trustmarket.models"]
    tabular_mlp = "my_models:tabular_mlp"

The factory is called with one `ModelContext` (task, num_outputs, feature_shape, options) and returns an
`nn.Module`. The project manifest pins the distribution's name and version: every trainer, the aggregator and every
verifier must run the very same code, so a different installed version refuses to build instead of quietly
computing something else.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aggregator.models.base import ModelError

__all__ = [
    "ENTRY_POINT_GROUP",
    "InstalledPlugin",
    "PluginVersionMismatch",
    "find_plugin",
    "installed_plugins",
]

ENTRY_POINT_GROUP = "trustmarket.models"


class PluginVersionMismatch(ModelError):
    """The installed distribution of a plugin model is not the version the project pins."""


@dataclass(frozen=True)
class InstalledPlugin:
    name: str  # the entry point's name: `plugin:NAME`
    distribution: str
    version: str
    target: str  # "module:attribute"
    entry_point: importlib.metadata.EntryPoint

    def load(self) -> Callable[..., Any]:
        try:
            factory = self.entry_point.load()
        except Exception as exc:  # a plugin's import error is the plugin's, reported in one line
            raise ModelError(
                f"plugin:{self.name} ({self.distribution} {self.version}) failed to load: {exc}"
            ) from None
        if not callable(factory):
            raise ModelError(f"plugin:{self.name}: {self.target} is not callable")
        return factory


def installed_plugins() -> dict[str, InstalledPlugin]:
    """Every plugin model importable here, by entry-point name (the first on sys.path wins, as imports do)."""
    found: dict[str, InstalledPlugin] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue
        dist = ep.dist
        found[ep.name] = InstalledPlugin(
            ep.name,
            dist.name if dist is not None else "unknown",
            dist.version if dist is not None else "unknown",
            ep.value,
            ep,
        )
    return found


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def find_plugin(name: str, distribution: str | None = None, version: str | None = None) -> InstalledPlugin:
    """The installed plugin `name`; when a distribution and version are pinned, it must be exactly that one."""
    plugin = installed_plugins().get(name)
    pin = f" ({distribution}=={version})" if distribution and version else ""
    if plugin is None:
        raise ModelError(
            f"plugin model {name!r} is not installed{pin}: no entry point {name!r} in group {ENTRY_POINT_GROUP!r}"
            + ("; `trustmarket model install --project P` installs the project's wheel" if pin else "")
        )
    if distribution is not None and _normalized(plugin.distribution) != _normalized(distribution):
        raise PluginVersionMismatch(
            f"plugin:{name} comes from {plugin.distribution} here, but the project pins {distribution}"
        )
    if version is not None and plugin.version != version:
        raise PluginVersionMismatch(
            f"plugin:{name}: {plugin.distribution} {plugin.version} is installed, the project pins {version}; "
            f"install {distribution or plugin.distribution}=={version} (trustmarket model install --project P)"
        )
    return plugin
