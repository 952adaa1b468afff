"""The Django-free core: battery physics, EMA learners, features, gradient-boosted models, compiled
boosters and the model cascade.

Nothing here imports Django or an app: the apps above call into it, and it can be imported and
tested without settings (an import-linter contract in `make test` keeps it so).
"""
