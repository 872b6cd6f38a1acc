"""sinerec: multi-interest sequential recommendation around SINE (Tan et al., WSDM 2021).

The Python API (``sinerec.api``), imported on first use so that ``import sinerec`` stays cheap:

- :func:`fit`: train a model on a dataset name, a file or a DataFrame into a run directory -> :class:`Run`;
- :func:`load`: the :class:`Run` of a run directory;
- :class:`Run`: ``metrics``, ``recommend(history, k)``, ``recommend_users(users, k)`` (a DataFrame) and
  ``evaluate(*overrides)``.

Everything logs to the ``sinerec`` logger (``logging.getLogger("sinerec")``); it has a NullHandler, so a
library user sees nothing unless they configure logging.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Run", "__version__", "fit", "load"]

logging.getLogger("sinerec").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from sinerec.api import Run, fit, load


def __getattr__(name: str) -> Any:
    if name in ("Run", "fit", "load"):
        from sinerec import api

        return getattr(api, name)
    raise AttributeError(f"module 'sinerec' has no attribute {name!r}")
