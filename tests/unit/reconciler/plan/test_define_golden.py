"""The definitions virtctl sends for new objects: golden files in tests/data/define/.

Each `<case>.in.xml` is a spec; `<case>.out.xml` is the definition a plan on an empty
host defines for it (policy commit "c0ffee"): identity derived, ownership mark and
last-applied record added. Hosts store these bytes, and the uuids and MACs derived in
them are identities existing objects already have, so a change here is a change to
what virtctl does, never a refactoring. `--regenerate-output` rewrites them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from virtctl.capabilities import parse_capabilities
from virtctl.drivers.sim.caps import CAPABILITIES_XML
from virtctl.model import Desired, DomainSpec, Live, NetworkSpec
from virtctl.reconciler.plan.actions import Define
from virtctl.reconciler.load.load import load_text
from virtctl.reconciler.plan.plan import Policy, plan
from virtctl.reconciler.plan.steps import define_xml
from virtctl.reconciler.load.validate import check_host
from virtctl.xmlutil import parse, tostring

DATA = Path(__file__).resolve().parents[3] / "data" / "define"
CASES = sorted(p.name.removesuffix(".in.xml") for p in DATA.glob("*.in.xml"))
POLICY = Policy(commit="c0ffee")


def desired_of(case: str) -> Desired:
    name = f"{case}.in.xml"
    specs = load_text((DATA / name).read_text(), source=name)
    return Desired(domains={s.name: s for s in specs if isinstance(s, DomainSpec)},
                   networks={s.name: s for s in specs if isinstance(s, NetworkSpec)})


def defined(desired: Desired) -> str:
    (define,) = [a for a in plan(desired, Live(), policy=POLICY).actions
                 if isinstance(a, Define)]
    return define.xml + "\n"


def test_cases_are_found() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize("case", CASES)
def test_definition_of_a_new_object_matches_golden(case: str, regenerate: bool) -> None:
    got = defined(desired_of(case))
    expected = DATA / f"{case}.out.xml"
    if regenerate:
        expected.write_text(got)
    assert got == expected.read_text()


@pytest.mark.parametrize("case", CASES)
def test_checking_the_specs_first_changes_no_definition(case: str) -> None:
    # check_host leaves the trees it parsed for the planner: they must be as parsed.
    desired = desired_of(case)
    check_host(desired, Live(), parse_capabilities(CAPABILITIES_XML))
    assert defined(desired) == (DATA / f"{case}.out.xml").read_text()


def test_the_mark_goes_on_a_copy_unless_the_caller_is_done_with_the_tree() -> None:
    (spec,) = desired_of("nics-without-macs").domains.values()
    root = parse(spec.xml)
    before = tostring(root)
    on_copy = define_xml(root, spec, POLICY)
    assert tostring(root) == before
    assert define_xml(root, spec, POLICY, last_use=True) == on_copy
    assert tostring(root) != before
