"""``sparktf.load_model``: the current model for downstream code, with its files.

``sparktf.load_model("models:/sparktf-recommender@champion")`` returns a
:class:`LoadedModel`: the MLflow pyfunc model (``predict(df)``, exactly what
``mlflow.pyfunc.load_model`` gives), plus the registry version it resolved to
(number, tags, validation status) and the local paths of the SavedModel export
and of the artifacts that travel with the version (``index``, ``vocab``; see
:mod:`sparktf.registry.registry`). Plain MLflow works as well:
``mlflow.pyfunc.load_model("models:/sparktf-recommender@champion")``.

The alias is resolved to a version number **once**, and that exact version is
downloaded, so the returned object never mixes the files of one version with the
tags of another even if the champion moves meanwhile.

Why our own code: ``mlflow.pyfunc.load_model`` resolves ``models:/`` URIs through
the process-global registry URI and returns no version metadata; the export and
index inside the downloaded files are sparktf's layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sparktf.errors import ModelError, RegistryError
from sparktf.registry.registry import ModelRegistry, VersionInfo, mlflow_errors
from sparktf.registry.uri import is_logged_model_uri, is_model_uri, parse_model_uri

__all__ = ["LoadedModel", "download_model", "export_dir", "load_model", "resolve_version"]


#: The name of the SavedModel among the pyfunc model's artifacts (see ``RunTracker.log_model``).
EXPORT_ARTIFACT = "savedmodel"


def export_dir(local_path: str) -> str:
    """The SavedModel export inside a downloaded pyfunc model, as its ``MLmodel`` records it.

    Raises:
        ModelError: the files are not a sparktf pyfunc model.
    """
    from mlflow.models import Model

    try:
        artifacts = Model.load(local_path).flavors["python_function"]["artifacts"]
        return os.path.join(local_path, artifacts[EXPORT_ARTIFACT]["path"])
    except (OSError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{local_path} is not a sparktf pyfunc model: its MLmodel has no python_function artifact "
            f"{EXPORT_ARTIFACT!r} ({type(exc).__name__}: {exc}).",
            hint="Register models logged by RunTracker.log_model.",
        ) from None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model loaded for use, and where it came from.

    Attributes:
        uri: the URI asked for (``models:/name@champion``).
        pyfunc: the MLflow pyfunc model (``pyfunc.predict(df)``).
        local_path: the model's files on the local disk.
        version: the registry version it resolved to; ``None`` for a URI outside
            the registry (``models:/m-...``, ``runs:/...``, a path).
    """

    uri: str
    pyfunc: Any
    local_path: str
    version: VersionInfo | None = None

    def predict(self, model_input: Any) -> Any:
        """``pyfunc.predict``: a DataFrame with ``user_id`` and ``history`` in; top-K ids,
        scores and the query embedding out (see :mod:`sparktf.training.mlflow_model`)."""
        return self.pyfunc.predict(model_input)

    @property
    def export_path(self) -> str:
        """The SavedModel export (TF Serving layout, ``assets.extra`` with the item vocabulary)."""
        return export_dir(self.local_path)

    @property
    def exported(self) -> Any:
        """The loaded export (:class:`sparktf.models.export.ExportedModel`): signature, item
        ids and item embeddings."""
        try:
            return self.pyfunc.unwrap_python_model().model
        except AttributeError:
            from sparktf.models.export import load_exported

            return load_exported(self.export_path)

    def artifact_path(self, kind: str) -> str | None:
        """The local directory of an artifact that travels with the version
        (``index``, ``vocab``), or ``None`` when none was attached."""
        path = os.path.join(self.local_path, "sparktf", kind)
        return path if os.path.isdir(path) else None

    @property
    def index_path(self) -> str | None:
        """The ANN index attached to this version, if any."""
        return self.artifact_path("index")


