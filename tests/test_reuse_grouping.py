"""Greedy grouping apart from the searches: `greedy_groups` decides the roles from a coverage
callback alone, so it runs here without threads or a database search."""

from __future__ import annotations

import pytest
from helpers import DEMO_QUERIES
from pyhmmer.easel import Alphabet, DigitalSequenceBlock, TextSequence
from pyhmmer.plan7 import HMM, Background, Builder

from protprof.jackhmmer import SearchParams
from protprof.queries.fasta import read_fasta
from protprof.search.family import LOOKAHEAD, audit_extra, audit_rank, covered, greedy_groups

AMINO = Alphabet.amino()
Z = 5000  # the demo database's size
# Real demo queries: three families and one record of none (as in test_reuse.py).
IDS = [
    "tr|A0A0S3SKR9|A0A0S3SKR9_PHAAN",
    "tr|A0A078IC26|A0A078IC26_BRANA",
    "tr|R0I619|R0I619_9BRAS",
    "tr|A0A0F9RVQ1|A0A0F9RVQ1_9ZZZZ",
    "tr|Z5XS54|Z5XS54_9GAMM",
    "tr|A4CSP7|A4CSP7_SYNPV",
    "tr|C6YWU2|C6YWU2_9GAMM",
    "sp|A5URZ1|NUSB_ROSS1",
]


@pytest.fixture(scope="module")
def sequences() -> list[str]:
    by_id = {r.id: r.sequence for r in read_fasta(DEMO_QUERIES)}
    return [by_id[i] for i in IDS]


def _queries(sequences: list[str]) -> DigitalSequenceBlock:
    return DigitalSequenceBlock(
        AMINO,
        [
            TextSequence(name=str(i).encode(), sequence=s).digitize(AMINO)
            for i, s in enumerate(sequences)
        ],
    )


def _model(sequence: str) -> HMM:
    """A single-sequence model (phmmer's): a real HMM without a database search."""
    digital = TextSequence(name=b"q", sequence=sequence).digitize(AMINO)
    hmm, _, _ = Builder(AMINO).build(digital, Background(AMINO))
    return hmm


def test_groups_from_real_models_follow_the_greedy_rule(sequences):
    queries = _queries(sequences)
    models = [_model(s) for s in sequences]
    order = sorted(range(len(sequences)), key=lambda i: (-len(sequences[i]), sequences[i]))
    calls = []

    def cover(i, later, ahead):
        calls.append((i, later, ahead))
        return covered(models[i], len(sequences), later, queries, SearchParams(), Z, 0.8)

    groups = list(greedy_groups(order, cover))
    roles = {g.representative: "rep" for g in groups}
    roles |= {j: g.representative for g in groups for j in g.members}
    assert sorted(roles) == list(range(len(sequences)))  # each query decided exactly once
    assert [g.representative for g in groups] == [i for i in order if roles[i] == "rep"]
    # The three families (0-2, 3-4, 5-6), each with its longest query as representative, and
    # the record of none alone: the roles the whole-database searches give too.
    assert [(g.representative, g.members) for g in groups] == [
        (0, [1, 2]),
        (3, [4]),
        (5, [6]),
        (7, []),
    ]
    decided: set[int] = set()
    for (i, later, ahead), group in zip(calls, groups, strict=True):
        position = order.index(i)
        assert later == [j for j in order[position + 1 :] if j not in decided]
        window = order[position + 1 : position + 1 + LOOKAHEAD]
        assert ahead == [j for j in window if j not in decided]
        for j in group.members:  # covered by the representative, and after it
            assert order.index(j) > position
            assert i in group.relatives[j]
        decided |= set(group.members)
    # No representative is covered by an earlier one's model.
    reps = [g.representative for g in groups]
    for k, i in enumerate(reps):
        for earlier in reps[:k]:
            members, _ = covered(
                models[earlier], len(sequences), [i], queries, SearchParams(), Z, 0.8
            )
            assert members == []


def test_a_member_pool_gathers_every_representative_that_includes_it():
    """Oracle coverage: 4 is included (not covered) by 0, then covered by 1; 2 is covered by
    0 and never becomes a representative, nor is offered to a later one."""
    covers = {0: ([2], [2, 4]), 1: ([4], [4]), 3: ([], [5]), 5: ([], [])}
    offered = {}

    def cover(i, later, ahead):
        offered[i] = later
        members, related = covers[i]
        return [j for j in members if j in later], [j for j in related if j in later]

    groups = list(greedy_groups([0, 1, 2, 3, 4, 5], cover))
    assert [(g.representative, g.members) for g in groups] == [
        (0, [2]),
        (1, [4]),
        (3, []),
        (5, []),
    ]
    assert groups[1].relatives == {4: [0, 1]}
    assert offered == {0: [1, 2, 3, 4, 5], 1: [3, 4, 5], 3: [5], 5: []}


def test_audit_extra_tops_up_with_the_lowest_ranked_members(sequences):
    members = [1, 2, 4, 6]
    ranked = sorted(members, key=lambda j: audit_rank(sequences[j]))
    assert audit_extra(members, {}, sequences, 3) == ranked[:3]
    already = {ranked[2]: None}
    assert audit_extra(members, already, sequences, 3) == [ranked[0], ranked[1]]
    assert audit_extra(members, already, sequences, 1) == []
    assert audit_extra(members, {}, sequences, 9) == ranked  # fewer members than the minimum
