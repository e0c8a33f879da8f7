"""Who may read what: the audiences an asker holds, and which of them an answer may use.

- Documents carry audiences (knowledge/audiences.py); retrieval keeps only passages whose document's audiences
  meet the reader's, in SQL.
- Who holds an audience comes from POLICYBOT_AUDIENCES_FILE (YAML, `Directory.load`): Slack user groups
  (handles or ids), Entra group object ids and explicit user ids. Group membership is looked up at question
  time through the platform's `GroupLookup` (the adapters provide them: Slack `usergroups.users.list`, Microsoft
  Graph `checkMemberGroups`) and cached in Redis for `ttl_s`, so a membership change is seen within it.
- A failed lookup grants no group audience: the asker reads as `everyone` (plus audiences that name them
  explicitly, which need no lookup). Failing closed keeps an outage from ever widening what someone sees.
- Where the answer is shown decides (`shown_audiences`): in a channel or group chat everyone reads it, so only
  `everyone` documents answer; in a DM or personal chat the asker's own audiences do.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis

from knowledge.audiences import EVERYONE, AudienceError, parse_audiences, reader_audiences

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 300
FAILURE_TTL_S = 30  # a failed lookup is retried this soon, not on every question while the platform is down
GROUP_KINDS = ("slack_groups", "entra_groups")
_KEYS = {*GROUP_KINDS, "users"}


class AudienceConfigError(ValueError):
    """POLICYBOT_AUDIENCES_FILE is unreadable or malformed; the message says where and how to fix it."""


@dataclass(frozen=True)
class AudienceRule:
    name: str
    slack_groups: tuple[str, ...] = ()  # user-group handles (`hr-leads`) or ids (`S0123ABC`)
    entra_groups: tuple[str, ...] = ()  # Entra (Azure AD) group object ids
    users: tuple[str, ...] = ()  # explicit user ids: Slack `U…`, Entra object ids, Teams ids


@dataclass(frozen=True)
class Directory:
    """The audiences file as read at start-up."""

    rules: tuple[AudienceRule, ...] = ()

    @classmethod
    def load(cls, path: Path | None) -> "Directory":
        if path is None:
            return cls()
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as err:
            raise AudienceConfigError(f"POLICYBOT_AUDIENCES_FILE {path}: cannot be read ({err.strerror or err})") from err
        except yaml.YAMLError as err:
            raise AudienceConfigError(f"POLICYBOT_AUDIENCES_FILE {path}: not valid YAML ({err})") from err
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: object, where: str = "audiences") -> "Directory":
        example = "e.g.\naudiences:\n  leadership:\n    slack_groups: [leads]\n    entra_groups: [<group object id>]\n    users: [U0123ABC]"
        if not isinstance(data, Mapping) or not isinstance(data.get("audiences", {}), Mapping):
            raise AudienceConfigError(f"{where}: expected a mapping under `audiences:`, {example}")
        rules = []
        for raw_name, entry in (data.get("audiences") or {}).items():
            try:
                (name,) = parse_audiences(str(raw_name))
            except (AudienceError, ValueError) as err:
                raise AudienceConfigError(f"{where}: audience {raw_name!r}: {err}") from err
            if name == EVERYONE:
                raise AudienceConfigError(f"{where}: `everyone` is every reader already; remove it from the file")
            entry = entry or {}
            if not isinstance(entry, Mapping) or set(entry) - _KEYS:
                raise AudienceConfigError(
                    f"{where}: audience {name!r} may list only slack_groups, entra_groups and users; {example}")
            lists = {}
            for key in _KEYS:
                value = entry.get(key) or []
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
                    raise AudienceConfigError(f"{where}: {name}.{key} must be a list of ids")
                lists[key] = tuple(str(v).strip() for v in value if str(v).strip())
            rules.append(AudienceRule(name, **lists))
        return cls(tuple(rules))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules)

    def groups(self, kind: str) -> tuple[str, ...]:
        return tuple(sorted({g for rule in self.rules for g in getattr(rule, kind)}))


class GroupLookup(Protocol):
    """A platform's group membership, provided by its adapter (adapters/slack/membership.py,
    adapters/teams/graph.py)."""

    kind: str  # which groups of the file it answers for: "slack_groups" or "entra_groups"

    def member_of(self, user_id: str, groups: Sequence[str]) -> set[str]:
        """Which of `groups` (as written in the file) the user belongs to. Raises on any failure."""
        ...


def shown_audiences(asker: Sequence[str], private: bool) -> tuple[str, ...]:
    """What an answer may read: the asker's audiences in a DM or personal chat; `everyone` only where others
    see the answer (a channel, a group chat), whoever asks."""
    return reader_audiences(asker) if private else (EVERYONE,)


class AudienceResolver:
    """The audiences a platform's user holds, from the directory and the platform's group lookup."""

    def __init__(self, directory: Directory, redis_client: redis.Redis, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.directory = directory
        self.redis = redis_client
        self.ttl_s = ttl_s
        self._lookups: dict[str, GroupLookup] = {}
        self._lock = threading.Lock()

    def register(self, platform: str, lookup: GroupLookup) -> None:
        """An adapter's group lookup for its platform's users (`slack`, `teams`)."""
        with self._lock:
            self._lookups[platform] = lookup

    def audiences_of(self, platform: str, user_id: str) -> tuple[str, ...]:
        """The user's audiences, `everyone` included; cached in Redis for ttl_s."""
        if not self.directory.rules:
            return (EVERYONE,)
        key = f"policybot:audiences:{platform}:{user_id}"
        try:
            raw = self.redis.get(key)
            if raw:
                return tuple(json.loads(raw))
        except (redis.RedisError, ValueError):
            raw = None
        audiences, ok = self._resolve(platform, user_id)
        try:
            self.redis.set(key, json.dumps(audiences), ex=self.ttl_s if ok else min(self.ttl_s, FAILURE_TTL_S))
        except redis.RedisError:
            pass  # looked up again next time
        return audiences

    def _resolve(self, platform: str, user_id: str) -> tuple[tuple[str, ...], bool]:
        held = {rule.name for rule in self.directory.rules if user_id in rule.users}
        lookup = self._lookups.get(platform)
        ok = True
        if lookup is not None:
            wanted = self.directory.groups(lookup.kind)
            if wanted:
                try:
                    found = set(lookup.member_of(user_id, wanted))
                    held |= {rule.name for rule in self.directory.rules if found & set(getattr(rule, lookup.kind))}
                except Exception as err:  # any failure: no group audience (fail closed)
                    ok = False
                    log.warning("%s group lookup for %s failed; answering with `everyone` documents only: %s",
                                platform, user_id, err)
        return reader_audiences(held), ok


def prompt_audience(audiences: Sequence[str]) -> str | None:
    """A passage's audience as the prompt shows it (bot/prompt.py): None, not shown, for `everyone` passages,
    so prompts of an unrestricted corpus are unchanged; serving and fine-tuning prompts both carry it."""
    return None if EVERYONE in set(audiences) else ",".join(sorted(audiences))
