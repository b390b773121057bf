"""The plan: keys x store -> cached / failed / stale / new.

:func:`make_plan` expands a matrix once, computes every config's key, reads the store in one
bulk look-up and classifies each config (:func:`classify`); the :class:`Plan` it returns is
what a dry run prints and what the driver (:mod:`memento.run.driver`) runs. Planning writes
nothing and creates no store.
"""

from memento.plan.planning import LOAD_COLUMNS, Plan, State, classify, make_plan

__all__ = ["LOAD_COLUMNS", "Plan", "State", "classify", "make_plan"]
