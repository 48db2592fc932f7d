"""Guideline rule sets as data, and the small evaluator that applies them
(docs/clinical/aibl-algorithm.md section 1).

The rule sets live in ``data/guidelines.yaml``: ``aibl-2025`` (default; the 2025 update of the
AIBL joint position statement, whose full text could not be read, so it keeps the 2017 structure
with the UNVERIFIED 2025 changes as settings) and ``aibl-2017``, each with the general
osteoporosis overlay (prior hip/vertebral fracture, T <= -2.5, FRAX at or above the US
thresholds) and the handling of premenopausal women on ovarian suppression (Z < -2.0 or
T < -1.0, expert-group thresholds). Every threshold is a named setting with unit, source and
verification tag.

Evaluation of a rule set against a patient's :class:`Facts`:

1. every risk factor whose condition holds is counted (``risk_factor_count``; the T-score one is
   left out of ``other_risk_factor_count``);
2. the decision rules are tried in order and the first that holds decides;
3. every advice rule that holds fires (``bta_recommended`` tells whether the decision calls for
   bone-directed therapy);
4. the agents come from the first agent list of the deciding rule whose condition holds (the
   list ``current`` stands for the patient's current bone-directed treatments), those whose
   ``first_when`` holds first.

Every rule that fired is in the trace with its source and the settings it used.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bonecast.clinical._data import Sourced, Verification, read_data
from bonecast.simulation import DRUGS, Route

Decision = Literal["start_bta", "denosumab_transition", "monitor", "get_dxa", "general_pathway"]
BTA_DECISIONS: frozenset[str] = frozenset({"start_bta", "denosumab_transition"})
"""Decisions that call for bone-directed (bone-protective) therapy."""

Severity = Literal["info", "warning", "critical"]
DEFAULT_RULE_SET = "aibl-2025"
CURRENT_AGENTS = "current"


@dataclass(frozen=True)
class Facts:
    """What rules may ask about a patient; ``None`` = unknown. Units are in the names.

    ``lowest_t_score``/``lowest_z_score`` are the classification values of the latest scan;
    ``t_score_diagnostic`` says whether WHO T-score categories apply (postmenopausal women, men
    >= 50); ``annual_bmd_loss_pct`` is the largest real (>= LSC) loss between the last two
    comparable scans, annualised, positive for a loss; ``frax_*`` are FRAX values after the
    published adjustments; ``btm_*`` summarise the turnover-marker response; ``on_testosterone``
    is testosterone replacement taken or planned (men).
    """

    male: bool
    premenopausal: bool
    postmenopausal: bool
    age_years: float
    bmi_kg_m2: float | None
    on_ai: bool
    ovarian_suppression: bool
    t_score_diagnostic: bool
    lowest_t_score: float | None
    lowest_z_score: float | None
    family_history_hip_fracture: bool
    fragility_fracture_after_50: bool
    prior_vertebral_fracture: bool
    prior_hip_fracture: bool
    oral_glucocorticoids_over_6_months: bool
    smoker_current_or_past: bool
    frax_major_osteoporotic_pct: float | None
    frax_hip_pct: float | None
    on_bta: bool
    on_oral_bisphosphonate: bool
    denosumab_stopping: bool
    follow_on_bisphosphonate_planned: bool
    significant_bmd_loss: bool
    annual_bmd_loss_pct: float | None
    btm_non_response: bool
    btm_response_known: bool
    vitamin_d_ng_ml: float | None
    egfr_ml_min: float | None
    high_recurrence_risk: bool
    on_testosterone: bool = False


DERIVED_FACTS = ("risk_factor_count", "other_risk_factor_count", "bta_recommended")
FACT_NAMES = frozenset(f.name for f in fields(Facts)) | frozenset(DERIVED_FACTS)

FactValue = float | bool | None


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FactTest(_Data):
    """``fact`` is true / false / missing, or compares with a setting (``op`` and ``setting``)."""

    fact: str
    op: Literal["is_true", "is_false", "missing", "<", "<=", ">", ">="] = "is_true"
    setting: str | None = None


class FlagTest(_Data):
    """A true/false setting is true."""

    flag: str


class AllOf(_Data):
    """Every condition holds."""

    all_: list[Condition] = Field(alias="all")


class AnyOf(_Data):
    """At least one condition holds."""

    any_: list[Condition] = Field(alias="any")


class Not(_Data):
    """The condition does not hold."""

    not_: Condition = Field(alias="not")


Condition = FactTest | FlagTest | AllOf | AnyOf | Not


def holds(
    condition: Condition, facts: Mapping[str, FactValue], settings: Mapping[str, FactValue]
) -> bool:
    """Whether ``condition`` holds for these fact and setting values."""
    match condition:
        case AllOf():
            return all(holds(c, facts, settings) for c in condition.all_)
        case AnyOf():
            return any(holds(c, facts, settings) for c in condition.any_)
        case Not():
            return not holds(condition.not_, facts, settings)
        case FlagTest():
            return settings[condition.flag] is True
    value = facts[condition.fact]
    if condition.op == "is_true":
        return value is True
    if condition.op == "is_false":
        return value is False
    if condition.op == "missing":
        return value is None
    if value is None:
        return False
    threshold = settings[condition.setting or ""]
    assert not isinstance(threshold, bool) and threshold is not None
    compare = {
        "<": value < threshold,
        "<=": value <= threshold,
        ">": value > threshold,
        ">=": value >= threshold,
    }
    return compare[condition.op]


def _walk(condition: Condition | None) -> Iterator[FactTest | FlagTest]:
    match condition:
        case AllOf():
            for c in condition.all_:
                yield from _walk(c)
        case AnyOf():
            for c in condition.any_:
                yield from _walk(c)
        case Not():
            yield from _walk(condition.not_)
        case FactTest() | FlagTest():
            yield condition


def _template(rule: RiskFactorRule | DecisionRule | AdviceRule) -> str:
    """The text a rule shows when it fires."""
    if isinstance(rule, RiskFactorRule):
        return rule.label
    return rule.rule if isinstance(rule, DecisionRule) else rule.text


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


class Setting(Sourced):
    """A named threshold or parameter of a rule set.

    ``checked`` records a check against the published text: what was read (page, table or
    figure), when, and what it said, or that the text could not be retrieved.
    """

    value: float | bool
    unit: str
    description: str
    checked: str | None = None


class RiskFactorRule(Sourced):
    """A risk factor: counted when ``when`` holds; ``bmd`` marks the T-score risk factor."""

    id: str
    label: str
    when: Condition
    bmd: bool = False


class DecisionRule(Sourced):
    """A decision rule; the last one of a rule set has no condition (the default)."""

    id: str
    decision: Decision
    rule: str
    when: Condition | None = None
    agents: list[str] = Field(default_factory=list)


class AdviceRule(Sourced):
    """Advice given whenever ``when`` holds (always without a condition)."""

    id: str
    severity: Severity
    text: str
    when: Condition | None = None


class AgentOption(Sourced):
    """A bone-directed agent with its regimen; ``interval_days`` may name a setting."""

    drug: str
    dose_mg: float = Field(gt=0)
    route: Route
    schedule: str
    interval_days: float | str | None = None
    first_when: Condition | None = None


class AgentList(_Data):
    """Agent options for a situation (``when``), with the treatment duration."""

    duration: str
    agents: list[AgentOption]
    when: Condition | None = None


class RuleSet(_Data):
    """A versioned guideline rule set (data/guidelines.yaml)."""

    name: str
    title: str
    citation: str
    version: str
    verification: Verification
    note: str
    settings: dict[str, Setting]
    risk_factors: list[RiskFactorRule]
    decision_rules: list[DecisionRule] = Field(min_length=1)
    advice_rules: list[AdviceRule]
    agent_lists: dict[str, AgentList]

    @model_validator(mode="after")
    def _references_resolve(self) -> RuleSet:
        problems = list(self._problems())
        if problems:
            raise ValueError(f"rule set {self.name}: " + "; ".join(problems))
        return self

    def _problems(self) -> Iterator[str]:
        rules: list[RiskFactorRule | DecisionRule | AdviceRule] = [
            *self.risk_factors,
            *self.decision_rules,
            *self.advice_rules,
        ]
        ids = [rule.id for rule in rules]
        if len(ids) != len(set(ids)):
            yield f"duplicate rule ids {sorted({i for i in ids if ids.count(i) > 1})}"
        conditions = [getattr(rule, "when", None) for rule in rules]
        for agent_list in self.agent_lists.values():
            conditions.append(agent_list.when)
            conditions += [agent.first_when for agent in agent_list.agents]
        for test in (t for c in conditions for t in _walk(c)):
            if isinstance(test, FlagTest):
                if not isinstance(self._setting_value(test.flag), bool):
                    yield f"flag {test.flag!r} is not a true/false setting"
                continue
            if test.fact not in FACT_NAMES:
                yield f"unknown fact {test.fact!r}"
            numeric = test.op in ("<", "<=", ">", ">=")
            if numeric != (test.setting is not None) or (
                numeric and isinstance(self._setting_value(test.setting or ""), bool | None)
            ):
                yield f"{test.fact} {test.op}: a comparison needs a numeric setting, and only it"
        for rule in rules:
            for name in _placeholders(_template(rule)):
                if name not in self.settings and name not in FACT_NAMES:
                    yield f"{rule.id}: unknown placeholder {name!r}"
        for rule in self.decision_rules:
            for name in rule.agents:
                if name != CURRENT_AGENTS and name not in self.agent_lists:
                    yield f"{rule.id}: unknown agent list {name!r}"
        if self.decision_rules[-1].when is not None or any(
            r.when is None for r in self.decision_rules[:-1]
        ):
            yield "only the last decision rule, and it must, have no condition"
        for agent in (a for lst in self.agent_lists.values() for a in lst.agents):
            drug = DRUGS.get(agent.drug)
            if drug is None or agent.route not in drug.routes:
                yield f"agent {agent.drug} ({agent.route}) is not in the drug catalogue"
            if isinstance(agent.interval_days, str) and agent.interval_days not in self.settings:
                yield f"agent {agent.drug}: unknown setting {agent.interval_days!r}"

    def _setting_value(self, name: str) -> float | bool | None:
        setting = self.settings.get(name)
        return None if setting is None else setting.value

    def setting_values(self) -> dict[str, float | bool]:
        """Every setting's value by name."""
        return {name: setting.value for name, setting in self.settings.items()}


