"""Figures and reports rendered from bonecast's result types."""

from bonecast.reports.plots import plot_trial

__all__ = ["plot_trial"]
