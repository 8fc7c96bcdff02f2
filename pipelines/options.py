"""Command-line options that a YAML config file can also hold, declared once per command.

Each command declares its options as ``Option`` rows. The same table builds the argparse parser
and validates the command's section of ``--config FILE``; an unknown key in the file is an error
naming the file, the section and the key (a silently ignored typo is worse than a crash).
Precedence: command line > config file > the option's default.
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import yaml


class OptionError(ValueError):
    """A bad option or config file; the message names it."""


@dataclass(frozen=True)
class Option:
    name: str                       # python name; the flag is --name-with-dashes
    help: str
    type: Callable[[str], Any] | None = str
    default: Any = None
    flag: bool = False              # a store_true switch
    choices: Sequence[str] | None = None


def configure_logging() -> None:
    """The commands' progress messages: INFO and above on stderr, one line each."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def require_data_root(parser: argparse.ArgumentParser, settings: dict[str, Any]) -> None:
    """Exit with a usage error when neither --data-root nor the config gives a data root."""
    if not settings["data_root"]:
        parser.error("--data-root is required (or data_root in --config)")


def build_parser(prog: str, description: str, options: Sequence[Option],
                 positional: Sequence[Option] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for option in positional:
        parser.add_argument(option.name, help=option.help, nargs="?", default=None)
    parser.add_argument("--config", type=Path, help="YAML file holding any of these options "
                        f"(under a '{prog.rsplit('.', 1)[-1]}:' section or at top level)")
    for option in options:
        flag = "--" + option.name.replace("_", "-")
        shown_default = f" (default: {option.default})" if option.default not in (None, False) else ""
        if option.flag:
            parser.add_argument(flag, action="store_true", default=None, help=option.help)
        else:
            parser.add_argument(flag, type=option.type, default=None, choices=option.choices,
                                help=option.help + shown_default)
    return parser


def resolve(args: argparse.Namespace, section: str, options: Sequence[Option],
            positional: Sequence[Option] = ()) -> dict[str, Any]:
    """Merge command line, config file and defaults into one validated dict."""
    from_file = read_config_section(args.config, section, options + tuple(positional)) \
        if args.config else {}
    merged = {}
    for option in (*positional, *options):
        value = getattr(args, option.name, None)
        if value is None:
            value = from_file.get(option.name, option.default)
            if value is not None and option.type not in (None, str) and not option.flag:
                value = _coerce(option, value)
        if option.choices and value is not None and value not in option.choices:
            raise OptionError(f"option {option.name}: {value!r} is not one of {list(option.choices)}")
        merged[option.name] = value
    for key in CONFIG_ONLY:  # mappings that only a config file can hold
        if key in from_file:
            merged[key] = from_file[key]
    return merged


def _coerce(option: Option, value: Any) -> Any:
    """A config file's value as the option's type, or an error naming the option."""
    wrong = OptionError(f"option --{option.name.replace('_', '-')} (config key {option.name!r}): "
                        f"{value!r} is not a valid {option.type.__name__}")
    # YAML gives bools, lists and mappings as such; an int option takes no fractional float.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or (
            option.type is int and isinstance(value, float) and not value.is_integer()):
        raise wrong
    try:
        return option.type(value)
    except ValueError:
        raise wrong from None


def read_config_section(path: Path, section: str, options: Sequence[Option]) -> dict[str, Any]:
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
    except OSError as error:
        raise OptionError(f"config file {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise OptionError(f"config file {path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise OptionError(f"config file {path}: expected a mapping at top level")
    sections = {"extract", "fit", "predict", "report", "evaluate", "leakcheck"}
    body = data.get(section, {}) if sections & set(data) else data
    if not isinstance(body, dict):
        raise OptionError(f"config file {path}: section '{section}' must be a mapping")
    known = {o.name for o in options} | set(CONFIG_ONLY)
    unknown = sorted(set(body) - known)
    if unknown:
        raise OptionError(f"config file {path}: unknown key(s) {unknown} in section "
                          f"'{section}'; known: {sorted(known)}")
    # Relative paths in a config file are relative to the file, not to the working directory.
    # An option with a fixed set of choices (fit's --model lightgbm|stack) is never a path.
    paths = {o.name for o in options if o.name in PATH_OPTIONS and not o.choices}
    base = path.parent
    return {k: (str(base / v) if k in paths and isinstance(v, str) and not Path(v).is_absolute()
                else v) for k, v in body.items()}


CONFIG_ONLY = ("families", "lightgbm", "stack", "augment")
PATH_OPTIONS = {"data_root", "labels", "out", "features", "model", "metadata", "storage_file"}


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(handle)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
