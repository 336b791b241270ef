"""A workaround for one moto bug, so tests see what real Route53 does.

moto refuses a CREATE whose exact change it has journaled before while any record of that
name and type exists, even when the same batch DELETEs the old record first. Real Route53
accepts DELETE + CREATE of the same weighted record in one batch (the classic atomic
change), so a rollback to weights seen before (blue 100) fails only under moto.
`StrictRoute53` in conftest.py checks what this check would have caught (a CREATE of a
record that still exists after the batch's DELETEs).
"""

from __future__ import annotations

from typing import Any

from moto.route53 import models


def allow_recreating_records() -> Any:
    """Patch moto's journal check; returns the original to restore."""
    original = models.ChangeList.__contains__
    models.ChangeList.__contains__ = lambda self, item: False  # type: ignore[method-assign]
    return original


def restore(original: Any) -> None:
    models.ChangeList.__contains__ = original  # type: ignore[method-assign]
