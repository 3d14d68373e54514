"""Zhou et al. (2019) / Frankle & Carbin (2019): iterative pruning with mask-1 and mask-0 actions."""
