"""Config files: YAML sections mapped one to one onto the stages' frozen dataclasses.

Precedence: command-line flags > the YAML file (``--config``) > the dataclass defaults.
An unknown key is an error that names the key, the section and the file.

Example file::

    dedup:
      threshold: 0.8
      num_perm: 128
      fp: 1.0e-5
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config file or value; the message names the file and key."""


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; errors name the file."""
    import yaml  # imported here: ~20 ms of start-up that runs without --config skip

    p = Path(path)
    try:
        with open(p, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def build(cls: type[T], section: str, file_values: dict | None, overrides: dict[str, Any], source: str = "<config>") -> T:
    """Instantiate ``cls`` from YAML values overlaid with non-None ``overrides``.

    Raises:
        ConfigError: unknown key (named with the section and file) or an invalid value.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, val in (file_values or {}).items():
        if key not in names:
            raise ConfigError(f"{source}: unknown key {section}.{key}; valid keys: {', '.join(sorted(names))}")
        values[key] = val
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: section {section}: {e}") from e


def section(data: dict, name: str, source: str) -> dict:
    """The named section of a loaded file (empty if absent); must be a mapping."""
    val = data.get(name) or {}
    if not isinstance(val, dict):
        raise ConfigError(f"{source}: section {name!r} must be a mapping")
    return val