def rule_set_names() -> list[str]:
    """Names of the shipped rule sets."""
    return list(read_data("guidelines.yaml"))


def _raw_rule_set(name: str) -> dict[str, Any]:
    sets = read_data("guidelines.yaml")
    if name not in sets:
        raise KeyError(name)
    raw: dict[str, Any] = copy.deepcopy(sets[name])
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    base = _raw_rule_set(parent)
    return {**base, **raw, "settings": {**base["settings"], **raw.get("settings", {})}}


@cache
def load_rule_set(name: str = DEFAULT_RULE_SET) -> RuleSet:
    """A shipped rule set by name (``KeyError`` for an unknown one); cached, immutable."""
    return RuleSet.model_validate({"name": name, **_raw_rule_set(name)})


class Agent(BaseModel):
    """A recommended agent with dose, route, interval and the source of the regimen."""

    model_config = ConfigDict(frozen=True)

    drug: str
    dose_mg: float
    route: Route
    interval_days: float | None
    schedule: str
    duration: str
    source: str
    verification: Verification


class Advice(BaseModel):
    """One piece of advice (a card): severity, text and the rule that gave it."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    severity: Severity
    text: str
    source: str
    verification: Verification


class TraceEntry(BaseModel):
    """A rule that fired, with what it said, its source and the settings it used."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    kind: Literal["risk_factor", "decision", "advice"]
    text: str
    source: str
    verification: Verification
    settings: dict[str, float | bool] = Field(default_factory=dict)


