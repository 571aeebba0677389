"""Statistics of a comparison over seeds: mean +- std, and paired differences with a t interval.

Two methods run with the same seeds (same label subset, data order and initialisation of the
parts neither pre-trains) form pairs; the difference per seed removes the variance the seed
adds to both. The interval of the mean difference uses Student's t distribution with n - 1
degrees of freedom (n pairs), which is exact for normally distributed differences and the usual
choice for a handful of seeds.
"""

import math
from dataclasses import dataclass
from typing import Mapping, Sequence, Tuple

__all__ = ["PairedDifference", "mean_std", "paired_difference"]


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """(mean, sample standard deviation, n - 1 in the denominator); std 0 for one value.

    Raises:
        ValueError: for no values.
    """
    if len(values) == 0:
        raise ValueError("mean_std needs at least one value")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of `treatment - baseline` over paired seeds and its confidence interval.

    Attributes:
        mean: mean difference.
        low, high: bounds of the two-sided interval at `confidence` (nan with fewer than 2
            pairs: no spread to estimate).
        p_value: two-sided p-value of the paired t-test of "mean difference = 0" (nan with fewer
            than 2 pairs; 0 or 1 when every pair differs by the same amount).
        num_pairs: seeds present in both.
        confidence: e.g. 0.95.
    """

    mean: float
    low: float
    high: float
    p_value: float
    num_pairs: int
    confidence: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (equivalently p < 1 - confidence)."""
        return self.num_pairs >= 2 and (self.low > 0.0 or self.high < 0.0)


def paired_difference(treatment: Mapping[int, float], baseline: Mapping[int, float],
                      confidence: float = 0.95) -> PairedDifference:
    """The paired difference of two methods' scores keyed by seed.

    Args:
        treatment, baseline: seed -> score; only seeds in both are paired.
        confidence: level of the two-sided interval, in (0, 1).
    Raises:
        ValueError: when no seed is in both, or for a confidence outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    seeds = sorted(set(treatment) & set(baseline))
    if not seeds:
        raise ValueError(f"No common seed to pair: {sorted(treatment)} vs {sorted(baseline)}")
    differences = [treatment[s] - baseline[s] for s in seeds]
    mean, std = mean_std(differences)
    n = len(differences)
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, math.nan, n, confidence)
    from scipy import stats

    if std == 0.0:  # every pair moved by the same amount: no sampling spread
        p_value = 1.0 if mean == 0.0 else 0.0
        return PairedDifference(mean, mean, mean, p_value, n, confidence)
    standard_error = std / math.sqrt(n)
    half_width = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * standard_error
    p_value = float(2.0 * stats.t.sf(abs(mean) / standard_error, df=n - 1))
    return PairedDifference(mean, mean - half_width, mean + half_width, p_value, n, confidence)
