"""The web service: REST API under ``/api/v1`` (bearer tokens), ``/health`` and CDS Hooks.

Run it with ``bonecast serve --database sqlite:///bonecast.db``, or build it with
:func:`create_app`. Interfaces call :mod:`bonecast.services`. Not a medical device.
"""

from bonecast.api.app import create_app

__all__ = ["create_app"]
