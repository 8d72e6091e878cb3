"""Load a YAML config, apply ``key=value`` overrides in order, validate it before any work starts.

Errors are :class:`~sgdscope.errors.ConfigError` with one line that names the field, what was
received and what is allowed (and, for an unknown key, the nearest valid key).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from .._registry import closest
from ..errors import ConfigError
from .schema import ProbeConfig, RunConfig

BaseModelT = TypeVar("BaseModelT", bound=BaseModel)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _check_keys(data: Any, model: type[BaseModel], prefix: str) -> None:
    """Raise on the first unknown key, naming it and the closest valid key of that section."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            hint = closest(str(key), list(fields))
            near = f"{prefix}{hint}" if hint else None
            extra = f"; did you mean {near!r}?" if near else ""
            raise ConfigError(
                f"unknown config key {path!r}{extra} (valid keys here: {', '.join(fields)})"
            )
        ann = fields[key].annotation
        sub = _model_of(ann)
        if sub is None:
            continue
        if get_origin(ann) is list or (isinstance(value, list) and sub is ProbeConfig):
            for i, item in enumerate(value if isinstance(value, list) else []):
                _check_keys(item, sub, f"{path}.{i}.")
        else:
            _check_keys(value, sub, f"{path}.")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (YAML says keys are
    unique; PyYAML silently keeps the last, so a typo'd copy would quietly win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {first})",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line out of PyYAML's multi-line messages: the problem and where."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    hint = "; keep one of them" if problem.startswith("duplicate key") else ""
    if "\t" in problem or "'\\t'" in problem or "tab" in problem.lower():
        hint = "; indent with spaces, not tabs"
    return " ".join(f"{problem}{where}{hint}".split())


def read_yaml_file(path: str | Path, what: str = "config file") -> Any:
    """Parse a YAML file strictly: UTF-8 text, no duplicate keys; every failure is one line.

    Raises:
        ConfigError: missing file, a directory, unreadable, binary, not UTF-8, invalid YAML.
    """
    path = Path(path)
    name = f"{what} {str(path)!r}"
    if not path.exists():
        raise ConfigError(f"{name} not found")
    if path.is_dir():
        raise ConfigError(f"{name} is a directory: give a YAML file (or a recipe name)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{name} cannot be read: {e.strerror or e}") from None
    if b"\x00" in raw:
        raise ConfigError(
            f"{name} is not YAML text (it holds NUL bytes: a binary file, or UTF-16 text); "
            "give a UTF-8 YAML file"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{name} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}): save it "
            "as UTF-8"
        ) from None
    try:
        # A SafeLoader subclass: plain data only, never arbitrary objects.
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{name} is not valid YAML: {_yaml_problem(e)}") from None


def _format_validation_error(err: ValidationError, prefix: str = "") -> str:
    parts = []
    for e in err.errors():
        loc = prefix + ".".join(str(x) for x in e["loc"])
        got = e.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{loc}: {e['msg']}{got_s}")
    return "invalid config: " + "; ".join(parts)


def validate_section(model: type[BaseModelT], data: dict[str, Any], where: str) -> BaseModelT:
    """Validate one config section (or a class's keyword options declared by ``model``).

    Unknown keys are refused with the nearest valid one ("did you mean"), wrong values with the
    field, what was received and what is allowed — the same messages as in a YAML config.

    Args:
        model: the pydantic model declaring the options.
        data: the options given.
        where: the config path of the section, e.g. ``"eigenbasis"``.
    """
    _check_keys(data, model, f"{where}.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, prefix=f"{where}.")) from None


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``key=value`` as YAML (numbers, bools, lists, null)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one dotted ``a.b.c=value`` override in place (list items by index: ``probes.0.x``)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key=value (e.g. optim.lr=0.05)")
    key, _, raw = override.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {override!r} has an empty key")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"override {key!r}: {'.'.join(parts[: i + 1])!r} is not an index of a "
                    f"{len(node)}-item list"
                )
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
            if node is None:
                node = {}
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"override {key!r}: no list item {last!r}")
        node[int(last)] = parse_value(raw)
    elif isinstance(node, dict):
        node[last] = parse_value(raw)
    else:
        raise ConfigError(f"override {key!r}: {'.'.join(parts[:-1])!r} is not a section")


def _ensure_sections(data: dict[str, Any], parts: list[str]) -> None:
    """Materialise defaults so overrides like ``probes.0.every=2`` address existing items."""
    if parts and parts[0] == "probes" and "probes" not in data:
        data["probes"] = [p.model_dump() for p in RunConfig().probes]


def load_config(
    source: str | Path | dict[str, Any] | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Build a validated :class:`RunConfig` from a YAML file (or dict) and overrides, in order.

    Args:
        source: path to a YAML file, a dict, or None for all defaults.
        overrides: ``["optim.lr=0.05", "data.name=mnist1d"]``, applied left to right.
    """
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, dict):
        data = copy.deepcopy(source)
    else:
        path = Path(source)
        data = read_yaml_file(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
        if "name" not in data:
            data["name"] = path.stem
    data.pop("meta", None)
    for ov in overrides or []:
        _ensure_sections(data, ov.partition("=")[0].split("."))
        apply_override(data, ov)
    _check_keys(data, RunConfig, "")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e)) from None


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (round-trips through :func:`load_config`)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def config_reference() -> str:
    """A Markdown table of every config field with its default and description."""
    lines = ["| key | default | description |", "| --- | --- | --- |"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            sub = _model_of(f.annotation)
            if sub is not None and get_origin(f.annotation) is not list:
                walk(sub, f"{prefix}{name}.")
                continue
            if sub is ProbeConfig:
                lines.append(f"| `{prefix}{name}` | (list) | probes; each item: |")
                walk(sub, f"{prefix}{name}[].")
                continue
            default = f.get_default(call_default_factory=True)
            if isinstance(default, list) and default and isinstance(default[0], BaseModel):
                default = [d.name for d in default]
            lines.append(f"| `{prefix}{name}` | `{default!r}` | {f.description or ''} |")

    walk(RunConfig, "")
    return "\n".join(lines)
