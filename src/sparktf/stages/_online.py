"""What the server and the streaming job must agree on, from a config: the event rules,
the landing directory the server writes and the stream reads, and the online store both
open. One home, so ``sparktf serve``, ``sparktf stream`` and ``sparktf live`` cannot differ."""

from __future__ import annotations

from sparktf.config import Config, ExperimentConfig
from sparktf.experiments.assignment import Arm, Assignment, parse_arm_model
from sparktf.experiments.exploration import Exploration
from sparktf.online.events import EventRules

__all__ = [
    "assignment",
    "client_host",
    "event_rules",
    "landing_dir",
    "online_sqlite_path",
    "served_online_path",
    "server_url",
]


def assignment(cfg: ExperimentConfig) -> Assignment | None:
    """The experiment the server splits traffic by (``[experiment]``), or None without a name.

    The salt defaults to the name; the control to the first arm. The server, the simulator
    (for its per-arm truth) and the report all take it from here.
    """
    if not cfg.active:
        return None
    arms = tuple(
        Arm(
            a.name,
            parse_arm_model(a.model),
            a.weight,
            Exploration(a.exploration, a.epsilon, a.temperature, a.candidates),
        )
        for a in cfg.arms
    )
    return Assignment(
        experiment=cfg.name,
        salt=cfg.salt or cfg.name,
        arms=arms,
        control=cfg.control_arm,
        buckets=cfg.buckets,
    )


def event_rules(cfg: Config) -> EventRules:
    """The rules both ``POST /v1/events`` and the stream check: ``[data]``'s and ``stream.max_future_s``."""
    return EventRules(
        event_types=cfg.data.event_types,
        min_event_time=cfg.data.min_event_time,
        max_event_time=cfg.data.max_event_time,
        max_future_s=cfg.stream.max_future_s,
    )


def landing_dir(cfg: Config) -> str:
    """``<workdir>/data/landing``, or "" for a remote workdir: the server appends and fsyncs
    files there, which needs the local disk, so a server of a remote workdir collects no events."""
    path: str = cfg.paths.landing if cfg.paths.is_local else ""
    return path


def online_sqlite_path(cfg: Config) -> str:
    """``online.sqlite_path``, or ``<workdir>/online/online.db`` (local) when it is empty.

    With ``online.store = "redis"`` the path is not used, and a remote workdir is fine.
    """
    if cfg.online.sqlite_path:
        return cfg.online.sqlite_path
    if cfg.online.store != "sqlite" and not cfg.paths.is_local:
        return ""
    if not cfg.paths.is_local:
        cfg.paths.local("online", "online.db")  # raises, naming the fix
    path: str = cfg.paths.online_db
    return path


def served_online_path(cfg: Config) -> str:
    """The SQLite file the server reads live histories from: :func:`online_sqlite_path`,
    except "" for a remote workdir with the default path. The stream of a remote workdir
    cannot write there either, so such a server has no live histories (it says so at
    start-up) instead of refusing to serve."""
    if cfg.online.store == "sqlite" and not cfg.online.sqlite_path and not cfg.paths.is_local:
        return ""
    return online_sqlite_path(cfg)


def client_host(host: str) -> str:
    """Where a client reaches a server bound to ``host`` (a wildcard bind is reached on loopback)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - where a client connects, not a bind
        return "127.0.0.1"
    return "[::1]" if host == "::" else host


def server_url(cfg: Config) -> str:
    """The base URL of the server ``[serve]`` describes, as a client on this machine reaches it."""
    return f"http://{client_host(cfg.serve.host)}:{cfg.serve.port}"
