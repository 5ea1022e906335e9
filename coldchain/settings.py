"""Settings shared by every coldchain program: strict TOML models, MQTT connection,
and errors that name the file, the field and what was expected."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A config or profile file is invalid; raised at start-up only."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid config {self.path}:\n{lines}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: what an example env file ships instead of a secret; a service never starts with it
PLACEHOLDER = re.compile(r"CHANGE[_-]?ME|REPLACE[_-]?ME|<[^>]*>", re.IGNORECASE)


def secret(variable: str, field: str) -> str:
    """A secret from the environment. Empty, unset or still a placeholder is a config
    error naming the field and the variable: no service runs on a default secret."""
    value = os.environ.get(variable, "")
    if not value:
        raise ConfigError("environment", [f"{field}: variable {variable} is empty or not set"])
    if PLACEHOLDER.search(value):
        raise ConfigError(
            "environment",
            [f"{field}: variable {variable} still holds a placeholder; set a real secret"],
        )
    return value


class MqttConfig(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    #: MQTT client id; defaults to the program's own id
    client_id: str | None = None
    username: str | None = None
    #: name of the environment variable that holds the password (never the password)
    password_env: str | None = None
    #: sized for trucks: a dead (half-open) connection is noticed within two keepalives
    #: (at most 14 s), and a lost one is tried again every few seconds at most, so a
    #: link that comes back is used within seconds
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 7
    tls: bool = False
    ca_file: Path | None = None
    reconnect_min_s: Annotated[int, Field(ge=1)] = 1
    reconnect_max_s: Annotated[int, Field(ge=1)] = 5

    def password(self) -> str | None:
        if self.password_env is None:
            return None
        return secret(self.password_env, "mqtt.password_env")


def load_toml(path: Path | str, model: type[M]) -> M:
    """Read and validate a TOML file; ConfigError names file, field and expectation."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, problems_of(exc, model)) from None


def union_tags(model: type[BaseModel]) -> frozenset[str]:
    """The values of the ``kind``/``protocol`` fields that select a model in the model's
    discriminated unions, read from its own schema: pydantic puts them in the error path,
    where they are noise to a user."""
    tags: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "tagged-union":
                tags.update(str(tag) for tag in node["choices"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(model.__pydantic_core_schema__)
    return frozenset(tags)


def problems_of(exc: ValidationError, model: type[BaseModel], drop_prefix: int = 0) -> list[str]:
    """One line per problem of validating ``model``: ``field.path: what was wrong (got X)``.

    ``drop_prefix`` removes wrapper levels that are ours, not the user's.
    """
    tags = union_tags(model)
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"][drop_prefix:] if part not in tags]
        field = ".".join(loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not expected here)"
        elif err["type"] == "missing":
            msg = "missing (required)"
        got = err.get("input")
        suffix = "" if err["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{field}: {msg}{suffix}")
    return lines
