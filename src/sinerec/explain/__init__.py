"""Looking inside a trained SINE: concepts, interests and the paper's NMI analysis.

One module per concern, read in this order:

- :mod:`~sinerec.explain.nmi`: NMI between a clustering of items and their (multi-label) categories,
  and its chance level; pure numpy.
- :mod:`~sinerec.explain.collapse`: signs that the concept pool collapsed; pure numpy.
- :mod:`~sinerec.explain.concepts`: functions of a loaded SINE run (activations, the concept table, user
  explanations, the concepts' NMI).
- :mod:`~sinerec.explain.report`: the whole analysis (``explain_run``) and the report on disk
  (``write_report``), rendered by :mod:`~sinerec.explain.figures` (PNGs) and :mod:`~sinerec.explain.page`
  (the self-contained HTML).

Every public name is re-exported here: ``from sinerec.explain import write_report``.
"""

from __future__ import annotations

from sinerec.explain.collapse import collapse_warnings, duplicate_prototypes
from sinerec.explain.concepts import (
    Activations,
    concept_nmi,
    concept_table,
    has_concepts,
    interests_expressed,
    nearest_concepts,
    require_sine,
    usage_histogram,
    user_activations,
    user_explanations,
)
from sinerec.explain.nmi import (
    MULTILABEL_RULE,
    NMI_NORMALISATION,
    RandomNMI,
    entropy,
    expand_multilabel,
    item_nmi,
    nmi,
    random_assignment_nmi,
)
from sinerec.explain.report import explain_run, write_report

__all__ = [
    "NMI_NORMALISATION", "MULTILABEL_RULE", "RandomNMI", "Activations", "nmi", "entropy", "expand_multilabel",
    "item_nmi", "random_assignment_nmi", "concept_nmi", "duplicate_prototypes", "collapse_warnings", "nearest_concepts",
    "user_activations", "concept_table", "user_explanations", "explain_run", "write_report", "require_sine",
    "has_concepts", "interests_expressed", "usage_histogram",
]
