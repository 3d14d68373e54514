"""Template pipeline shared by every training method: initialise → train → evaluate → report.

Registered under a namespace per method (``dense``, ``signed_supermask``), so every
dataset of a method is ``<namespace>.<name>`` in the catalog's dataset factories.
"""
