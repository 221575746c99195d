"""Deployment settings that name things: the topic prefix, and the default consumer groups it
implies.

One frozen ``Settings``, read from ``STREAMJOBS_*`` variables by ``Settings.from_env``, is what
``Catalogue.load``, ``Producer``, ``App`` and every CLI command follow when no prefix is given,
so the library and the CLI cannot disagree about which topics and groups an environment uses.

A prefix is put before every catalogue topic (and so before its retry tiers and dead-letter
topic) and before the default consumer group ids: ``staging.`` turns ``demo.emails`` into
``staging.demo.emails`` and the worker group ``streamjobs-demo`` into
``staging.streamjobs-demo`` (its wait-tier group ``staging.streamjobs-demo.wait``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ._names import default_group_id
from .errors import ConfigError

__all__ = [
    "ENV",
    "Settings",
]

ENV: dict[str, str] = {"topic_prefix": "STREAMJOBS_TOPIC_PREFIX"}

# What Kafka allows in topic names (and so in a part of one); also fine in group ids.
_PREFIX = re.compile(r"^[a-zA-Z0-9._-]{0,200}$")


@dataclass(frozen=True)
class Settings:
    topic_prefix: str = ""

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.topic_prefix):
            raise ConfigError("topic_prefix", f"{self.topic_prefix!r}: use at most 200 of "
                                              "a-z A-Z 0-9 . _ - (Kafka topic name characters)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """From ``STREAMJOBS_TOPIC_PREFIX`` (unset or empty: no prefix)."""
        env = os.environ if environ is None else environ
        return cls(topic_prefix=env.get(ENV["topic_prefix"], ""))

    def topic(self, name: str) -> str:
        """``name`` under the prefix; a name that already starts with it is kept as is."""
        return name if name.startswith(self.topic_prefix) else self.topic_prefix + name

    def group_id(self, app_name: str) -> str:
        return default_group_id(app_name, self.topic_prefix)


