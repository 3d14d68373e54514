"""Learned supermasks (bernoulli, threshold, edge_popup, aslp) over frozen initial weights, with
prune-and-test, sampled-mask evaluation and optional fine-tuning under the fixed mask."""