def resolve_version(uri: str, tracking_uri: str) -> tuple[VersionInfo, str] | None:
    """The registry version of a ``models:/name@alias`` or ``models:/name/N`` URI and the
    path inside the model it names (``""`` for the whole model); ``None`` for other URIs.

    Raises:
        RegistryError: the registered model, version or alias does not exist.
    """
    if not is_model_uri(uri) or is_logged_model_uri(uri):
        return None
    parsed = parse_model_uri(uri)
    registry = ModelRegistry(tracking_uri, parsed.name)
    if parsed.alias is not None:
        alias = parsed.alias
        info = registry.by_alias(alias)
        if info is None:
            known = ", ".join(f"{a} -> v{v}" for a, v in sorted(registry.aliases().items())) or "none"
            raise RegistryError(
                f"{uri}: alias {alias!r} of registered model {registry.name!r} is not set at {tracking_uri} "
                f"(aliases: {known}).",
                hint="Promote a model first (`sparktf promote`), or check the name and tracking.tracking_uri.",
                uri=uri,
            )
    elif parsed.is_latest:
        latest = registry.latest()
        if latest is None:
            raise RegistryError(f"{uri}: registered model {registry.name!r} has no versions at {tracking_uri}.")
        info = latest
    else:
        info = registry.get(int(str(parsed.version)))
    return info, parsed.path


def download_model(
    uri: str, *, tracking_uri: str | None = None, dst_path: str | None = None
) -> tuple[str, VersionInfo | None]:
    """Download a model's files (not loading them) and say which registry version they are.

    Local stores are read in place. Takes the URIs :func:`load_model` takes.

    Returns:
        (local directory, version or ``None`` for URIs outside the registry).

    Raises:
        RegistryError: the URI names a version or alias that does not exist.
        ModelError: the files cannot be downloaded.
    """
    import mlflow

    store = tracking_uri or mlflow.get_tracking_uri()
    resolved = resolve_version(uri, store)
    info: VersionInfo | None = None
    artifact_uri = uri
    if resolved is not None:
        info, inner = resolved
        with mlflow_errors(f"Resolving the files of {info.label}", store, model=info.name, version=info.version):
            source = ModelRegistry(store, info.name).client.get_model_version_download_uri(info.name, str(info.version))
        artifact_uri = f"{source.rstrip('/')}/{inner}" if inner else source
    elif is_logged_model_uri(uri):
        # Through this store, not the process-global one MLflow would use.
        with mlflow_errors(f"Reading logged model {uri}", store):
            artifact_uri = str(
                mlflow.MlflowClient(store).get_logged_model(uri.removeprefix("models:/").strip("/")).artifact_location
            )
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri, dst_path=dst_path, tracking_uri=store, registry_uri=store
        )
    except Exception as exc:
        raise _load_error(uri, artifact_uri, info, store, exc) from exc
    return str(local), info


def _load_error(uri: str, artifact_uri: str, info: VersionInfo | None, store: str, exc: Exception) -> ModelError:
    what = f"{info.label} ({artifact_uri})" if info else artifact_uri
    first = str(exc).splitlines()[0] if str(exc) else ""
    return ModelError(
        f"Cannot load {uri} = {what} from {store}: {type(exc).__name__}: {first}",
        hint="Check that the version's files exist (`sparktf models`) and that this Python has the "
        "model's requirements (TensorFlow, tf-keras).",
        uri=uri,
    )


def load_model(uri: str, *, tracking_uri: str | None = None, dst_path: str | None = None) -> LoadedModel:
    """Load a model for use: ``sparktf.load_model("models:/sparktf-recommender@champion")``.

    Args:
        uri: ``models:/name@alias``, ``models:/name/<version>``, ``models:/name/latest``,
            a logged model ``models:/m-...``, ``runs:/<run_id>/<path>`` or a local path.
        tracking_uri: the MLflow store; defaults to MLflow's current one
            (``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri``).
        dst_path: where to download the files; a fresh temporary directory by
            default (local stores are read in place).

    Returns:
        A :class:`LoadedModel`.

    Raises:
        RegistryError: the URI names a version or alias that does not exist.
        ModelError: the files cannot be downloaded or loaded.

    Example:
        >>> model = sparktf.load_model("models:/sparktf-recommender@champion")  # doctest: +SKIP
        >>> model.version.version, model.version.status  # doctest: +SKIP
        (7, 'passed')
        >>> model.predict(pd.DataFrame({"user_id": ["u1"], "history": [["i3", "i9"]]}))  # doctest: +SKIP
    """
    import mlflow

    store = tracking_uri or mlflow.get_tracking_uri()
    local, info = download_model(uri, tracking_uri=store, dst_path=dst_path)
    try:
        pyfunc = mlflow.pyfunc.load_model(local)
    except Exception as exc:
        raise _load_error(uri, local, info, store, exc) from exc
    return LoadedModel(uri=uri, pyfunc=pyfunc, local_path=local, version=info)
