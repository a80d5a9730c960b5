"""TLS for the Dask scheduler a run uses: ``--security`` / ``security=``.

Without it, a local cluster listens on loopback only, unencrypted: any user of the same
machine can connect to its scheduler and run code in its workers (docs/engine.md,
"Security"). On a shared machine, or with an external cluster, give certificates: Dask
then encrypts every connection and refuses peers without a certificate its CA signed.

A security setting is a :class:`distributed.security.Security`, or a path to

* a folder holding ``ca.pem``, ``cert.pem`` and ``key.pem``, or
* a YAML (or JSON) file ``{ca: PATH, cert: PATH, key: PATH}`` (paths relative to it).

The one certificate serves the scheduler, the workers and the clients.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import WorkbenchError

__all__ = ["load_security", "security_path", "tls_config"]

_FILES = ("ca", "cert", "key")


def security_path(security: Any) -> str | None:
    """The path a setting was given as (what a detached driver is passed), or None."""
    return str(Path(security).expanduser().absolute()) if isinstance(security, (str, Path)) and security else None


def _files(path: Path) -> dict[str, Path]:
    if path.is_dir():
        return {k: path / f"{k}.pem" for k in _FILES}
    import yaml

    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise WorkbenchError(f"--security {path}: cannot read it ({type(exc).__name__}); give a folder with "
                             "ca.pem, cert.pem and key.pem, or a YAML file {ca: ..., cert: ..., key: ...}") from None
    if not isinstance(spec, dict) or set(spec) != set(_FILES) or not all(isinstance(v, str) for v in spec.values()):
        raise WorkbenchError(f"--security {path}: expected exactly the keys ca, cert and key (paths), "
                             f"got {json.dumps(spec, default=str)[:80]}")
    return {k: (path.parent / v).expanduser() for k, v in spec.items()}


def load_security(security: Any) -> Any:
    """None, a ``Security`` as given, or one made from a path (see the module docstring).

    Raises :class:`WorkbenchError` in one line for a missing or malformed path or file.
    """
    if security is None or security == "":
        return None
    from distributed.security import Security

    if isinstance(security, Security):
        return security
    if not isinstance(security, (str, Path)):
        raise WorkbenchError(f"security: expected a path or a distributed.security.Security, "
                             f"got {type(security).__name__}")
    path = Path(security).expanduser()
    if not path.exists():
        raise WorkbenchError(f"--security {path}: no such file or folder")
    files = _files(path)
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise WorkbenchError(f"--security {path}: missing {', '.join(missing)}")
    ca, cert, key = (str(files[k].absolute()) for k in _FILES)
    return Security(require_encryption=True, tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key, tls_worker_cert=cert, tls_worker_key=key)


def tls_config(security: Any) -> dict[str, Any]:
    """The Dask settings that give a worker process started elsewhere the same TLS
    (a nanny in its own interpreter reads them from its inherited configuration)."""
    if security is None:
        return {}

    def pair(role: str) -> dict[str, Any]:
        return {"cert": getattr(security, f"tls_{role}_cert") or security.tls_client_cert,
                "key": getattr(security, f"tls_{role}_key") or security.tls_client_key}

    return {"comm": {"require-encryption": True,
                     "tls": {"ca-file": security.tls_ca_file, "worker": pair("worker"), "client": pair("client"),
                             "scheduler": pair("scheduler")}}}
