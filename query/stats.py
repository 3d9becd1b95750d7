"""Statistics for experiment comparison, in plain Python (no SciPy at run time)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class ProportionTest:
    lift: float  # relative change of the variant's rate against the control's
    difference: float  # variant rate - control rate
    ci_low: float  # confidence interval of the difference
    ci_high: float
    z: float
    p_value: float  # two-sided, pooled two-proportion z-test


def two_proportion_test(control_conversions: int, control_n: int, variant_conversions: int, variant_n: int,
                        confidence: float = 0.95) -> ProportionTest:
    """Compare a variant's conversion rate with the control's.

    The p-value uses the pooled standard error (the null hypothesis says the rates are equal);
    the interval of the difference uses the unpooled one, as is usual for each purpose.
    """
    if control_n <= 0 or variant_n <= 0:
        return ProportionTest(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    p1, p2 = control_conversions / control_n, variant_conversions / variant_n
    difference = p2 - p1
    pooled = (control_conversions + variant_conversions) / (control_n + variant_n)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / control_n + 1 / variant_n))
    if se_pooled == 0:
        z, p_value = 0.0, 1.0
    else:
        z = difference / se_pooled
        p_value = 2 * (1 - NormalDist().cdf(abs(z)))
    se = math.sqrt(p1 * (1 - p1) / control_n + p2 * (1 - p2) / variant_n)
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * se
    lift = difference / p1 if p1 else math.nan
    return ProportionTest(lift, difference, difference - half, difference + half, z, p_value)
