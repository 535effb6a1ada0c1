"""Scene graph of a story prompt (MOV AI paper, Compositional Scene Parser): entities with
attributes, actions, relations and temporal annotations, and the timed segment prompts derived
from it.

Everything is plain data and serialises with :meth:`SceneGraph.to_dict` (JSON-ready) so the UI can
show it and a run can record it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from .segments import Segment, split_evenly


@dataclass
class Entity:
    id: str
    name: str  # head noun, lower case
    text: str  # noun phrase as first written ("a small corgi")
    attributes: list[str] = field(default_factory=list)
    plural: bool = False


@dataclass
class Relation:
    subject: str  # entity id
    predicate: str  # a preposition ("on") or a verb taking a direct object ("chases")
    object: str  # entity id
    action: str  # action id it belongs to


@dataclass
class Action:
    id: str
    verb: str  # lemma ("jump")
    subjects: list[str]  # entity ids
    objects: list[str] = field(default_factory=list)
    manner: list[str] = field(default_factory=list)  # adverbs ("slowly")
    text: str = ""  # verb phrase as written, pronouns resolved


@dataclass
class Event:
    """One clause: a set of actions happening together. Main events become segments; an event
    with ``attached_to`` set happens during that main event and joins its segment prompt."""

    id: str
    text: str  # the clause as a stand-alone prompt (subject carried / pronouns resolved)
    subject_text: str
    predicate_text: str  # the clause without its subject
    subjects: list[str]
    actions: list[str]
    position: int  # order in the story text
    cue: str = ""  # the connective that introduced it ("then", "while", "" ...)
    attached_to: Optional[str] = None
    anchor: str = ""  # "first" | "final" | ""
    prompt: str = ""  # a timeline's prompt as written (parse_prompts): the segment prompt


@dataclass
class TemporalLink:
    type: str  # "before" (a happens before b) | "during" (a happens while b)
    a: str  # event id
    b: str  # event id
    cue: str = ""


@dataclass
class SceneGraph:
    story: str
    entities: list[Entity] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    temporal: list[TemporalLink] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ views
    def event(self, eid: str) -> Event:
        return next(e for e in self.events if e.id == eid)

    def main_events(self) -> list[Event]:
        return [e for e in self.events if e.attached_to is None]

    def order(self) -> list[str]:
        """Main events in time order: a topological sort of the "before" links, ties broken by
        position in the text (so untimed clauses keep the story's order). Contradictory links
        (a cycle) are dropped with a warning and the rest keeps text order."""
        mains = sorted(self.main_events(), key=lambda e: e.position)
        ids = [e.id for e in mains]
        pos = {e.id: e.position for e in mains}
        succ = {i: set() for i in ids}
        indeg = {i: 0 for i in ids}
        for t in self.temporal:
            if t.type == "before" and t.a in succ and t.b in succ and t.b not in succ[t.a] \
                    and t.a != t.b:
                succ[t.a].add(t.b)
                indeg[t.b] += 1
        out, ready = [], [i for i in ids if indeg[i] == 0]
        while len(out) < len(ids):
            if not ready:  # cycle: release the earliest remaining event in text order
                rest = sorted((i for i in ids if i not in out), key=pos.get)
                if not any("contradict" in w for w in self.warnings):
                    self.warnings.append("The story's temporal cues contradict each other; "
                                         "kept text order where they clash.")
                ready = [rest[0]]
                indeg[rest[0]] = 0
            ready.sort(key=pos.get)
            cur = ready.pop(0)
            out.append(cur)
            for n in sorted(succ[cur], key=pos.get):
                indeg[n] -= 1
                if indeg[n] == 0 and n not in out and n not in ready:
                    ready.append(n)
        return out

    def segment_prompt(self, eid: str) -> str:
        """The main event's clause plus every clause attached to it ("... while the sun sets");
        a timeline prompt's event: the prompt as written."""
        main = self.event(eid)
        if main.prompt:  # a timeline's own prompt, as the user wrote it
            return main.prompt
        text = main.text
        for e in self.events:
            if e.attached_to != eid:
                continue
            if e.subjects and set(e.subjects) == set(main.subjects):
                first = e.predicate_text.split(" ", 1)[0]
                text += (" while " if first.endswith("ing") else " and ") + e.predicate_text
            else:
                text += " while " + e.text
        return text

    def segment_prompts(self) -> list[str]:
        return [self.segment_prompt(eid) for eid in self.order()]

    def segments(self, n_frames: int) -> list[Segment]:
        """Ordered segment prompts, each with an equal share of ``n_frames`` (end exclusive)."""
        prompts = self.segment_prompts()
        return [Segment(p, a, b) for p, (a, b) in zip(prompts, split_evenly(len(prompts), n_frames))]

    def to_dict(self) -> dict:
        return {
            "story": self.story,
            "entities": [asdict(e) for e in self.entities],
            "actions": [asdict(a) for a in self.actions],
            "relations": [asdict(r) for r in self.relations],
            "events": [asdict(e) for e in self.events],
            "temporal": [asdict(t) for t in self.temporal],
            "order": self.order(),
            "segments": self.segment_prompts(),
            "warnings": list(self.warnings),
        }
