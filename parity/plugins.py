"""Plugins: exporters, backends and transforms. Each is a class named by a YAML option's `_target_` that owns
its config dataclass (`Config`), declares what it produces or accepts, and is built from its typed config.

Built-in plugins live in parity.exporters, parity.backends and parity.transforms; every module there is found
and its schema registered in Hydra's ConfigStore (as `base_<...>`) before composition. A plugin outside the
repository needs no registration: its YAML names its class, and the job plan types the composed node against
that class's `Config` (a typo or a wrong type is a one-line configuration error).
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import Any, ClassVar

from omegaconf import MISSING

from parity.errors import ConfigError, one_line

# group -> (package of the built-in plugins, "module:Class" of the group's base class)
GROUPS = {
    "exporter": ("parity.exporters", "parity.exporters.base:Exporter"),
    "backend": ("parity.backends", "parity.backends.base:Backend"),
    "transform": ("parity.transforms", "parity.transforms.base:Transform"),
}
_REGISTERED: dict[str, list[type]] = {group: [] for group in GROUPS}


@dataclass
class PluginConfig:
    """What every plugin config holds: the class to build (`_target_`) and the option's name."""

    _target_: str = MISSING
    name: str = MISSING

    def validate(self) -> None:
        """Checks a schema cannot express (allowed values, ranges); raise ConfigError with one line."""

    def with_base_dir(self, base: Any) -> PluginConfig:
        """This config with the files it names resolved against `base` (the directory parity was started in):
        the plugin's own hook for configs that name files (the default: none). A changed copy, never self."""
        return self

    def with_numerics(self, numerics: Any) -> PluginConfig:
        """This config with the numerics option's settings for this plugin applied: the plugin's own hook (the
        default: none apply). Return a changed copy (dataclasses.replace), never self changed."""
        return self


class Plugin:
    """Base of every plugin class: built from its typed config, never from loose keyword arguments.

    `schema`: the ConfigStore name the built-in YAML options of this class extend (None: none of its own).
    """

    group: ClassVar[str]
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    schema: ClassVar[str | None] = None

    def __init__(self, config: Any) -> None:
        self.config = config
        self.name: str = config.name

    def availability(self) -> str | None:
        """None when this plugin can run here, else the reason it cannot (its check becomes a SKIP)."""
        return None


def register(cls: type) -> type:
    """Class decorator: a built-in plugin whose `schema` YAML options extend (and `registered()` lists)."""
    _REGISTERED[cls.group].append(cls)
    return cls


@cache
def _discover() -> None:
    """Import every module of the built-in plugin packages (each is cheap: frameworks load inside methods)."""
    for package_name, _ in GROUPS.values():
        package = import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            import_module(f"{package_name}.{info.name}")


def registered(group: str) -> list[type]:
    """The built-in plugin classes of a group, in registration order."""
    _discover()
    return list(_REGISTERED[group])


def register_schemas(store: Any) -> None:
    """Store every built-in plugin's config dataclass under its schema name, plus `base_<group>` (the plain base)."""
    _discover()
    for group in GROUPS:
        store.store(group=group, name=f"base_{group}", node=_base_class(group).Config)
        for cls in _REGISTERED[group]:
            if cls.schema:
                store.store(group=group, name=cls.schema, node=cls.Config)


def _base_class(group: str) -> type:
    module, name = GROUPS[group][1].split(":")
    return getattr(import_module(module), name)


def plugin_class(group: str, target: str) -> type:
    """The class a `_target_` names; ConfigError unless it imports and is a parity plugin of that group."""
    base = _base_class(group)
    module_name, _, attr = str(target).rpartition(".")
    try:
        cls = getattr(import_module(module_name), attr) if module_name else None
    except Exception as exc:  # ImportError, or the module itself failing at import
        raise ConfigError(f"{group}._target_ '{target}' cannot be imported: {one_line(exc)}") from exc
    if cls is None:
        raise ConfigError(f"{group}._target_ '{target}' names no class")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{group}._target_ '{target}' is not a parity {group} (a subclass of "
                          f"{base.__module__}.{base.__qualname__})")
    if not issubclass(cls.Config, base.Config):
        raise ConfigError(f"{group}._target_ '{target}': its Config {cls.Config.__qualname__} must extend "
                          f"{base.Config.__module__}.{base.Config.__qualname__}")
    return cls


def typed_config(group: str, node: Any, numerics: Any = None, base_dir: Any = None) -> Any:
    """A composed group node as an instance of its class's `Config`: every key known and of its type, its files
    resolved against `base_dir` (`with_base_dir`), the numerics option applied through the config's own
    `with_numerics` hook, validated."""
    from parity.config import typed_node

    target = node.get("_target_")
    if not target or target == MISSING:
        raise ConfigError(f"{group} '{node.get('name')}' names no class (_target_)")
    config = typed_node(plugin_class(group, target).Config, node, group)
    if base_dir is not None:
        config = config.with_base_dir(base_dir)
    if numerics is not None:
        config = config.with_numerics(numerics)
    config.validate()
    return config


def build(group: str, config: Any) -> Any:
    """The plugin instance for a typed config."""
    return plugin_class(group, config._target_)(config)
