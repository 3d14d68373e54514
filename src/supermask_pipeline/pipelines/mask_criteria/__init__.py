"""Zhou et al. (2019): masks of every criterion and prune step, evaluated at initialisation."""
