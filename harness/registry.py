"""Target registry.  Built-in targets register here; rtl_sims/ and boards/
register theirs through the ``mico.targets`` entry-point group, and a name
like ``board:arty`` is resolved by the factory registered for ``board:``."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Callable

from .errors import UserError
from .target import Target

log = logging.getLogger(__name__)

_factories: dict[str, Callable[..., Target]] = {}
_prefixes: dict[str, Callable[..., Target]] = {}
_loaded = False
_broken: dict[str, str] = {}   # plugin entry point -> why it failed to load


def register(name: str, factory: Callable[..., Target]) -> None:
    """Register a target; a name ending in ':' registers a family (board:NAME)."""
    if name.endswith(":"):
        _prefixes[name] = factory
    else:
        _factories[name] = factory


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import host  # noqa: F401  (built-in)

    for ep in entry_points(group="mico.targets"):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not take the CLI down
            log.debug("target plugin %s failed to load: %s", ep.name, e)
            _broken[ep.name] = f"{type(e).__name__}: {e}"


def broken_plugins() -> dict[str, str]:
    """Target plugins that failed to import, and why (listed by `mico targets`)."""
    _load_plugins()
    return dict(_broken)


def names() -> list[str]:
    _load_plugins()
    return sorted(_factories)


def families() -> list[str]:
    _load_plugins()
    return sorted(_prefixes)


def get(name: str, **params) -> Target:
    _load_plugins()
    if name in _factories:
        return _factories[name](**params)
    for prefix, factory in _prefixes.items():
        if name.startswith(prefix):
            return factory(name[len(prefix):], **params)
    raise UserError(f"unknown target {name!r}; `mico targets` lists the known ones.")


def family_params(prefix: str) -> list[dict]:
    """The parameters a family (``board:``) declares, when its factory is a Target class."""
    _load_plugins()
    factory = _prefixes.get(prefix)
    if isinstance(factory, type) and issubclass(factory, Target):
        return [p.describe() for p in factory.PARAMS]
    return []


def all_targets() -> list[Target]:
    _load_plugins()
    out = []
    for n in sorted(_factories):
        try:
            out.append(_factories[n]())
        except Exception as e:
            log.warning("target %s failed to construct: %s", n, e)
    return out
