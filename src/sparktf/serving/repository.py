"""Model versions, labels and hot reload.

A :class:`ModelRepository` serves one model name. Its *source* says which
versions should be loaded: a TF Serving base path (numbered version folders; the
highest is served, as TF Serving's default policy does, plus any pinned ones) or
an MLflow registry alias (``models:/name@champion``: the alias's version, plus
pinned versions and label aliases). A background poller asks the source again
every ``serve.poll_interval_s``; a new version is loaded and warmed up *beside*
the old one, then one reference (the immutable :class:`Snapshot`) is swapped.
A request takes the snapshot once when it starts and keeps the version it
resolved to until it ends, so no request fails or mixes versions during a
switch; a version that left the snapshot is dropped when its last request ends.

Why our own code: TF Serving's model manager is C++, and neither MLflow's
scoring server (one fixed model per process) nor FastAPI knows versions, labels
or aliases.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sparktf.errors import ModelError, RegistryError, ServingError
from sparktf.serving.tfserving import SignatureInfo, not_found

__all__ = [
    "BasePathSource",
    "LoadedVersion",
    "ModelRepository",
    "ModelSource",
    "RegistrySource",
    "Resolution",
    "Snapshot",
    "load_version",
    "source_for",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolution:
    """What a source wants served now.

    Attributes:
        paths: version -> local version directory.
        labels: label -> version.
        default: the version a request without a version or label gets.
        fallbacks: older versions (version -> directory) to serve, newest first, when
            nothing is serving yet and ``default`` cannot be loaded (a half-written or
            damaged newest version folder must not hide a good older one).
    """

    paths: Mapping[int, str]
    labels: Mapping[str, int]
    default: int
    fallbacks: Mapping[int, str] = field(default_factory=dict)


class ModelSource(Protocol):
    """Where versions come from; ``resolve`` is called by the poller."""

    @property
    def name(self) -> str: ...

    def resolve(self) -> Resolution: ...


class Servable(Protocol):
    path: str
    version: int
    signatures: Mapping[str, SignatureInfo]

    def run(self, signature: str, inputs: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass(eq=False)
class LoadedVersion:
    """One loaded, warmed-up version; ``recommender`` is set for sparktf exports."""

    version: int
    servable: Servable
    recommender: Any = None
    loaded_at: float = field(default_factory=time.time)
    _inflight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self) -> None:
        with self._lock:
            self._inflight += 1

    def release(self) -> None:
        with self._lock:
            self._inflight -= 1

    @property
    def inflight(self) -> int:
        return self._inflight


@dataclass(frozen=True)
class Snapshot:
    """The versions being served at one instant; replaced whole, never changed."""

    name: str
    versions: Mapping[int, LoadedVersion]
    labels: Mapping[str, int]
    default: int | None
    failures: Mapping[int, str] = field(default_factory=dict)

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        """The version a request asks for, in TF Serving's words when there is none.

        Raises:
            ServingError: 404 for another model's name, a version that is not loaded or an
                unknown label; 503 when nothing is loaded yet.
        """
        if name != self.name:
            what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise not_found(f"Servable not found for request: {what}")
        if label is not None:
            if label not in self.labels or self.labels[label] not in self.versions:
                raise not_found(
                    f"Unrecognized servable version label: {label}; labels: {', '.join(sorted(self.labels)) or 'none'}."
                )
            return self.versions[self.labels[label]]
        if version is not None:
            if version not in self.versions:
                raise not_found(
                    f"Servable not found for request: Specific({name}, {version}); loaded versions: "
                    f"{', '.join(str(v) for v in sorted(self.versions)) or 'none'}."
                )
            return self.versions[version]
        if self.default is None or self.default not in self.versions:
            raise ServingError(f"Model {name!r} has no version loaded yet; try again shortly.", status=503)
        return self.versions[self.default]


Loader = Callable[[int, str], LoadedVersion]


def load_version(
    version: int, path: str, *, features: Any = None, index_path: str = "", exclude_seen: bool = True
) -> LoadedVersion:
    """Load and warm up one version directory (a recommender too when it is a sparktf export).

    Raises:
        ModelError: the SavedModel cannot be loaded, or it is a sparktf recommender
            whose ``assets.extra/`` is incomplete (still being written, or damaged):
            served as a plain SavedModel it would be ready while every ``:recommend`` fails.
    """
    from sparktf.serving.features import FeatureLookup
    from sparktf.serving.recommend import (
        VersionRecommender,
        has_recommender_signature,
        missing_export_parts,
    )
    from sparktf.serving.servable import SavedModelServable

    servable = SavedModelServable(path, version)
    missing = missing_export_parts(path)
    recommender = None
    if not missing:
        recommender = VersionRecommender(servable, features or FeatureLookup(), index_path, exclude_seen)
        recommender.warmup()
    elif len(missing) < 3 or has_recommender_signature(servable.signatures):
        raise ModelError(
            f"Version {version} at {path} is a sparktf recommender export without {', '.join(missing)}: "
            "it is still being written, or damaged, and could not answer :recommend.",
            hint="Export versions with sparktf.models.export.export_model (it writes a version whole), "
            "or copy the whole version folder in with one rename.",
        )
    else:
        _warm_up_signatures(servable)
    return LoadedVersion(version=version, servable=servable, recommender=recommender)


def _warm_up_signatures(servable: Any) -> None:
    """Call each signature once on a one-row input when its shapes allow, so that the
    first real request does not pay for tracing; failures only mean no warm-up."""
    import numpy as np

    for name, sig in servable.signatures.items():
        feed = {}
        for key, info in sig.inputs.items():
            if info.shape is None or any(d is None for d in info.shape[1:]):
                break
            dims = (1, *[int(d) for d in info.shape[1:]]) if info.shape else ()
            feed[key] = np.full(dims, b"", dtype=object) if info.dtype == "string" else np.zeros(dims, info.dtype)
        else:
            try:
                servable.run(name, feed)
            except Exception as exc:  # noqa: BLE001 - a warm-up call that does not fit is harmless
                log.debug("warm-up of signature %s skipped: %s", name, exc)


class ModelRepository:
    """The loaded versions of one model, refreshed from its source.

    Args:
        source: what should be served.
        loader: ``(version, path) -> LoadedVersion``; loads and warms up.
        name: the model name in URLs; defaults to the source's.
    """

    def __init__(self, source: ModelSource, loader: Loader, name: str = "") -> None:
        self.source = source
        self.name = name or source.name
        self._loader = loader
        self._snapshot = Snapshot(self.name, {}, {}, None)
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Retired versions, each with the number of refreshes it has been seen idle.
        self._retired: list[tuple[LoadedVersion, int]] = []
        self.listeners: list[Callable[[Snapshot, str], None]] = []
        self.last_error = ""

    @property
    def snapshot(self) -> Snapshot:
        # One attribute read: atomic under the GIL, so a request sees one whole snapshot.
        return self._snapshot

    @property
    def ready(self) -> bool:
        snap = self._snapshot
        return snap.default is not None and snap.default in snap.versions

    def refresh(self) -> bool:
        """Ask the source once; load new versions beside the old, then swap.

        Returns True when the snapshot changed. A version that fails to load is reported
        in the status (and retried on the next poll); the old versions keep serving.
        """
        with self._refresh_lock:
            try:
                want = self.source.resolve()
            except Exception as exc:  # noqa: BLE001 - the poller must survive a registry hiccup
                self.last_error = f"cannot resolve {self.source.name}: {exc}"
                log.error("%s", self.last_error)
                self._notify("resolve_failed")
                return False
            old = self._snapshot
            versions = {v: lv for v, lv in old.versions.items() if v in want.paths}
            failures: dict[int, str] = {}
            loaded_any = False
            for v, path in sorted(want.paths.items()):
                if v in versions:
                    continue
                try:
                    versions[v] = self._loader(v, path)
                    loaded_any = True
                    log.info("loaded %s version %d from %s", self.name, v, path)
                except Exception as exc:  # noqa: BLE001 - reported in the status, old versions keep serving
                    failures[v] = f"{type(exc).__name__}: {exc}"
                    log.error("cannot load %s version %d from %s: %s", self.name, v, path, exc)
                    self._notify("load_failed")
            default: int | None = want.default
            if default not in versions and old.default is not None:
                # The wanted version failed to load: the one serving now goes on serving.
                default = old.default
                versions[default] = old.versions[default]
            if default not in versions:
                # Nothing serves yet: the newest older version that loads does.
                for v, path in sorted(want.fallbacks.items(), reverse=True):
                    if v in versions:
                        break
                    try:
                        versions[v] = self._loader(v, path)
                    except Exception as exc:  # noqa: BLE001 - try the next older one
                        failures[v] = f"{type(exc).__name__}: {exc}"
                        log.error("cannot load %s version %d from %s either: %s", self.name, v, path, exc)
                        continue
                    loaded_any = True
                    log.warning("serving %s version %d until version %s loads", self.name, v, want.default)
                    break
            if default not in versions:
                default = max(versions) if versions else None
            labels = {k: v for k, v in want.labels.items() if v in versions}
            new = Snapshot(self.name, versions, labels, default, failures)
            changed = (
                new.versions.keys() != old.versions.keys()
                or new.labels != old.labels
                or new.default != old.default
                or loaded_any
            )
            if changed or new.failures != old.failures:
                self._snapshot = new
            self.last_error = "; ".join(failures.values())
            for v, lv in old.versions.items():
                if v not in versions:
                    self._retired.append((lv, 0))
            self._drop_idle_retired()
            if changed:
                self._notify("swapped")
            return changed

    def _drop_idle_retired(self) -> None:
        """Let go of the retired versions idle at two refreshes in a row, here, then collect.

        A retired version lives on while requests that resolved to it run. Its TensorFlow
        functions are removed from the eager context when it is freed, and TF's
        ``remove_function`` is not safe against another thread removing or adding functions
        at the same time: a request thread that dropped the last reference while this
        thread loaded a version crashed the process (SIGSEGV in ``remove_function``, seen
        once in a full test run; tensorflow#59242). So a version is freed only in this
        thread: idle at two refreshes (a request that just released it has returned by
        then), and ``gc.collect()`` right away, so the cycles of its functions are not left
        for whichever thread's allocation triggers the next collection.
        """
        kept: list[tuple[LoadedVersion, int]] = []
        dropped = 0
        for lv, idle in self._retired:
            if lv.inflight > 0:
                kept.append((lv, 0))
            elif idle == 0:
                kept.append((lv, 1))
            else:
                dropped += 1
        self._retired = kept
        if dropped:
            del lv, kept
            gc.collect()

    def _notify(self, event: str) -> None:
        for fn in self.listeners:
            fn(self._snapshot, event)

    def start(self, interval_s: float) -> None:
        """Poll the source every ``interval_s`` seconds in a daemon thread (0: never)."""
        if interval_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.refresh()

        self._thread = threading.Thread(target=loop, name=f"sparktf-reload-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def status(self, version: int | None = None) -> list[tuple[int, str, str, str]]:
        """``(version, state, error_code, error_message)`` rows for the status endpoint."""
        snap = self._snapshot
        rows = [(v, "AVAILABLE", "OK", "") for v in snap.versions]
        rows += [(v, "END", "UNKNOWN", msg) for v, msg in snap.failures.items() if v not in snap.versions]
        if version is not None:
            rows = [r for r in rows if r[0] == version]
            if not rows:
                raise not_found(f"Servable not found for request: Specific({self.name}, {version})")
        if not rows:
            raise not_found(f"Servable not found for request: Latest({self.name}); nothing is loaded yet.")
        return rows


# --------------------------------------------------------------------------- sources


_VERSION_DIR = re.compile(r"^\d{1,18}$")


@dataclass(frozen=True)
class BasePathSource:
    """A TF Serving base path: ``<base>/<version>/saved_model.pb``.

    The highest version is the default; ``pinned`` versions are loaded too when their
    folders exist; ``labels`` map names to version numbers.
    """

    base: str
    pinned: tuple[int, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.base)) or "model"

    def resolve(self) -> Resolution:
        from sparktf.serving.servable import is_saved_model_dir

        if not os.path.isdir(self.base):
            raise ServingError(
                f"Model base path {self.base} does not exist.",
                hint="Pass --model a folder with numbered version folders, e.g. /models/recsys (holding 1/, 2/).",
                status=500,
            )
        found = {
            int(entry): os.path.join(self.base, entry)
            for entry in os.listdir(self.base)
            if _VERSION_DIR.match(entry) and is_saved_model_dir(os.path.join(self.base, entry))
        }
        if not found:
            raise ServingError(
                f"No version folder with a SavedModel under {self.base} (looked for <base>/<number>/saved_model.pb).",
                hint="Export with sparktf.models.export.export_model(model, base, version).",
                status=500,
            )
        latest = max(found)
        labels = {k: int(v) for k, v in self.labels.items() if v.isdigit()}
        keep = {latest, *self.pinned, *labels.values()}
        older = {v: p for v, p in found.items() if v < latest}
        return Resolution({v: p for v, p in found.items() if v in keep}, labels, latest, older)


@dataclass(frozen=True)
class RegistrySource:
    """An MLflow registry alias: ``models:/name@alias`` (or a fixed ``models:/name/<version>``).

    Each version's ``savedmodel`` artifact (the export inside the pyfunc model) is
    downloaded once into ``cache_dir``. The followed alias is also a label, and
    ``labels`` may map more labels to versions or aliases.
    """

    model: str
    alias: str | None
    fixed_version: int | None
    tracking_uri: str
    cache_dir: str
    pinned: tuple[int, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def _alias_version(self, client: Any, alias: str) -> int:
        try:
            return int(client.get_model_version_by_alias(self.model, alias).version)
        except Exception as exc:
            raise RegistryError(
                f"Registered model {self.model!r} has no alias {alias!r} at {self.tracking_uri}: {exc}",
                hint="Promote a version first (`sparktf promote`) or serve models:/name/<version>.",
            ) from exc

    def resolve(self) -> Resolution:
        client = self._client()
        labels: dict[str, int] = {}
        if self.alias is not None:
            default = self._alias_version(client, self.alias)
            labels[self.alias] = default
        else:
            assert self.fixed_version is not None
            default = self.fixed_version
        for label, target in self.labels.items():
            labels[label] = int(target) if target.isdigit() else self._alias_version(client, target)
        wanted = {default, *self.pinned, *labels.values()}
        return Resolution({v: self._download(client, v) for v in sorted(wanted)}, labels, default)

    def _download(self, client: Any, version: int) -> str:
        """The local export directory of one registered version (downloaded once)."""
        import mlflow.artifacts
        from mlflow.models import Model

        target = os.path.join(self.cache_dir, self.model, str(version))
        done = os.path.join(target, ".sparktf-complete")
        if os.path.exists(done):
            with open(done, encoding="utf-8") as fh:
                return fh.read().strip()
        try:
            uri = client.get_model_version_download_uri(self.model, str(version))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f".{version}-", dir=os.path.dirname(target))
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=self.tracking_uri)
            flavor = Model.load(local).flavors.get("python_function", {})
            rel = (flavor.get("artifacts", {}).get("savedmodel") or {}).get("path")
        except Exception as exc:
            raise RegistryError(
                f"Cannot download {self.model} version {version} from {self.tracking_uri}: {exc}"
            ) from exc
        if not rel:
            raise RegistryError(
                f"{self.model} version {version} is not a sparktf model: its MLmodel has no 'savedmodel' artifact.",
                hint="Register models logged with sparktf.training.tracking.RunTracker.log_model.",
            )
        if os.path.exists(target):
            import shutil

            shutil.rmtree(target)
        os.replace(tmp, target)
        # download_artifacts may put the model in a subfolder of dst_path.
        path = os.path.join(target, os.path.relpath(local, tmp), rel)
        with open(done, "w", encoding="utf-8") as fh:
            fh.write(path)
        return path


def source_for(
    model: str,
    *,
    tracking_uri: str,
    cache_dir: str,
    pinned: tuple[int, ...] = (),
    labels: Mapping[str, str] | None = None,
) -> ModelSource:
    """The source for ``--model``: ``models:/name@alias``, ``models:/name/<version>`` or a base path.

    Registry URIs are parsed by :func:`sparktf.registry.uri.parse_model_uri`, the
    project's one grammar of them.

    Raises:
        ServingError: 400 for a URI that is not a registry URI, or one the server cannot
            follow (``latest``, a path inside the model, an MLflow logged model, a remote path).
    """
    from sparktf.registry.uri import is_logged_model_uri, is_model_uri, parse_model_uri

    labels = dict(labels or {})
    follow = "Use models:/<name>@<alias> (e.g. models:/sparktf-recommender@champion) or models:/<name>/<version>."
    if is_model_uri(model):
        if is_logged_model_uri(model):
            raise ServingError(
                f"--model {model!r} is an MLflow logged model, not a registered model version.",
                hint="Register it (`sparktf promote` or mlflow.register_model) and serve models:/<name>@<alias>.",
                status=400,
            )
        try:
            uri = parse_model_uri(model)
        except RegistryError as exc:
            raise ServingError(exc.message, hint=exc.hint, status=400) from None
        if uri.path:
            raise ServingError(
                f"--model {model!r} names {uri.path!r} inside the model; the server serves a whole model.",
                hint=f"Drop the path: models:/{uri.name}" + (f"@{uri.alias}" if uri.alias else f"/{uri.version}") + ".",
                status=400,
            )
        if uri.is_latest:
            raise ServingError(
                f"--model {model!r}: the server does not follow 'latest' (an unpromoted version would go live).",
                hint=follow,
                status=400,
            )
        return RegistrySource(
            model=uri.name,
            alias=uri.alias,
            fixed_version=uri.fixed_version,
            tracking_uri=tracking_uri,
            cache_dir=cache_dir,
            pinned=pinned,
            labels=labels,
        )
    if "://" in model and not model.startswith("file://"):
        raise ServingError(
            f"--model {model!r}: only local base paths and models:/ URIs are served.",
            hint="Copy the model to a local folder, or register it and pass models:/name@alias.",
            status=400,
        )
    return BasePathSource(os.path.abspath(model.removeprefix("file://")), pinned, labels)