class GuidelineResult(BaseModel):
    """What a rule set concluded for one patient."""

    model_config = ConfigDict(frozen=True)

    rule_set: str
    decision: Decision
    decision_rule: TraceEntry
    risk_factors_present: list[str]
    agents: list[Agent]
    advice: list[Advice]
    trace: list[TraceEntry]

    @property
    def start_bone_protective_therapy(self) -> bool:
        """Whether the decision calls for bone-directed therapy (started or continued)."""
        return self.decision in BTA_DECISIONS


def _shown(value: FactValue, unit: str | None = None) -> str:
    """A fact (no unit: one decimal) or a setting (whole numbers bare, except scores)."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "unknown"}[value]
    whole_setting = unit is not None and unit not in ("T-score", "Z-score") and value.is_integer()
    if isinstance(value, int) or whole_setting:
        return f"{value:.0f}"
    return f"{value:.1f}"


def _render(template: str, rule_set: RuleSet, facts: Mapping[str, FactValue]) -> str:
    values = {name: _shown(facts[name]) for name in _placeholders(template) if name in facts}
    for name in _placeholders(template):
        if name in rule_set.settings:
            setting = rule_set.settings[name]
            values[name] = _shown(setting.value, setting.unit)
    return template.format(**values)


def _settings_used(
    rule_set: RuleSet, condition: Condition | None, template: str
) -> dict[str, float | bool]:
    names = [t.setting if isinstance(t, FactTest) else t.flag for t in _walk(condition)]
    names += _placeholders(template)
    return {name: rule_set.settings[name].value for name in names if name in rule_set.settings}


def _agents(
    rule_set: RuleSet,
    rule: DecisionRule,
    facts: Mapping[str, FactValue],
    current: Sequence[Agent],
) -> list[Agent]:
    settings = rule_set.setting_values()
    for name in rule.agents:
        if name == CURRENT_AGENTS:
            return list(current)
        options = rule_set.agent_lists[name]
        if options.when is not None and not holds(options.when, facts, settings):
            continue
        ordered = sorted(
            options.agents,
            key=lambda a: not (a.first_when is not None and holds(a.first_when, facts, settings)),
        )
        return [
            Agent(
                drug=a.drug,
                dose_mg=a.dose_mg,
                route=a.route,
                interval_days=float(settings[a.interval_days])
                if isinstance(a.interval_days, str)
                else a.interval_days,
                schedule=a.schedule,
                duration=options.duration,
                source=a.source,
                verification=a.verification,
            )
            for a in ordered
        ]
    return []


def evaluate(
    rule_set: RuleSet, facts: Facts, current_agents: Sequence[Agent] = ()
) -> GuidelineResult:
    """Apply ``rule_set`` to ``facts``; ``current_agents`` fills the ``current`` agent list."""
    settings = rule_set.setting_values()
    values: dict[str, FactValue] = asdict(facts)
    trace: list[TraceEntry] = []

    def fire(rule: RiskFactorRule | DecisionRule | AdviceRule, kind: Any) -> TraceEntry:
        template = _template(rule)
        entry = TraceEntry(
            rule_id=rule.id,
            kind=kind,
            text=_render(template, rule_set, values),
            source=rule.source,
            verification=rule.verification,
            settings=_settings_used(rule_set, rule.when, template),
        )
        trace.append(entry)
        return entry

    present = [rf for rf in rule_set.risk_factors if holds(rf.when, values, settings)]
    for rf in present:
        fire(rf, "risk_factor")
    values["risk_factor_count"] = len(present)
    values["other_risk_factor_count"] = sum(not rf.bmd for rf in present)
    decider = next(
        r for r in rule_set.decision_rules if r.when is None or holds(r.when, values, settings)
    )
    decision_entry = fire(decider, "decision")
    values["bta_recommended"] = decider.decision in BTA_DECISIONS
    advice = [
        Advice(
            rule_id=rule.id,
            severity=rule.severity,
            text=fire(rule, "advice").text,
            source=rule.source,
            verification=rule.verification,
        )
        for rule in rule_set.advice_rules
        if rule.when is None or holds(rule.when, values, settings)
    ]
    return GuidelineResult(
        rule_set=rule_set.name,
        decision=decider.decision,
        decision_rule=decision_entry,
        risk_factors_present=[rf.id for rf in present],
        agents=_agents(rule_set, decider, values, current_agents),
        advice=advice,
        trace=trace,
    )
