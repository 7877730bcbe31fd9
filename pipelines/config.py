"""Config files and flags: YAML sections and command-line options mapped one to one onto the stages'
frozen dataclasses, each field declared once with :func:`dedup.config.option` (default, meaning, unit,
flag). Precedence: command-line flags > the YAML file (``--config``) > the dataclass defaults; an unknown
key is an error naming the key, the section and the file.

Example file::

    dedup:
      threshold: 0.8
      num_perm: 128
      fp: 1.0e-5
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

from dedup.io import EMPTY_PATH

T = TypeVar("T")


#: A config file's top-level keys: the stages' sections, and the workflow's own keys (configs/schema.yaml), since a
#: workflow config may be given whole. Any other key was never read (threshold: outside its section, dedupe:).
TOP_LEVEL = ("dedup", "train", "audit", "profile", "out", "corpus", "dask")


class ConfigError(ValueError):
    """A bad config file or value; the message names the file and key."""


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; errors name the file."""
    import yaml  # here: ~20 ms of start-up that runs without --config skip

    class Loader(yaml.SafeLoader):  # a key written twice is refused, not read as its last copy
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:  # as written: merge keys (<<: *anchor) may be overridden
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    where = f"line {key_node.start_mark.line + 1}: key {key!r} appears twice"
                    raise yaml.constructor.ConstructorError(None, None, where, key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    p = Path(path)
    try:
        with open(p, encoding="utf-8") as f:
            data = yaml.load(f, Loader)  # noqa: S506 (a SafeLoader)
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def exposed(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that have a command-line flag (all but ``option(..., cli=False)``)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def flag_names(f: dataclasses.Field) -> list[str]:
    """The field's flags: its short alias, if any, then ``--name-with-dashes`` (or its own)."""
    long = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
    return [n for n in (f.metadata.get("short"), long) if n]


def default_text(f: dataclasses.Field) -> str:
    """The field's default as help and README show it: the value (YAML spelling) and unit, or what
    ``None`` means."""
    value = f.default
    if value is None:
        return f.metadata.get("none") or "none"
    text = str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)
    unit = f.metadata.get("unit")
    return f"{text} {unit}" if unit else text


def int_or_word(text: str) -> int | str:
    """A flag value that is an integer or a word (``--batch-size 16``, ``--batch-size auto``).

    >>> int_or_word("16"), int_or_word("auto")
    (16, 'auto')
    """
    try:
        return int(text)
    except ValueError:
        return text


def _value_type(hint: Any) -> Any:
    """``int`` for ``int`` and ``int | None``; :func:`int_or_word` for ``int | str``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if set(args) == {int, str}:
        return int_or_word
    return args[0] if len(args) == 1 else hint


def given_path(text: str) -> str:
    """A path or glob as typed; "" is refused as the library refuses it (:func:`dedup.io.given_path`)."""
    if not text:
        raise argparse.ArgumentTypeError(EMPTY_PATH)
    return text


def path_arg(text: str) -> Path:
    return Path(given_path(text))


def add_options(parser: argparse.ArgumentParser, cls: type, section: str) -> None:
    """Add ``--config`` and one flag per exposed field of ``cls`` (YAML section ``section``). Flags default
    to None, so :func:`from_args` tells a given flag from an absent one; booleans get ``--x/--no-x``."""
    parser.add_argument("--config", type=path_arg, metavar="YAML",
                        help=f"YAML file whose '{section}:' section sets the {section} options")
    group = parser.add_argument_group(f"{section} options (flags > --config '{section}:' section > defaults)")
    hints = typing.get_type_hints(cls)
    for f in exposed(cls):
        help_text = f"{f.metadata.get('help', '')} (default: {default_text(f)})".replace("%", "%%")
        typ = _value_type(hints[f.name])
        kind = ({"action": argparse.BooleanOptionalAction} if typ is bool
                else {"type": typ, "choices": f.metadata.get("choices") or None})
        group.add_argument(*flag_names(f), dest=f.name, default=None, help=help_text, **kind)
    parser.set_defaults(_config_spec=(cls, section))


def from_args(args: argparse.Namespace) -> Any:
    """The config of the command parsed into ``args`` (by :func:`add_options`), by the module's
    precedence; :class:`ConfigError` for an unknown key or an invalid value."""
    cls, name = args._config_spec
    source = str(args.config) if args.config else "<command line>"
    data = load_yaml(args.config) if args.config else {}
    if unknown := [key for key in data if key not in TOP_LEVEL]:
        hint = f" (put it under '{name}:')" if unknown[0] in {f.name for f in dataclasses.fields(cls)} else ""
        raise ConfigError(f"{source}: unknown section {unknown[0]!r}{hint}; the sections are "
                          f"{', '.join(TOP_LEVEL)}")
    values = data.get(name)
    if values is None:
        values = {}
    elif not isinstance(values, dict):
        raise ConfigError(f"{source}: section {name!r} must be a mapping")
    in_file = dict(values)
    for f in exposed(cls):
        value = getattr(args, f.name)
        if value is not None:
            values[f.name] = value
            values.update(f.metadata.get("flag_sets") or {})
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:  # the file's own problem (an unknown key too) is the file's; else the flags'
        check_section(cls, name, in_file, source)
        raise ConfigError(f"<command line>: section {name}: {e}") from e


def check_section(cls: type[T], name: str, values: dict, source: str) -> T:
    """Section ``name`` as a ``cls``; ConfigError naming ``source`` for an unknown key or a value ``cls``
    refuses (the workflow checks each section so before any job starts)."""
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := [key for key in values if key not in names]:
        raise ConfigError(f"{source}: unknown key {name}.{unknown[0]}; valid keys: {', '.join(sorted(names))}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: section {name}: {e}") from e


def reference(cls: type) -> str:
    """README's table of a config section: key, flag, default and meaning of every field."""
    hints = typing.get_type_hints(cls)
    lines = ["| key | flag | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            flags = "(file only)"
        elif _value_type(hints[f.name]) is bool:
            long = flag_names(f)[-1]
            flags = f"`{long}`, `--no-{long[2:]}`"
        else:
            flags = ", ".join(f"`{n}`" for n in flag_names(f))
        meaning = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            meaning += "; one of " + ", ".join(f"`{c}`" for c in f.metadata["choices"])
        lines.append(f"| `{f.name}` | {flags} | {default_text(f)} | {meaning} |")
    return "\n".join(lines) + "\n"
