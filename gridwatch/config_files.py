"""Loading YAML configuration into pydantic models, with errors that name the file and each offending key."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
"""What YAML 1.1 reads as a number in base 60: `19:00` is 1140, `07:30:15.5` a float."""


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, but a date stays text for the model to read: YAML's own reading of `2026-13-01` raised a
    bare ValueError (month must be in 1..12) that named neither the file nor the key. And a time of day written
    without quotes stays text: YAML 1.1 reads `end: 19:00` as the number 1140 (base 60), which became 00:19 UTC."""

    def resolve(self, kind: Any, value: str, implicit: tuple[bool, bool]) -> str:  # noqa: ANN401 - a yaml node class
        if kind is yaml.ScalarNode and implicit[0] and _SEXAGESIMAL.fullmatch(value):
            return "tag:yaml.org,2002:str"
        return super().resolve(kind, value, implicit)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        """A mapping whose every key is written once: YAML's loader kept the last of two equal keys, silently (a
        second `enforcement:` unit replaced the first, its roster gone). Keys a merge (`<<: *defaults`) brings
        are overridden as YAML means them to be."""
        if isinstance(node, yaml.MappingNode):
            first_lines: dict[object, yaml.Mark] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = first_lines.setdefault(key, key_node.start_mark)
                except TypeError:  # a key that is a list or mapping: the safe loader's own error names it
                    continue
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        f"key {key!r} first written", first, "written again, which would replace it silently",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _clock_text(value: object) -> object:
    if isinstance(value, bool | int | float):  # pydantic reads a number as seconds past midnight, in UTC
        raise ValueError(f"{value!r} is not a time of day: write it as text, e.g. \"07:00\"")
    return value


def _local(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a local time of day takes no UTC offset: the configuration's time zone says where")
    return value


LocalTime = Annotated[time, BeforeValidator(_clock_text), AfterValidator(_local)]
"""A time of day in a configuration's own time zone, written as text ("07:00", "22:30:00")."""


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and every offending key."""


def validation_problems(error: ValidationError, prefix: str = "", unknown: str = "unknown key") -> list[str]:
    """`key: what is wrong` for each problem, the key being `prefix` + the path inside the validated data; an
    unexpected key reads as `unknown` (configuration files have keys, payloads have fields)."""
    problems = []
    for item in error.errors():
        key = prefix + ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"{key}: {unknown if item['type'] == 'extra_forbidden' else item['msg']}")
    return problems


def format_validation_error(error: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem, each naming its key."""
    return "\n".join([f"{source}: invalid configuration"] + [f"  {p}" for p in validation_problems(error, prefix)])


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong and where, without the line itself: PyYAML quotes it, and a settings file's line holds a
    password (`mqtt_password: "…` with its closing quote missing) or a camera's rtsp:// credentials."""
    if isinstance(error, yaml.reader.ReaderError):  # a character YAML refuses: named by its code, not quoted
        return f"{error.reason} (#x{error.character:04x}) at position {error.position}"
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return type(error).__name__
    def at(mark: yaml.Mark | None) -> str:
        return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""

    context = f"{error.context}{at(error.context_mark)}: " if error.context else ""
    return f"{context}{error.problem}{at(error.problem_mark)}"


def read_yaml_mapping(path: Path, what: str = "a mapping of settings") -> dict:
    """The YAML file's top-level mapping (empty file: empty mapping), or a ConfigError saying what is wrong."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a safe loader
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: cannot read: {_yaml_problem(error)}") from None
    except UnicodeDecodeError as error:  # saved in a local code page (GBK …)
        raise ConfigError(f"{path}: cannot read: not UTF-8 ({error.reason} at byte {error.start}); save it as "
                          "UTF-8") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {what}")
    return data


def validate(model: type[ModelT], data: dict, source: str) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None


def load_yaml_model(path: Path, model: type[ModelT]) -> ModelT:
    return validate(model, read_yaml_mapping(path), str(path))


def read_secret(path: Path, key: str) -> str:
    """A password kept in a file, stripped; a file that cannot be read is a ConfigError naming the key."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{key}: cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
