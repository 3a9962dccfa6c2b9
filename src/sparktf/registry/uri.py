"""The grammar of registry model URIs, in one place.

``models:/name@alias``, ``models:/name/<version>`` and ``models:/name/latest``
name a registered model's version; a trailing ``/path`` names a file inside it
(``models:/name@champion/sparktf/index``). ``models:/m-<hex>`` is an MLflow 3
logged model, outside the registry. Everything else (``runs:/...``, a path) is not
a registry URI.

:func:`sparktf.load_model`, ``sparktf serve``, batch inference, the index stage and
the config checks all parse through :func:`parse_model_uri`, so a URI one of
them accepts means the same thing to all of them.

Why our own code: MLflow parses these URIs inside private helpers
(``mlflow.store.artifact.utils.models``) that also consult the process-global
registry; we need the parts without any I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sparktf.errors import RegistryError

__all__ = [
    "ALIAS_PATTERN",
    "ModelURI",
    "is_logged_model_uri",
    "is_model_uri",
    "logged_model_id",
    "parse_model_uri",
]

#: An alias name as MLflow allows it (and TF Serving labels do).
ALIAS_PATTERN = r"[A-Za-z][A-Za-z0-9_-]*"

_REGISTRY_URI = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>" + ALIAS_PATTERN + r")|/(?P<version>\d+|latest))(?P<rest>/.*)?$"
)
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<id>m-[0-9a-fA-F]+)/?$")

_FORMS = "models:/name@alias, models:/name/<version> or models:/name/latest"


@dataclass(frozen=True)
class ModelURI:
    """A parsed registry URI: exactly one of ``alias`` and ``version`` is set.

    Attributes:
        name: the registered model.
        alias: ``champion`` in ``models:/name@champion``.
        version: a version number, or ``"latest"``.
        path: the path inside the model (``""`` for the whole model).
    """

    name: str
    alias: str | None = None
    version: int | str | None = None
    path: str = ""

    @property
    def is_latest(self) -> bool:
        return self.version == "latest"

    @property
    def fixed_version(self) -> int | None:
        """The version number of ``models:/name/<N>``; ``None`` for an alias or ``latest``."""
        return self.version if isinstance(self.version, int) else None

    def __str__(self) -> str:
        where = f"@{self.alias}" if self.alias is not None else f"/{self.version}"
        return f"models:/{self.name}{where}" + (f"/{self.path}" if self.path else "")


def is_model_uri(text: str) -> bool:
    """``models:/...`` of any kind (registry or logged model)."""
    return text.startswith("models:/")


def is_logged_model_uri(text: str) -> bool:
    """``models:/m-<hex>``: an MLflow 3 logged model, not a registry version."""
    return bool(_LOGGED_MODEL_URI.match(text))


def logged_model_id(text: str) -> str | None:
    """The ``m-<hex>`` id of a logged model URI, or ``None`` for any other text."""
    m = _LOGGED_MODEL_URI.match(text)
    return m.group("id") if m else None


def parse_model_uri(text: str, *, allow_path: bool = True) -> ModelURI:
    """Parse a registry URI.

    Args:
        text: ``models:/name@alias``, ``models:/name/<version>`` or ``models:/name/latest``,
            with an optional ``/path`` inside the model when ``allow_path``.

    Raises:
        RegistryError: ``text`` is not of one of those forms (the message names the forms).
    """
    m = _REGISTRY_URI.match(text)
    if not m or (m.group("rest") and not allow_path):
        forms = _FORMS + (" (with an optional /path inside the model)" if allow_path else "")
        raise RegistryError(
            f"Model URI {text!r} is not of the form {forms}.",
            hint="For example models:/sparktf-recommender@champion or models:/sparktf-recommender/3; "
            "an alias starts with a letter and holds letters, digits, '_' and '-'.",
            uri=text,
        )
    version = m.group("version")
    return ModelURI(
        name=m.group("name"),
        alias=m.group("alias"),
        version=None if version is None else (version if version == "latest" else int(version)),
        path=(m.group("rest") or "").strip("/"),
    )
