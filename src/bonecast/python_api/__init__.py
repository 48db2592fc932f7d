"""The Python API behind ``import bonecast`` (one module per idea).

:mod:`~bonecast.python_api.populations` (who is simulated), :mod:`~bonecast.python_api.regimens`
(what every patient is given), :mod:`~bonecast.python_api.dose_events` (per-patient dosing
records), :mod:`~bonecast.python_api.simulation` (:func:`simulate` and its :class:`Result`) and
:mod:`~bonecast.python_api.trials` (trial specs and single-patient assessment). Users import the
names from :mod:`bonecast` itself.
"""
