"""Many endpoints judged at once: p-values adjusted for the family, so that one of a dozen is not declared
changed by chance far more often than the significance level says."""

from __future__ import annotations

from statsmodels.stats.multitest import multipletests


def holm_adjusted(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values of a family of tests (one per endpoint): comparing a dozen endpoints at once
    would otherwise declare one of them changed by chance far more often than the significance level says."""
    if not p_values:
        return {}
    adjusted = multipletests(list(p_values.values()), method="holm")[1]
    return {key: float(p) for key, p in zip(p_values, adjusted, strict=True)}
