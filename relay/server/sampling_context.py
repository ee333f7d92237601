"""The envelope's DSC against its root (sampling) project, as Relay checks it.

A transaction's ``trace`` header names the public key of the project that started the
trace. Its config is needed to trust that DSC: :func:`sampling_key` says which key to wait
for (the ingest path parks the envelope until that config is known). Then
:func:`validate_dsc` keeps the DSC when the root project is in the same organization, and
otherwise rebuilds it from the transaction (relay.normalize.dsc), keeping the sample rate.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

import msgspec

from relay.normalize.dsc import rebuild_dsc
from relay.protocol.envelope import Envelope
from relay.protocol.items import ItemType
from relay.protocol.project_config import ProjectState

__all__ = ["sampling_key", "validate_dsc"]

log = logging.getLogger(__name__)

_PUBLIC_KEY: Final = re.compile(r"^[0-9a-fA-F]{32}$")


def _transaction(envelope: Envelope) -> Any:
    for item in envelope.items:
        if item.type == ItemType.TRANSACTION:
            try:
                return msgspec.json.decode(item.payload)
            except msgspec.DecodeError:
                return None
    return None


def _has_transaction(envelope: Envelope) -> bool:
    return any(item.type == ItemType.TRANSACTION for item in envelope.items)


def sampling_key(envelope: Envelope, own_key: str) -> str | None:
    """The root project's key of a transaction envelope, when it is another project's."""
    trace = envelope.trace
    if trace is None or not _has_transaction(envelope):
        return None
    key = trace.get("public_key")
    if not isinstance(key, str) or not _PUBLIC_KEY.match(key) or key == own_key:
        return None
    return key


def validate_dsc(
    envelope: Envelope, own_key: str, state: ProjectState, sampling: ProjectState | None
) -> None:
    """Keep a trustworthy DSC; rebuild (or drop) one whose root project cannot be used.

    ``sampling`` is the root project's state (None: unknown). It is usable when enabled and
    in the organization of ``state``, the envelope's own project.
    """
    trace = envelope.trace
    if trace is None or not _has_transaction(envelope):
        return
    key = trace.get("public_key")
    if key == own_key:
        return
    if (
        sampling is not None
        and not sampling.disabled
        and sampling.organization_id == state.organization_id
    ):
        return
    dsc = rebuild_dsc(trace, _transaction(envelope), own_key)
    log.debug("root project of the trace is not usable: DSC rebuilt from the transaction")
    if dsc is None:
        del envelope.headers["trace"]
    else:
        envelope.headers["trace"] = dsc
