"""The model registry: versions of one registered model, their tags and their aliases.

:class:`ModelRegistry` is a typed view of one registered model in MLflow (the
embedded SQLite store or an ``mlflow server``). :meth:`ModelRegistry.register`
turns a trained model (an MLflow 3 logged model, ``models:/m-...``, as
:meth:`sparktf.training.tracking.RunTracker.log_model` returns) into a new version
with ``validation_status=pending``, linked to its run, its evaluation metrics and
the data fingerprint.

What travels with a version. The pyfunc model holds the SavedModel export, and
the export holds the item vocabulary (``assets.extra/item_ids.txt``) and the user
vocabulary (lookup tables in the graph). Extra directories (the feature
vocabularies at registration, the ANN index later, since the index stage runs
after the gate) are uploaded **into the logged model's own artifacts** under
``sparktf/<kind>/``, so that ``models:/name@champion`` downloads them with the
model and :func:`sparktf.load_model` finds them beside it; a version tag
``<kind>_artifact`` records their full URI. A directory that is not on the local
disk (``hdfs://...``) cannot be uploaded; its URI is recorded instead, with a
``<kind>_artifact_note`` tag that says so.

Why our own code: MLflow's client returns versions as strings from a server and
integers from SQLite, its search results carry no aliases, a missing alias raises
the same error code as a malformed request, and registering ``models:/m-...``
makes the SQL store resolve the logged model through the process-global tracking
URI (wrong when two stores are used at once). This module gives one typed view
and resolves logged models through its own client.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparktf.errors import RegistryError
from sparktf.registry.uri import logged_model_id

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "FAILED_CHECKS_TAG",
    "FINGERPRINT_TAG",
    "METRICS_TAG",
    "MODEL_ID_TAG",
    "REPLACED_TAG",
    "REPORT_TAG",
    "RUN_ID_TAG",
    "STATUS_TAG",
    "VALIDATED_AGAINST_TAG",
    "ModelRegistry",
    "VersionInfo",
    "mlflow_errors",
]

log = logging.getLogger(__name__)

# Version tags, the "blessing" of a version (TFX's ModelBlessing as MLflow tags).
STATUS_TAG = "validation_status"  # pending | passed | failed
FAILED_CHECKS_TAG = "validation_failed_checks"  # JSON list of failed checks with their numbers
VALIDATED_AGAINST_TAG = "validated_against"  # the champion version compared with, or "none"
REPORT_TAG = "validation_report"  # where the gate report was logged
VALIDATED_AT_TAG = "validated_at"
RUN_ID_TAG = "run_id"
MODEL_ID_TAG = "model_id"
FINGERPRINT_TAG = "data_fingerprint"
METRICS_TAG = "metrics"  # JSON of the overall evaluation metrics at registration
REPLACED_TAG = "replaced_version"  # set on promotion: the champion this version replaced, or "none"
PROMOTED_AT_TAG = "promoted_at"
ROLLED_BACK_AT_TAG = "rolled_back_at"
ROLLED_BACK_TO_TAG = "rolled_back_to"

STATUSES = ("pending", "passed", "failed")

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
_RUNS_URI = re.compile(r"^runs:/([^/]+)/(.+)$")


@contextmanager
def mlflow_errors(action: str, tracking_uri: str, *, ignore: tuple[str, ...] = (), **context: Any) -> Iterator[None]:
    """Turn MLflow's exceptions inside the block into a :class:`RegistryError`.

    Args:
        action: what was being done, e.g. ``"Setting alias champion on m v3"``.
        tracking_uri: the store, named in the message.
        ignore: MLflow error codes that are expected and end the block quietly
            (``RESOURCE_ALREADY_EXISTS`` when creating what may exist).
        **context: structured details kept on the error (model, version, alias).
    """
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ignore:
            return
        first = str(exc.message if hasattr(exc, "message") else exc).strip().splitlines()
        raise RegistryError(
            f"{action} failed at {tracking_uri}: {first[0] if first else type(exc).__name__} "
            f"({getattr(exc, 'error_code', 'error')}).",
            hint="Check tracking.tracking_uri (is the server up?) and the model name; "
            "`sparktf models` lists what the registry holds.",
            tracking_uri=tracking_uri,
            **context,
        ) from None


@dataclass(frozen=True)
class VersionInfo:
    """One version of a registered model, as the registry holds it now.

    Attributes:
        name: the registered model.
        version: its version number.
        run_id: the MLflow run that trained it.
        source: where its files live (the logged model's artifact URI).
        aliases: the aliases pointing at it (``champion``, ``previous``).
        tags: its version tags (validation status, metrics, fingerprint...).
        created_ms: creation time, milliseconds since the epoch.
    """

    name: str
    version: int
    run_id: str
    source: str
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    created_ms: int = 0

    @property
    def uri(self) -> str:
        """``models:/name/<version>``: this exact version, whatever the aliases do later."""
        return f"models:/{self.name}/{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def status(self) -> str:
        """``pending``, ``passed``, ``failed``, or ``unvalidated`` for versions made outside sparktf."""
        return self.tags.get(STATUS_TAG, "unvalidated")

    @property
    def metrics(self) -> dict[str, float]:
        """The overall metrics recorded at registration (empty when none were)."""
        try:
            raw = json.loads(self.tags.get(METRICS_TAG, "{}"))
        except json.JSONDecodeError:
            return {}
        out: dict[str, float] = {}
        for key, value in raw.items() if isinstance(raw, dict) else ():
            try:
                out[str(key)] = float(value)
            except (TypeError, ValueError):
                continue
        return out

    @property
    def model_id(self) -> str:
        return self.tags.get(MODEL_ID_TAG, "")

    def artifact(self, kind: str) -> str | None:
        """The URI of an extra artifact directory (``index``, ``vocab``), if one was attached."""
        return self.tags.get(f"{kind}_artifact")


def _int_version(value: Any) -> int:
    return int(str(value))


def _finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


class ModelRegistry:
    """One registered model in one MLflow store.

    Args:
        tracking_uri: the store (``sqlite:///...`` or ``http://host:5000``); the
            registry lives in the same place.
        name: the registered model (``tracking.registered_model``).

    Raises:
        RegistryError: the name has characters MLflow filters cannot quote.
    """

    def __init__(self, tracking_uri: str, name: str) -> None:
        if not _NAME.match(name):
            raise RegistryError(
                f"Registered model name {name!r} is not allowed; use letters, digits, '_', '.', '-'.",
                hint="Set tracking.registered_model to such a name.",
            )
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.name = name
        self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def __repr__(self) -> str:
        return f"ModelRegistry({self.tracking_uri!r}, {self.name!r})"

    def _errors(self, action: str, *, ignore: tuple[str, ...] = (), **context: Any) -> Any:
        return mlflow_errors(action, self.tracking_uri, ignore=ignore, model=self.name, **context)

    # ----------------------------------------------------------------- reading

    def _registered_model(self) -> Any | None:
        model = None
        with self._errors(f"Reading registered model {self.name!r}", ignore=("RESOURCE_DOES_NOT_EXIST",)):
            model = self.client.get_registered_model(self.name)
        return model

    def exists(self) -> bool:
        """Whether the registered model exists yet."""
        return self._registered_model() is not None

    def aliases(self) -> dict[str, int]:
        """``{alias: version}`` of the registered model (empty when it does not exist)."""
        model = self._registered_model()
        if model is None:
            return {}
        return {str(a): _int_version(v) for a, v in (model.aliases or {}).items()}

    def get(self, version: int | str) -> VersionInfo:
        """One version.

        Raises:
            RegistryError: it does not exist.
        """
        with self._errors(f"Reading {self.name} v{version}", version=str(version)):
            mv = self.client.get_model_version(self.name, str(version))
        return self._info(mv, tuple(mv.aliases or ()))

    def by_alias(self, alias: str) -> VersionInfo | None:
        """The version ``alias`` points at, or ``None`` when the alias is not set."""
        version = self.aliases().get(alias)
        return None if version is None else self.get(version)

    def versions(self) -> list[VersionInfo]:
        """Every version, newest first, with its aliases."""
        if not self.exists():
            return []
        by_version: dict[int, list[str]] = {}
        for alias, version in self.aliases().items():
            by_version.setdefault(version, []).append(alias)
        out: list[VersionInfo] = []
        token: str | None = None
        with self._errors(f"Listing the versions of {self.name!r}"):
            while True:
                page = self.client.search_model_versions(
                    filter_string=f"name = '{self.name}'", max_results=1000, page_token=token
                )
                for mv in page:
                    v = _int_version(mv.version)
                    out.append(self._info(mv, tuple(sorted(by_version.get(v, ())))))
                token = page.token
                if not token:
                    break
        return sorted(out, key=lambda info: info.version, reverse=True)

    def latest(self, status: str | None = None) -> VersionInfo | None:
        """The newest version, or the newest with ``validation_status == status``."""
        for info in self.versions():
            if status is None or info.status == status:
                return info
        return None

    def _info(self, mv: Any, aliases: tuple[str, ...]) -> VersionInfo:
        return VersionInfo(
            name=str(mv.name),
            version=_int_version(mv.version),
            run_id=str(mv.run_id or ""),
            source=str(mv.source or ""),
            aliases=aliases,
            tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
            created_ms=int(mv.creation_timestamp or 0),
        )

    # ----------------------------------------------------------------- writing

    def ensure_registered_model(self, description: str = "") -> None:
        """Create the registered model unless it exists (safe when two processes race)."""
        if self.exists():
            return
        with self._errors(f"Creating registered model {self.name!r}", ignore=("RESOURCE_ALREADY_EXISTS",)):
            self.client.create_registered_model(self.name, description=description or None)

    def register(
        self,
        model_uri: str,
        *,
        run_id: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        data_fingerprint: str = "",
        artifacts: Mapping[str, str] | None = None,
        description: str = "",
    ) -> VersionInfo:
        """Register a trained model as a new version with ``validation_status=pending``.

        Args:
            model_uri: a logged model (``models:/m-...``) or ``runs:/<run_id>/<path>``.
            run_id: the training run; defaults to the logged model's source run.
            metrics: its evaluation metrics; the finite overall ones go into the
                ``metrics`` tag (the full evaluation stays in the run).
            data_fingerprint: the fingerprint of the data it was trained and
                evaluated on (``data_fingerprint`` tag); ``unknown`` when empty.
            artifacts: ``{kind: directory}`` uploaded with the model (see the module
                docstring), e.g. ``{"vocab": "<workdir>/data/features/vocab"}``.
            description: the version's description.

        Returns:
            The new version.

        Raises:
            RegistryError: the model URI cannot be resolved or MLflow refused.
        """
        source, model_id, run_id = self._resolve_source(model_uri, run_id)
        self.ensure_registered_model(
            "Recommenders trained by sparktf; the champion alias is moved only by the validation gate."
        )
        tags = {
            STATUS_TAG: "pending",
            RUN_ID_TAG: run_id,
            MODEL_ID_TAG: model_id,
            FINGERPRINT_TAG: data_fingerprint or "unknown",
            METRICS_TAG: json.dumps(_finite_metrics(metrics or {}), sort_keys=True),
        }
        with self._errors(f"Registering {model_uri} as a version of {self.name!r}"):
            mv = self.client.create_model_version(
                self.name,
                source,
                run_id=run_id or None,
                tags=tags,
                description=description or None,
                model_id=model_id or None,
            )
        info = self._info(mv, ())
        if run_id:
            with self._errors(f"Tagging run {run_id} with {info.label}", version=str(info.version)):
                self.client.set_tag(run_id, "sparktf.registered_version", f"{self.name}/{info.version}")
        if artifacts:
            info = self.attach_artifacts(info.version, artifacts)
        return info

    def _resolve_source(self, model_uri: str, run_id: str | None) -> tuple[str, str, str]:
        """(source, model_id, run_id) of a model URI, resolved through this store."""
        model_id = logged_model_id(model_uri)
        if model_id is not None:
            with self._errors(f"Reading logged model {model_uri}"):
                model = self.client.get_logged_model(model_id)
            # The artifact location, not models:/m-..., so the store never resolves
            # the model through the process-global tracking URI.
            return str(model.artifact_location), model_id, run_id or str(model.source_run_id or "")
        runs = _RUNS_URI.match(model_uri)
        if runs:
            rid, path = runs.group(1), runs.group(2).strip("/")
            with self._errors(f"Reading run {rid} of {model_uri}"):
                root = str(self.client.get_run(rid).info.artifact_uri)
            return f"{root.rstrip('/')}/{path}", "", run_id or rid
        raise RegistryError(
            f"Cannot register {model_uri!r}: expected a logged model URI (models:/m-...) or runs:/<run_id>/<path>.",
            hint="Register what RunTracker.log_model returned.",
            model_uri=model_uri,
        )

    def attach_artifacts(self, version: int | str, artifacts: Mapping[str, str]) -> VersionInfo:
        """Upload directories into a version's model files, ``sparktf/<kind>/``, and tag them.

        Args:
            version: the version.
            artifacts: ``{kind: directory}``; ``kind`` is lower-case letters, digits, ``_``.

        Raises:
            RegistryError: a kind is malformed, a local directory is missing, or the
                upload failed.
        """
        info = self.get(version)
        tags: dict[str, str] = {}
        for kind, path in artifacts.items():
            if not _KIND.match(kind):
                raise RegistryError(
                    f"Artifact kind {kind!r} for {info.label} is not allowed; use lower-case letters, digits, '_'."
                )
            if "://" in path and not path.startswith("file://"):
                tags[f"{kind}_artifact"] = path
                tags[f"{kind}_artifact_note"] = "not copied: not on the local disk; the URI is a reference only"
                log.warning("%s: %s artifact at %s is remote; recorded, not copied", info.label, kind, path)
                continue
            local = path.removeprefix("file://")
            if not os.path.isdir(local):
                raise RegistryError(
                    f"The {kind} artifact directory {local} for {info.label} does not exist.",
                    hint="Run the stage that writes it first, or leave it out.",
                    version=str(info.version),
                )
            target = f"sparktf/{kind}"
            with self._errors(f"Uploading {local} as {target} of {info.label}", version=str(info.version)):
                if info.model_id:
                    self.client.log_model_artifacts(info.model_id, local, target)
                else:
                    self._log_into_run_model(info, local, target)
            tags[f"{kind}_artifact"] = f"{info.source.rstrip('/')}/{target}"
        self.set_tags(info.version, tags)
        return self.get(info.version)

    def _log_into_run_model(self, info: VersionInfo, local: str, target: str) -> None:
        # A runs:/ model: its files are a folder of the run's artifacts.
        run = self.client.get_run(info.run_id)
        root = str(run.info.artifact_uri).rstrip("/")
        if not info.source.startswith(root):
            raise RegistryError(
                f"{info.label} comes from {info.source}, outside run {info.run_id}'s artifacts; cannot attach files.",
                version=str(info.version),
            )
        prefix = info.source[len(root) :].strip("/")
        self.client.log_artifacts(info.run_id, local, f"{prefix}/{target}" if prefix else target)

    def set_tags(self, version: int | str, tags: Mapping[str, str]) -> None:
        """Set version tags (values longer than MLflow's 100,000 characters are cut, saying so)."""
        for key, value in tags.items():
            text = str(value)
            if len(text) > 100_000:
                text = text[:99_900] + f"... [cut: {len(text)} characters in all]"
            with self._errors(f"Setting tag {key} on {self.name} v{version}", version=str(version)):
                self.client.set_model_version_tag(self.name, str(version), key, text)

    def set_alias(self, alias: str, version: int | str) -> None:
        with self._errors(f"Pointing alias {alias!r} of {self.name!r} at v{version}", alias=alias):
            self.client.set_registered_model_alias(self.name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        with self._errors(f"Deleting alias {alias!r} of {self.name!r}", alias=alias):
            self.client.delete_registered_model_alias(self.name, alias)


def now_iso() -> str:
    """UTC now as ``2026-01-31T12:00:00Z`` (for the ``*_at`` tags)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
