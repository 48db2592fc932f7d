"""An assessment in words: each forecast plan in full, the agent and why, what the forecast says.

Used by the web page, the reports (clinician and patient) and the CLI text. Names, doses and
intervals come from the guideline's agent (checked against the drug catalogue when the rule set
loads) or, for the forecast's default agent, from :data:`bonecast.clinical.forecast.DEFAULT_AGENT`;
nothing here repeats a dose.
"""

from __future__ import annotations

from dataclasses import dataclass

from bonecast import labels
from bonecast.clinical.assessment import Assessment
from bonecast.clinical.forecast import DEFAULT_AGENT, ForecastPoint
from bonecast.clinical.guidelines import Agent
from bonecast.clinical.markers import MarkerResult

AGENT_PLANS = frozenset({"ai_plus_agent", "agent"})
"""Plans that add the first recommended agent (see :mod:`bonecast.clinical.forecast`)."""
MIN_AGENT_YEARS = 3
"""The forecast gives the added agent at least this long (years; forecast module docstring)."""


def agent_text(agent: Agent) -> str:
    """An agent in full: "zoledronic acid 4 mg into a vein (IV) every 6 months".

    The guideline's schedule follows in brackets when it says more than the interval does.
    """
    text = labels.regimen(agent.drug, agent.dose_mg, agent.route, agent.interval_days)
    schedule = labels.words(agent.schedule)
    return text if schedule == labels.interval(agent.interval_days) else f"{text} ({schedule})"


def forecast_agent(assessment: Assessment) -> Agent:
    """The agent the forecast adds: the first recommended one, else the forecast's default."""
    agents = assessment.recommendation.agents
    return agents[0] if agents else DEFAULT_AGENT


@dataclass(frozen=True)
class SiteOutlook:
    """What one plan's forecast says at one site at the horizon (T-score, 5-95 % band)."""

    site: str
    t_score: float
    t_low: float
    t_high: float
    change_vs_first_plan: float | None

    @property
    def sentence(self) -> str:
        """The outlook in words."""
        text = (
            f"{labels.site(self.site)}: T-score about {self.t_score:.1f} "
            f"(likely between {self.t_low:.1f} and {self.t_high:.1f})"
        )
        if self.change_vs_first_plan is not None and abs(self.change_vs_first_plan) >= 0.05:
            word = "higher" if self.change_vs_first_plan > 0 else "lower"
            text += f", {abs(self.change_vs_first_plan):.1f} {word} than the first plan"
        return text


@dataclass(frozen=True)
class PlanView:
    """One forecast plan in full, for people."""

    code: str
    title: str
    what: str
    agent: str | None
    duration: str | None
    why: str | None
    source: str | None
    links: list[tuple[str, str]]
    outlook: list[SiteOutlook]
    horizon_years: int


def _at_horizon(points: list[ForecastPoint], plan: str, site: str) -> ForecastPoint | None:
    chosen = [p for p in points if p.plan == plan and p.site == site]
    return max(chosen, key=lambda p: p.month) if chosen else None


def plan_views(assessment: Assessment) -> list[PlanView]:
    """Every plan of the assessment's forecast in words (empty without a forecast)."""
    details = assessment.forecast_details
    if details is None:
        return []
    agent = forecast_agent(assessment)
    recommended = bool(assessment.recommendation.agents)
    sites = list(dict.fromkeys(p.site for p in details.points))
    first = details.plans[0].name if details.plans else None
    views = []
    for plan in details.plans:
        outlook = []
        for site in sites:
            point = _at_horizon(details.points, plan.name, site)
            base = _at_horizon(details.points, first, site) if first else None
            if point is None:
                continue
            change = None if base is None or plan.name == first else point.t_score - base.t_score
            outlook.append(
                SiteOutlook(site, point.t_score, point.t_score_low, point.t_score_high, change)
            )
        adds = plan.name in AGENT_PLANS
        why = None
        rule = labels.words(assessment.recommendation.rule)
        if adds:
            why = (
                f"First agent the guideline lists for her: {rule}"
                if recommended
                else "No agent is recommended for her now; the forecast shows the usual first "
                "agent for women on an aromatase inhibitor for comparison"
            )
        views.append(
            PlanView(
                code=plan.name,
                title=labels.plan(plan.name),
                what=labels.words(plan.description),
                agent=agent_text(agent) if adds else None,
                duration=(
                    f"{agent.duration} (in the forecast: from today until the aromatase "
                    f"inhibitor stops, at least {MIN_AGENT_YEARS} years)"
                )
                if adds
                else None,
                why=why,
                source=labels.cite(agent.source) if adds else None,
                links=labels.links(agent.source) if adds else [],
                outlook=outlook,
                horizon_years=details.horizon_years,
            )
        )
    return views


def marker_verdict(result: MarkerResult) -> str:
    """A marker's change in words against its own least significant change (LSC)."""
    if result.pct_change is None:
        return "no change to judge (one result, or results from different assays)"
    if result.significant is None:
        return "cannot judge the change"
    if not result.significant:
        return f"no real change (within the {result.lsc_pct:g} % LSC)"
    direction = "fall" if result.pct_change < 0 else "rise"
    return f"real {direction} (more than the {result.lsc_pct:g} % LSC)"
