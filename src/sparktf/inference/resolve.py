"""Find the model export a stage should use: a registry URI, a path, or the latest export.

A model reference is resolved once, on the driver, to a numbered export directory
(``<base>/<version>/`` of :func:`~sparktf.models.export.export_model`) and a version
label that goes into every output row, so a batch job uses one model version
from its first row to its last even if the ``champion`` alias moves meanwhile.

* ``models:/name@alias``, ``models:/name/<version>``, ``models:/name/latest``: the
  registered pyfunc model's ``savedmodel`` artifact (the export), downloaded once
  into ``download_root/<name>-v<version>/``; label ``name/<version>``.
* a directory holding ``saved_model.pb``: that export; label ``<kind>/<dirname>``.
* a directory of numbered versions: the highest one.
* nothing: the registry's champion when there is one, else the latest local export
  under ``<workdir>/models/<kind>/export/`` (where the train stage writes) or
  ``<workdir>/models/<kind>/`` (see :func:`resolve_default`).

Why our own code: MLflow resolves URIs to a pyfunc model, but batch inference and
the index need the SavedModel directory inside it, a stable version label, and
the local-export fallback before any registry exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sparktf.errors import ModelError, RegistryError
from sparktf.registry.uri import is_model_uri, parse_model_uri

__all__ = [
    "ModelRef",
    "fingerprint",
    "latest_export",
    "read_item_vectors",
    "resolve_default",
    "resolve_model",
]


@dataclass(frozen=True)
class ModelRef:
    """A resolved model.

    Attributes:
        path: the local export directory (holds ``saved_model.pb`` and ``assets.extra/``).
        version: the label written into outputs (``name/<version>`` or ``<kind>/<version>``).
        uri: what was asked for (a ``models:/`` URI or a path).
        run_id: the MLflow run that produced it, when known.
    """

    path: str
    version: str
    uri: str
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latest_export(base: str) -> str | None:
    """The highest numbered ``<base>/<n>/`` that holds a SavedModel, or None."""
    if not os.path.isdir(base):
        return None
    versions = [
        int(name)
        for name in os.listdir(base)
        if name.isdigit() and os.path.exists(os.path.join(base, name, "saved_model.pb"))
    ]
    return os.path.join(base, str(max(versions))) if versions else None


def _export_meta(path: str) -> dict[str, Any]:
    file = os.path.join(path, "assets.extra", "sparktf.json")
    try:
        with open(file, encoding="utf-8") as fh:
            meta: dict[str, Any] = json.load(fh)
    except FileNotFoundError:
        raise ModelError(
            f"{path} has a SavedModel but no {file}; it was not written by sparktf's export_model.",
            hint="Export the model with sparktf.models.export_model.",
        ) from None
    return meta


def _local_ref(path: str, uri: str) -> ModelRef:
    meta = _export_meta(path)
    # The train stage stores its TrainSpec (with the run id) in the export's metadata.
    spec = meta.get("spec")
    run_id = meta.get("mlflow_run_id") or meta.get("run_id") or (spec.get("run_id") if isinstance(spec, dict) else None)
    return ModelRef(
        path=os.path.abspath(path),
        version=f"{meta.get('kind', 'model')}/{os.path.basename(os.path.normpath(path))}",
        uri=uri,
        run_id=str(run_id) if run_id else None,
    )


def resolve_model(spec: str, *, tracking_uri: str | None = None, download_root: str | None = None) -> ModelRef:
    """Resolve a ``models:/`` URI or an export path.

    Args:
        spec: ``models:/name@alias``, ``models:/name/<version>``, an export directory,
            or a base directory of numbered exports.
        tracking_uri: the MLflow store of a ``models:/`` URI.
        download_root: where registry models are downloaded (default: a temporary directory).

    Raises:
        RegistryError: the name, version or alias is not in the registry, or the model
            has no ``savedmodel`` artifact.
        ModelError: the path holds no export.
    """
    if is_model_uri(spec):
        return _resolve_registry(spec, tracking_uri, download_root)
    path = spec.removeprefix("file://")
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return _local_ref(path, spec)
    latest = latest_export(path)
    if latest is not None:
        return _local_ref(latest, spec)
    raise ModelError(
        f"No model export at {path!r}: neither {path}/saved_model.pb nor a numbered version directory with one.",
        hint="Pass an export directory (<base>/<version>/), its base directory, or a models:/name@alias URI.",
    )


def _resolve_registry(uri: str, tracking_uri: str | None, download_root: str | None) -> ModelRef:
    parsed = parse_model_uri(uri, allow_path=False)
    name, alias, version = parsed.name, parsed.alias, parsed.version
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        if alias:
            mv = client.get_model_version_by_alias(name, alias)
        elif version == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise RegistryError(f"Registered model {name!r} has no versions (asked for {uri}).")
            mv = max(versions, key=lambda v: int(v.version))
        else:
            mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(
            f"Cannot resolve {uri} in the registry at {tracking_uri or mlflow.get_tracking_uri()}: {exc.message}",
            hint="List versions and aliases with `sparktf models`; promote one with `sparktf promote`.",
        ) from None
    root = download_root or tempfile.mkdtemp(prefix="sparktf-models-")
    target = os.path.join(root, f"{name}-v{mv.version}")
    if not os.path.exists(os.path.join(target, "saved_model.pb")):
        _download_savedmodel(f"models:/{name}/{mv.version}", tracking_uri, root, target)
    return ModelRef(path=target, version=f"{name}/{mv.version}", uri=uri, run_id=mv.run_id)


def _download_savedmodel(uri: str, tracking_uri: str | None, root: str, target: str) -> None:
    import mlflow
    from mlflow.models import Model

    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".download-", dir=root)
    try:
        # From the version's storage location, as the server's RegistrySource does: MLflow's
        # models:/ artifact repository asks the process-wide registry whatever registry_uri it
        # is given, so in a fresh process (`sparktf experiment estimate --policy models:/...`)
        # it looked in ./mlflow.db and failed.
        name, _, version = uri.removeprefix("models:/").rpartition("/")
        client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        location = client.get_model_version_download_uri(name, version)
        local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=staging, tracking_uri=tracking_uri)
        flavor = Model.load(local).flavors.get("python_function", {})
        rel = (flavor.get("artifacts") or {}).get("savedmodel", {}).get("path")
        source = os.path.join(local, rel) if rel else ""
        if not rel or not os.path.exists(os.path.join(source, "saved_model.pb")):
            raise RegistryError(
                f"{uri} has no 'savedmodel' artifact holding a SavedModel (python_function artifacts: "
                f"{sorted(flavor.get('artifacts') or {})}).",
                hint="Register models logged by sparktf's RunTracker.log_model.",
            )
        # A rename makes the download appear whole or not at all to a concurrent reader.
        if not os.path.exists(target):
            os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_default(
    *,
    models_dir: str,
    kinds: Sequence[str],
    registered_model: str | None,
    alias: str,
    tracking_uri: str | None,
    download_root: str | None,
) -> tuple[ModelRef, str]:
    """The model a stage uses when none is configured, and a sentence saying why.

    The registry's ``registered_model@alias`` when the registry has it, else the
    latest export under ``<models_dir>/<kind>/`` for the first of ``kinds`` that has one.

    Raises:
        ModelError: neither exists.
    """
    registry_note = "no registry was given"
    if registered_model:
        try:
            ref = _resolve_registry(f"models:/{registered_model}@{alias}", tracking_uri, download_root)
            return ref, f"the registry's {registered_model}@{alias} (version {ref.version})"
        except RegistryError as exc:
            registry_note = f"the registry has no {registered_model}@{alias} ({exc.message.splitlines()[0]})"
    for kind in kinds:
        # The train stage writes <kind>/export/<n>/; exports made by hand often sit at <kind>/<n>/.
        for base in (os.path.join(models_dir, kind, "export"), os.path.join(models_dir, kind)):
            latest = latest_export(base)
            if latest is not None:
                return _local_ref(latest, latest), f"the latest local export {latest}, because {registry_note}"
    raise ModelError(
        f"No model to use: {registry_note}, and no export under {models_dir}/<kind>/export/<version>/ "
        f"(or {models_dir}/<kind>/<version>/) for kinds {', '.join(kinds)}.",
        hint="Run `sparktf train` (and `sparktf promote`), or set index.model to an export path or models:/ URI.",
    )


def read_item_vectors(path: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Item ids [N], item embeddings [N, D] and the export's metadata, without TensorFlow."""
    extra = os.path.join(path, "assets.extra")
    try:
        with open(os.path.join(extra, "item_ids.txt"), encoding="utf-8") as fh:
            ids = np.asarray([line.rstrip("\n") for line in fh if line.rstrip("\n")], dtype=object)
        emb = np.load(os.path.join(extra, "item_embeddings.npy"), allow_pickle=False)
    except FileNotFoundError as exc:
        raise ModelError(
            f"The export at {path} lacks {exc.filename}.", hint="Re-export the model with export_model."
        ) from None
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ModelError(
            f"The export at {path} has {len(ids)} item ids but item embeddings of shape {emb.shape}.",
            hint="Re-export the model with export_model.",
        )
    return ids, emb, _export_meta(path)


def fingerprint(ids: np.ndarray, embeddings: np.ndarray) -> str:
    """A short hash of a catalogue's ids and vectors: equal iff an index fits a model."""
    h = hashlib.sha256()
    h.update("\n".join(str(x) for x in ids.tolist()).encode("utf-8"))
    h.update(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]
