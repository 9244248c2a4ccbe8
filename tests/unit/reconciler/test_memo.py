"""The sync memo: a pair found in sync is skipped only while every input is the same."""

from __future__ import annotations

import dataclasses

import pytest

from virtctl.errors import Source
from virtctl.model import Desired, DomainSpec, DomainState, Live, LiveDomain, Ownership
from virtctl.reconciler.memo import Memo, context_of, memo_for, sync_key
from virtctl.reconciler.plan.plan import Policy, plan

DECLARED = ("<domain type='kvm'><name>web</name><memory unit='MiB'>512</memory>"
            "<os><type arch='x86_64'>hvm</type></os></domain>")
LIVE_XML = ("<domain type='kvm'><name>web</name><uuid>9b1c5e8a-2f4d-4c3b-8a6e-1d2c3b4a5f60"
            "</uuid><memory unit='KiB'>524288</memory><currentMemory unit='KiB'>524288"
            "</currentMemory><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>")
SPEC = DomainSpec(name="web", xml=DECLARED, source=Source("web.xml", 1))
LIVE = LiveDomain(name="web", uuid="9b1c5e8a-2f4d-4c3b-8a6e-1d2c3b4a5f60", xml=LIVE_XML,
                  state=DomainState.RUNNING, id=3, owner=Ownership())
CONTEXT = context_of(repr(Policy()), "<capabilities/>", "code-1")


@pytest.mark.parametrize(
    ("spec", "live", "context"),
    [
        pytest.param(dataclasses.replace(SPEC, xml=DECLARED.replace("512", "1024")), LIVE,
                     CONTEXT, id="spec-edited"),
        pytest.param(dataclasses.replace(SPEC, autostart=True), LIVE, CONTEXT,
                     id="spec-autostart"),
        pytest.param(SPEC, dataclasses.replace(LIVE, xml=LIVE_XML.replace("524288", "1")),
                     CONTEXT, id="live-drifted"),
        pytest.param(SPEC, dataclasses.replace(LIVE, state=DomainState.SHUTOFF), CONTEXT,
                     id="live-stopped"),
        pytest.param(SPEC, dataclasses.replace(LIVE, running_xml="<domain/>"), CONTEXT,
                     id="live-running-definition"),
        pytest.param(SPEC, dataclasses.replace(LIVE, owner=None), CONTEXT, id="not-managed"),
        pytest.param(SPEC, LIVE, context_of(repr(Policy(allow_restart=True)),
                                            "<capabilities/>", "code-1"), id="policy"),
        pytest.param(SPEC, LIVE, context_of(repr(Policy()), "<capabilities/>", "code-2"),
                     id="code"),
        pytest.param(SPEC, LIVE, context_of(repr(Policy()), "<capabilities><host/>"
                                            "</capabilities>", "code-1"), id="capabilities"),
    ],
)
def test_any_changed_input_gives_a_new_key(spec: DomainSpec, live: LiveDomain,
                                           context: str) -> None:
    assert sync_key(spec, live, context=context) != sync_key(SPEC, LIVE, context=CONTEXT)


@pytest.mark.parametrize(
    ("spec", "live"),
    [
        pytest.param(dataclasses.replace(SPEC, source=Source("moved.xml", 9)), LIVE,
                     id="spec-file-moved"),
        pytest.param(SPEC, dataclasses.replace(LIVE, id=4), id="restarted-same-definition"),
    ],
)
def test_inputs_that_decide_nothing_keep_the_key(spec: DomainSpec, live: LiveDomain) -> None:
    assert sync_key(spec, live, context=CONTEXT) == sync_key(SPEC, LIVE, context=CONTEXT)


def test_a_known_pair_is_skipped_and_a_new_pair_compared() -> None:
    desired = Desired(domains={"web": SPEC})
    live = Live(domains={"web": dataclasses.replace(LIVE, xml=LIVE_XML.replace("524288",
                                                                                "262144"))})
    memo = memo_for(desired, live, context=CONTEXT, known=frozenset())
    first = plan(desired, live, memo=memo)
    assert not first.empty and first.in_sync == frozenset()  # memory differs: redefine
    # Pretend the differing pair had been found in sync: the planner trusts the memo...
    trusted = plan(desired, live, memo=Memo(keys=memo.keys, known=frozenset(memo.keys.values())))
    assert trusted.empty and trusted.in_sync == frozenset(memo.keys.values())
    # ...but only for that exact pair: any other live state is compared again.
    other = Live(domains={"web": dataclasses.replace(live.domains["web"], id=None,
                                                     state=DomainState.SHUTOFF)})
    again = plan(desired, other,
                 memo=memo_for(desired, other, context=CONTEXT, known=trusted.in_sync))
    assert not again.empty


def test_in_sync_lists_objects_found_equal() -> None:
    desired = Desired(domains={"web": SPEC})
    live = Live(domains={"web": LIVE})
    memo = memo_for(desired, live, context=CONTEXT, known=frozenset())
    result = plan(desired, live, memo=memo)
    assert result.in_sync == frozenset(memo.keys.values()) and len(result.in_sync) == 1
