"""grid: every (architecture, method, seed) point as a namespace over the one method template."""
