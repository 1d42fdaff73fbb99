"""Editing the infra stack's `Pulumi.<env>.yaml` to grow the run pool, keeping comments.

The config holds the pools under `config: {<project>:pools: {<pool>: {count, names?}}}`. A node's
default name is `{env}-{pool}-{i}` (1-based) and its private IP follows from its index, so adding
a node only ever appends: existing names and addresses never change.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from stacks.common.files import atomic_write_text
from stacks.common.inventory import POOLS
from stacks.infra import config as infra_config

ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = ROOT / "stacks" / "infra"
RUN_POOL = "run"
# RFC 1123 label, lower case: server names become hostnames and Kubernetes node names.
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class StackConfigError(ValueError):
    """The env, the config file or a requested name is unusable; the message says which."""


@dataclass(frozen=True)
class RunNodeChange:
    """What adding a run node does (or did) to the config."""

    path: Path
    name: str
    count_before: int
    count_after: int
    materialised_names: bool
    changed: bool


def known_envs(stacks_dir: Path = INFRA_DIR) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))


def config_path(env: str, stacks_dir: Path = INFRA_DIR) -> Path:
    """The stack config file of `env`; refuses an env that has none."""
    if not DNS_LABEL.match(env):
        raise StackConfigError(f"--env {env!r} is not a valid environment name")
    path = stacks_dir / f"Pulumi.{env}.yaml"
    if not path.is_file():
        known = ", ".join(known_envs(stacks_dir)) or "none"
        raise StackConfigError(f"unknown env {env!r}: there is no {path} (known envs: {known})")
    return path


def default_name(env: str, pool: str, index: int) -> str:
    return f"{env}-{pool}-{index}"


_KEY_OPENS_BLOCK = re.compile(r"^(\s*)[^\s#-][^#]*:\s*(#.*)?$")
_ITEM = re.compile(r"^(\s*)- ")


def _guess_indent(text: str) -> tuple[int, int]:
    """The file's mapping indent and block-sequence dash offset, so a dump keeps its layout.

    ruamel's own guess reports the sequence indent for both when a file mixes them.
    """
    mapping: int | None = None
    offset: int | None = None
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    for parent, child in zip(lines, lines[1:], strict=False):
        opened = _KEY_OPENS_BLOCK.match(parent)
        if opened is None:
            continue
        depth = len(child) - len(child.lstrip())
        step = depth - len(opened.group(1))
        item = _ITEM.match(child)
        if item is not None and offset is None and step >= 0:
            offset = step
        elif item is None and mapping is None and step > 0:
            mapping = step
    mapping = mapping or 2
    return mapping, mapping if offset is None else offset


def _yaml(text: str) -> YAML:
    mapping, offset = _guess_indent(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    return yaml


@dataclass
class _Loaded:
    doc: CommentedMap
    yaml: YAML


def _load(path: Path) -> _Loaded:
    text = path.read_text()
    yaml = _yaml(text)
    try:
        doc = yaml.load(text)
    except YAMLError as exc:
        raise StackConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, CommentedMap):
        raise StackConfigError(f"{path}: expected a mapping with a `config:` key")
    return _Loaded(doc, yaml)


def _pools(doc: CommentedMap, path: Path) -> tuple[str, CommentedMap]:
    config = doc.get("config")
    keys = [k for k in (config or {}) if str(k).split(":")[-1] == "pools"]
    if not isinstance(config, CommentedMap) or len(keys) != 1:
        raise StackConfigError(f"{path}: expected exactly one `config.<project>:pools` mapping")
    pools = config[keys[0]]
    if not isinstance(pools, CommentedMap):
        raise StackConfigError(f"{path}: `config.{keys[0]}` must be a mapping of pools")
    return str(keys[0]), pools


def _pool_names(env: str, pool: str, spec: Any, where: str) -> list[str]:
    if not isinstance(spec, dict):
        raise StackConfigError(f"{where}: must be a mapping with `count`")
    count = spec.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise StackConfigError(f"{where}.count: must be a whole number >= 0, not {count!r}")
    names = spec.get("names")
    if names is None:
        return [default_name(env, pool, i) for i in range(1, count + 1)]
    if not isinstance(names, list) or len(names) != count:
        raise StackConfigError(f"{where}.names: must be a list of exactly `count` ({count}) names")
    return [str(n) for n in names]


def node_names(env: str, stacks_dir: Path = INFRA_DIR) -> dict[str, list[str]]:
    """Every pool's node names, as the infra stack will name the servers."""
    path = config_path(env, stacks_dir)
    key, pools = _pools(_load(path).doc, path)
    return {
        pool: _pool_names(env, pool, pools[pool], f"{path}: config.{key}.{pool}")
        for pool in POOLS
        if pool in pools
    }


