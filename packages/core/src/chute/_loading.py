"""Loading an App from a ``module:attribute`` path, as the CLI receives it."""

from __future__ import annotations

import importlib
import os
import sys

from chute.app import App
from chute.errors import ConfigurationError

__all__ = ["load_app"]


def load_app(path: str) -> App:
    """Import ``module:attribute`` (``attribute`` defaults to ``app``) and return the App.

    The current directory is importable, as it is for ``python -m``.

    Raises:
        ConfigurationError: the module cannot be imported, lacks the attribute, or the
            attribute is not an App; the message says which.
    """
    module_name, _, attr = path.partition(":")
    attr = attr or "app"
    if not module_name:
        raise ConfigurationError(f"{path!r} is not an app path; expected module:attribute")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import {module_name!r} (from {path!r}): no module named {exc.name!r} "
                f"in {os.getcwd()} or on sys.path"
            ) from None
        raise
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(
                f"module {module_name!r} has no attribute {attr!r} (from {path!r})"
            ) from None
    if not isinstance(obj, App):
        raise ConfigurationError(f"{path!r} is a {type(obj).__name__}, not a chute.App")
    return obj