def _plan(env: str, path: Path, pools: CommentedMap, key: str, name: str | None) -> str:
    if RUN_POOL not in pools:
        raise StackConfigError(f"{path}: no `config.{key}.{RUN_POOL}` pool to add a node to")
    all_names: dict[str, list[str]] = {
        pool: _pool_names(env, pool, pools[pool], f"{path}: config.{key}.{pool}")
        for pool in POOLS
        if pool in pools
    }
    run = all_names[RUN_POOL]
    used = {n for names in all_names.values() for n in names}
    if name is None:
        name = default_name(env, RUN_POOL, len(run) + 1)
        if name in used:
            raise StackConfigError(
                f"the default name {name!r} for the new run node is already used: pass --name"
            )
        return name
    if not DNS_LABEL.match(name):
        raise StackConfigError(
            f"--name {name!r} is not a valid DNS label (lower-case letters, digits and '-', "
            "1-63 characters, no leading or trailing '-')"
        )
    if name in used:
        raise StackConfigError(f"--name {name!r} is already a node of env {env!r}")
    return name


def _edit(
    env: str, name: str | None, stacks_dir: Path, existing_ok: bool
) -> tuple[RunNodeChange, str | None]:
    """The change and the edited file text (None when nothing changes), written nowhere."""
    path = config_path(env, stacks_dir)
    loaded = _load(path)
    key, pools = _pools(loaded.doc, path)
    if existing_ok and name is not None and RUN_POOL in pools:
        run_names = _pool_names(env, RUN_POOL, pools[RUN_POOL], f"{path}: config.{key}.run")
        if name in run_names:
            count = len(run_names)
            return RunNodeChange(path, name, count, count, False, changed=False), None
    new = _plan(env, path, pools, key, name)
    run: CommentedMap = pools[RUN_POOL]
    count = int(run["count"])
    materialised = False
    names = run.get("names")
    # A --name equal to the default the node would get anyway needs no `names` list (a resumed
    # add-run-node passes the default name it printed).
    if names is None and name is not None and name != default_name(env, RUN_POOL, count + 1):
        names = CommentedSeq([default_name(env, RUN_POOL, i) for i in range(1, count + 1)])
        run.insert(list(run.keys()).index("count") + 1, "names", names)
        materialised = True
    if names is not None:
        names.append(new)
    run["count"] = count + 1
    _check_with_infra(loaded.doc, path, new)
    out = io.StringIO()
    loaded.yaml.dump(loaded.doc, out)
    return RunNodeChange(path, new, count, count + 1, materialised, changed=True), out.getvalue()


def plan_run_node(env: str, name: str | None, stacks_dir: Path = INFRA_DIR) -> RunNodeChange:
    """Validate the env and name and say what `add_run_node` would change, touching nothing."""
    return _edit(env, name, stacks_dir, existing_ok=False)[0]


def add_run_node(
    env: str, name: str | None, stacks_dir: Path = INFRA_DIR, *, existing_ok: bool = False
) -> RunNodeChange:
    """Append a run node to `Pulumi.<env>.yaml`: count += 1, and the name if names are listed.

    With `existing_ok`, a `name` that is already a run node is left as it is (changed=False):
    resuming an interrupted add-run-node must never add a second node.
    """
    with _locked(config_path(env, stacks_dir)):
        change, text = _edit(env, name, stacks_dir, existing_ok)
        if text is not None:
            atomic_write_text(change.path, text, keep_mode=True)
    return change


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the stack configs: two operators adding nodes at once must
    get two nodes, not one edit overwriting the other. The file itself is replaced on write (a
    new inode), so the lock is taken on its directory, which stays put and needs no lock file.
    """
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _check_with_infra(doc: CommentedMap, path: Path, name: str) -> None:
    """Run the infra stack's own validation on the edited config before it is written, so a
    full ip_range or a clash with a Robot server's name is refused here, not half-way into `up`.
    """
    try:
        infra_config.validate(infra_config.strip_namespace(doc["config"]), source=path.name)
    except infra_config.InfraConfigError as exc:
        raise StackConfigError(f"adding {name} would make {path} invalid: {exc}") from exc
