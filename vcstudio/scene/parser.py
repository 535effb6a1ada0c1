"""Rule-based compositional scene parser (MOV AI paper, CSP): story prompt -> :class:`SceneGraph`.

Deterministic and offline (closed word lists, no model). The steps:

1. sentences split at . ; ! ? and each sentence cut into clauses at commas and temporal
   connectives (then, after, before, while, finally, meanwhile, next, ...). A subordinator
   ("before", "after", "until", "while", "as", "when", "once") only counts when a verb follows it
   ("after lunch" stays a prepositional phrase); verbless pieces are glued back to a neighbour.
2. each clause -> subject noun phrase(s) + verb + objects / prepositional phrases. A clause
   without a subject ("then jumps into the sea") or with a pronoun (it/he/she/they) takes the
   subject of the last main clause; "they" takes the group of the last main clause and the
   clauses happening during it when that was a single subject. Object pronouns (it/him/her/them)
   take the latest other entity.
3. temporal annotations: "then"/"next"/a new sentence/a bare comma: after the previous main
   clause; "X before Y" and "Before Y, X": X then Y; "X after Y" and "After Y, X": Y then X;
   "until" = before, "once"/"as soon as" = after; "finally" after all, "first" before all;
   "while"/"as"/"when"/"meanwhile": concurrent, attached to the main clause's segment (a trailing
   "while" clause belongs to the clause just before it).
"""
from __future__ import annotations

import re
from typing import Optional

from ..errors import InputError
from .graph import Action, Entity, Event, Relation, SceneGraph, TemporalLink
from .lexicon import (CLAUSE_START_ONLY, CONJUNCTIONS, CONNECTIVES, DETERMINERS, MAX_CONNECTIVE,
                      OBJECT_PRONOUNS, PREPOSITIONS, SUBJECT_PRONOUNS, verb_info)

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*|[,.;:!?]")
_PLURAL_DETS = {"these", "those", "some", "many", "several", "few", "two", "three", "four", "five",
                "six", "seven", "eight", "nine", "ten", "both", "all"}
_FINITE = {"third", "past", "copula"}
_NOT_ADVERB = {"fly", "lily", "family", "jelly", "belly", "holly", "bully", "rally", "ally",
               "early", "only", "friendly", "lovely", "curly", "hilly", "sly", "woolly"}


def _join(tokens: list[str]) -> str:
    return re.sub(r" ([,.;:!?])", r"\1", " ".join(tokens)).strip(" ,")


DIRECTIONS = {"right", "left", "up", "down", "away", "back", "forward", "forwards", "backward",
              "backwards", "around", "ahead", "sideways", "upward", "upwards", "downward",
              "downwards", "home", "off", "out", "in", "over"}


def _is_adverb(w: str) -> bool:
    w = w.lower()
    return len(w) > 4 and w.endswith("ly") and w not in _NOT_ADVERB


def _looks_plural(word: str) -> bool:
    w = word.lower()
    return w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3


def find_verb(tokens: list[str]) -> Optional[tuple[int, int]]:
    """(index of the main verb, index where the subject ends) in a clause, or None if verbless.

    The subject may be empty (subject-less continuation, index 0 is the verb). A base form
    ("play") only counts after a plural subject; a "-s" word followed by a verb is a plural noun
    ("the street lights turn on"); "-ing" forms count only if no finite verb is found.
    """
    low = [t.lower() for t in tokens]
    words = [i for i, t in enumerate(low) if t != ","]
    if not words:
        return None
    i0 = words[0]
    t0 = low[i0]
    if t0 in SUBJECT_PRONOUNS:
        for k in words[1:]:
            if _is_adverb(low[k]):
                continue
            # after a subject pronoun the next word is the verb, known or not ("she fries")
            ok = verb_info(low[k]) or (low[k] not in DETERMINERS | PREPOSITIONS | CONJUNCTIONS)
            return (k, k) if ok else None
        return None
    info0 = verb_info(t0)
    if info0 and t0 not in DETERMINERS:
        nxt = words[1] if len(words) > 1 else None
        if not (info0[1] == "third" and nxt is not None and verb_info(low[nxt])
                and verb_info(low[nxt])[1] in ("base", "past", "copula")
                and low[nxt] not in DIRECTIONS):
            return (i0, i0)
    # explicit subject noun phrase: at least one content word before the verb
    content = 0  # content words since the last determiner / conjunction
    coordinated = False
    plural = t0 in _PLURAL_DETS
    gerund = None
    for k in words:
        w = low[k]
        if w in DETERMINERS:
            plural = plural or w in _PLURAL_DETS
            continue
        if w in CONJUNCTIONS:
            coordinated = True
            content = 0  # "a cat and a dog": another noun must follow before the verb
            continue
        info = verb_info(w)
        if content >= 1 and info:
            lemma, form = info
            nk = next((j for j in words if j > k), None)
            if form == "third" and nk is not None and verb_info(low[nk]) \
                    and verb_info(low[nk])[1] in ("base", "past", "copula") \
                    and low[nk] not in DIRECTIONS:  # "moves left" is a verb and a direction
                return (nk, nk)  # "lights turn": the -s word was a plural noun
            if form in _FINITE or (form == "base" and (plural or coordinated)):
                return (k, k)
            if form == "gerund" and gerund is None:
                gerund = k
        content += 1
        if w not in PREPOSITIONS:
            plural = _looks_plural(w) or (plural and content == 1 and k > 0
                                          and low[k - 1] in _PLURAL_DETS)
    if gerund is not None:
        return (gerund, gerund)
    return None


class _Parser:
    def __init__(self, story: str) -> None:
        self.g = SceneGraph(story=story)
        self.by_name: dict[str, Entity] = {}
        self.last_subjects: list[str] = []  # of the last main clause
        self.recent: list[str] = []  # entity ids in order of mention

    # ------------------------------------------------------------------ entities
    def entity(self, np_tokens: list[str]) -> Optional[Entity]:
        toks = [t for t in np_tokens if t != ","]
        if not toks:
            return None
        if "of" in [t.lower() for t in toks[1:]]:
            cut = [t.lower() for t in toks].index("of", 1)
            head_part = toks[:cut]
        else:
            head_part = toks
        det = head_part[0].lower() if head_part[0].lower() in DETERMINERS else ""
        body = head_part[1:] if det else head_part
        if not body:
            return None
        head = body[-1].lower()
        attrs = [w.lower() for w in body[:-1] if w.lower() not in CONJUNCTIONS]
        plural = det in _PLURAL_DETS or _looks_plural(head)
        text = _join(toks)
        ent = self.by_name.get(head)
        if ent is not None and det in ("a", "an") and ent.attributes and attrs \
                and not set(attrs) & set(ent.attributes):
            ent = None  # "a red car" after "a blue car": a second car
            head_key = f"{head}#{sum(1 for k in self.by_name if k.split('#')[0] == head) + 1}"
        else:
            head_key = head
        if ent is None:
            ent = Entity(id=f"e{len(self.g.entities)}", name=head, text=text, attributes=attrs,
                         plural=plural)
            self.g.entities.append(ent)
            self.by_name[head_key] = ent
        else:
            ent.attributes += [a for a in attrs if a not in ent.attributes]
        self.recent.append(ent.id)
        return ent

    def ent(self, eid: str) -> Entity:
        return next(e for e in self.g.entities if e.id == eid)

    def subject_text(self, ids: list[str]) -> str:
        return " and ".join(self.ent(i).text for i in ids)

    def noun_phrases(self, tokens: list[str]) -> list[Entity]:
        """Coordinated noun phrases ("a cat and a dog") -> entities. Comma-set-off words without
        a determiner ("a corgi, small and brown,") are attributes of the phrase before them."""
        pieces, cur = [], []
        for t in tokens:
            if t == ",":
                pieces.append(cur)
                cur = []
            else:
                cur.append(t)
        pieces.append(cur)
        pieces = [p for p in pieces if p]
        if not pieces:
            return []
        appositive = [w.lower() for p in pieces[1:] if p[0].lower() not in DETERMINERS
                      for w in p if w.lower() not in CONJUNCTIONS]
        main = [w for p in pieces[:1] + [p for p in pieces[1:] if p[0].lower() in DETERMINERS]
                for w in p + ["and"]][:-1]
        parts, cur = [], []
        for k, t in enumerate(main):
            nxt = main[k + 1].lower() if k + 1 < len(main) else ""
            # split at "and" only before a new determiner / plural noun phrase:
            # "a black and white cat" stays one phrase
            if t.lower() == "and" and cur and (nxt in DETERMINERS or _looks_plural(nxt)
                                               or nxt[:1].isupper()):
                parts.append(cur)
                cur = []
            else:
                cur.append(t)
        if cur:
            parts.append(cur)
        ents = [e for e in (self.entity(p) for p in parts) if e is not None]
        if ents and appositive:
            ents[0].attributes += [a for a in appositive if a not in ents[0].attributes]
        return ents

    # ------------------------------------------------------------------ clauses
    def clause(self, tokens: list[str], pos: int, cue: str, main: bool,
               group_subjects: list[str]) -> Event:
        """Parse one clause into an event with its actions, entities and relations."""
        tokens = [t for t in tokens]
        while tokens and tokens[0] in (",",):
            tokens = tokens[1:]
        if tokens and tokens[0].lower() == "and":
            tokens = tokens[1:]
        fv = find_verb(tokens)
        subj_ids: list[str]
        if fv is None:  # a description without a verb: the whole clause is one noun phrase
            ents = self.noun_phrases(tokens)
            subj_ids = [e.id for e in ents][:1]
            ev = Event(id=f"v{len(self.g.events)}", text=_join(tokens),
                       subject_text=_join(tokens), predicate_text="", subjects=subj_ids,
                       actions=[], position=pos, cue=cue)
            self.g.events.append(ev)
            return ev
        vi, _ = fv
        first = tokens[0].lower() if tokens else ""
        if vi == 0 or all(t == "," for t in tokens[:vi]):  # subject-less: carry the last subject
            subj_ids = list(self.last_subjects)
            subject_text = self.subject_text(subj_ids)
        elif first in SUBJECT_PRONOUNS and vi >= 1:
            subj_ids = self.resolve_pronoun(first, group_subjects)
            subject_text = self.subject_text(subj_ids) if subj_ids else tokens[0]
            tokens = tokens[1:]
            vi -= 1
        else:
            subj_ids = [e.id for e in self.noun_phrases(tokens[:vi])]
            subject_text = _join(tokens[:vi]) + ("," if tokens[vi - 1] == "," else "")
            tokens = tokens[vi:]
            vi = 0
        pred = tokens[vi:] if vi == 0 else tokens
        pred = self.resolve_objects(pred, subj_ids)
        predicate_text = _join(pred)
        text = f"{subject_text} {predicate_text}".strip() if subject_text else predicate_text
        ev = Event(id=f"v{len(self.g.events)}", text=text, subject_text=subject_text,
                   predicate_text=predicate_text, subjects=subj_ids, actions=[], position=pos,
                   cue=cue)
        self.g.events.append(ev)
        self.actions(ev, pred, subj_ids)
        if main:
            self.last_subjects = subj_ids or self.last_subjects
        return ev

    def resolve_pronoun(self, pron: str, group_subjects: list[str]) -> list[str]:
        if pron in ("they", "we"):
            plural = [i for i in self.last_subjects if self.ent(i).plural]
            if len(self.last_subjects) > 1 or plural:
                return list(self.last_subjects)
            if len(group_subjects) > 1:
                return list(group_subjects)
        return list(self.last_subjects)

    def resolve_objects(self, pred: list[str], subj_ids: list[str]) -> list[str]:
        """Replace object pronouns by the latest entity that is not the clause's subject."""
        out = []
        for k, t in enumerate(pred):
            low = t.lower()
            nxt = pred[k + 1].lower() if k + 1 < len(pred) else ""
            possessive = low == "her" and nxt and nxt not in PREPOSITIONS | CONJUNCTIONS \
                and nxt != "," and not _is_adverb(nxt)
            if k > 0 and low in OBJECT_PRONOUNS and not possessive:
                cand = [i for i in reversed(self.recent) if i not in subj_ids]
                if cand:
                    out.append(self.ent(cand[0]).text)
                    self.recent.append(cand[0])
                    continue
            out.append(t)
        return out

    def actions(self, ev: Event, pred: list[str], subj_ids: list[str]) -> None:
        """Split a predicate at "and" + verb into actions; collect objects and relations."""
        chunks, cur = [], []
        for k, t in enumerate(pred):
            if t.lower() == "and" and cur and k + 1 < len(pred):
                rest = pred[k + 1:]
                fv = find_verb(rest)
                if fv is not None and (fv[0] == 0 or rest[0].lower() in DETERMINERS
                                       or rest[0].lower() in SUBJECT_PRONOUNS):
                    chunks.append(cur)
                    cur = []
                    continue
            cur.append(t)
        if cur:
            chunks.append(cur)
        for chunk in chunks:
            subj = subj_ids
            fv = find_verb(chunk)
            if fv is None:
                continue
            vi = fv[0]
            if vi > 0:  # "... and a woman jogs": its own subject
                if chunk[0].lower() in SUBJECT_PRONOUNS:
                    subj = self.resolve_pronoun(chunk[0].lower(), subj_ids)
                else:
                    subj = [e.id for e in self.noun_phrases(chunk[:vi])]
                    for s in subj:
                        if s not in ev.subjects:
                            ev.subjects.append(s)
            verb = chunk[vi].lower()
            lemma = verb_info(verb)[0] if verb_info(verb) else verb
            act = Action(id=f"a{len(self.g.actions)}", verb=lemma, subjects=list(subj),
                         text=_join(chunk[vi:]))
            self.g.actions.append(act)
            ev.actions.append(act.id)
            self.arguments(act, chunk[vi + 1:])

    def arguments(self, act: Action, toks: list[str]) -> None:
        """Objects and prepositional phrases after the verb -> entities + relations."""
        pred, np_ = act.verb, []

        def flush():
            nonlocal np_
            words = [w for w in np_ if w != ","]
            if words and not (len(words) == 1 and verb_info(words[0]) and pred == act.verb):
                for e in self.noun_phrases(words):
                    if e.id not in act.objects:
                        act.objects.append(e.id)
                    for s in act.subjects:
                        self.g.relations.append(Relation(s, pred, e.id, act.id))
            np_ = []

        for k, t in enumerate(toks):
            low = t.lower()
            nxt = toks[k + 1].lower() if k + 1 < len(toks) else ""
            # "moves right on the beach", "runs away": a bare direction is the manner of the
            # motion, not an object ("up the hill" stays a prepositional phrase)
            if _is_adverb(low) or (low in DIRECTIONS and not np_
                                   and (not nxt or nxt in PREPOSITIONS or nxt == ",")):
                act.manner.append(low)
                continue
            if low in PREPOSITIONS and not (low == "of" and np_):
                flush()
                pred = low
                continue
            if verb_info(low) and verb_info(low)[1] in ("gerund", "base") and not np_:
                # "starts running", "begins to dance": part of the verb group
                continue
            np_.append(t)
        flush()


# ---------------------------------------------------------------------------- clause splitting

def _match_connective(low: list[str], i: int, clause_start: bool) -> Optional[tuple[tuple, str]]:
    for n in range(MAX_CONNECTIVE, 0, -1):
        phrase = tuple(low[i:i + n])
        if len(phrase) == n and phrase in CONNECTIVES:
            if phrase in CLAUSE_START_ONLY and not clause_start:
                continue
            return phrase, CONNECTIVES[phrase]
    return None


def _fragment_end(low: list[str], i: int) -> int:
    j = i
    while j < len(low) and low[j] != ",":
        if j > i and _match_connective(low, j, False):
            break
        j += 1
    return j


def _split_sentence(tokens: list[str]) -> list[dict]:
    """Cut a sentence into fragments {"cue", "kind", "tokens"} at commas and connectives."""
    low = [t.lower() for t in tokens]
    frags = [{"cue": "", "kind": "", "tokens": []}]
    clause_start = True
    i = 0
    while i < len(tokens):
        if low[i] == ",":
            if frags[-1]["tokens"] or not frags[-1]["cue"]:  # "Then, ..." keeps its cue
                frags.append({"cue": "", "kind": "", "tokens": [], "comma": True})
            clause_start = True
            i += 1
            continue
        m = _match_connective(low, i, clause_start)
        if m:
            phrase, kind = m
            ok = True
            if kind.startswith("sub:"):
                seg = tokens[i + len(phrase):_fragment_end(low, i + len(phrase))]
                fv = find_verb(seg)
                ok = fv is not None and (
                    fv[0] > 0 or kind == "sub:during"
                    or (verb_info(seg[0]) or ("", ""))[1] in _FINITE | {"base"})
                if ok and fv[0] == 0 and kind != "sub:during" \
                        and (verb_info(seg[0]) or ("", ""))[1] == "gerund":
                    ok = False  # "after eating" is fine as a gerund clause only with while
            if ok:
                cur = frags[-1]
                if cur["tokens"] or cur["cue"]:
                    frags.append({"cue": "", "kind": "", "tokens": []})
                frags[-1]["cue"] = " ".join(phrase)
                frags[-1]["kind"] = kind
                i += len(phrase)
                clause_start = True
                continue
        frags[-1]["tokens"].append(tokens[i])
        clause_start = low[i] == "and" and not frags[-1]["tokens"][:-1]
        i += 1
    frags = [f for f in frags if f["tokens"] or f["cue"]]
    return _merge_verbless(frags)


def _merge_verbless(frags: list[dict]) -> list[dict]:
    """Glue fragments without a verb ("after lunch", "small and brown") to a neighbour."""
    changed = True
    while changed and len(frags) > 1:
        changed = False
        for k, f in enumerate(frags):
            body = f["tokens"][1:] if f["tokens"][:1] == ["and"] else f["tokens"]
            if body and find_verb(body) is not None:
                continue
            if k + 1 < len(frags) and not frags[k + 1]["cue"]:
                # forward: "After sunset, the lights glow" / "a corgi, small and brown, runs"
                nxt = frags[k + 1]
                nxt["tokens"] = f["tokens"] + [","] + nxt["tokens"]
                nxt["cue"], nxt["kind"] = f["cue"], f["kind"]
                nxt["comma"] = f.get("comma", False)
            elif k > 0:
                prev = frags[k - 1]
                prev["tokens"] = prev["tokens"] + ([","] if f.get("comma") else []) \
                    + (f["cue"].split() if f["cue"] else []) + f["tokens"]
            else:
                nxt = frags[k + 1]
                nxt["tokens"] = (f["cue"].split() if f["cue"] else []) + f["tokens"] \
                    + nxt["cue"].split() + nxt["tokens"]
                nxt["cue"], nxt["kind"] = f["cue"], f["kind"]
            del frags[k]
            changed = True
            break
    return frags


def _sentences(story: str) -> list[list[str]]:
    out, cur = [], []
    for t in _TOKEN.findall(story):
        if t in ".;:!?":
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


# ---------------------------------------------------------------------------- top level

class _Story:
    """The parse of a story (or of a timeline's prompts) as it goes: the parser and the main
    event the next clause follows."""

    def __init__(self, text: str) -> None:
        self.p = _Parser(text)
        self.g = self.p.g
        self.prev_main: Optional[Event] = None
        self.pos = 0

    def link(self, a: Optional[Event], b: Event, cue: str) -> None:
        if a is not None and a.id != b.id:
            self.g.temporal.append(TemporalLink("before", a.id, b.id, cue))

    def attach(self, e: Event, m: Event, cue: str) -> None:
        e.attached_to = m.attached_to or m.id
        self.g.temporal.append(TemporalLink("during", e.id, e.attached_to, cue))

    def group(self, m: Optional[Event]) -> list[str]:
        if m is None:
            return []
        ids = list(m.subjects)
        for e in self.g.events:
            if e.attached_to == m.id:
                ids += [s for s in e.subjects if s not in ids]
        return ids

    def read(self, text: str) -> None:
        """Every sentence of ``text``: its clauses become events, linked in time."""
        p, link, attach, group = self.p, self.link, self.attach, self.group
        for sent in _sentences(text):
            frags = _split_sentence(sent)
            k = 0
            while k < len(frags):
                f = frags[k]
                kind, cue = f["kind"], f["cue"]
                prev_main, pos = self.prev_main, self.pos
                if kind.startswith("sub:") and k == 0 and len(frags) > 1 and not frags[1]["cue"]:
                    # leading subordinate clause: "After Y, X" / "Before Y, X" / "While Y, X"
                    rel = kind[4:]
                    sub = p.clause(f["tokens"], pos, cue, main=(rel != "during"),
                                   group_subjects=group(prev_main))
                    m = p.clause(frags[1]["tokens"], pos + 1, "", main=True,
                                 group_subjects=group(prev_main))
                    self.pos += 2
                    if rel == "during":
                        attach(sub, m, cue)
                        link(prev_main, m, "")
                    elif rel == "after":
                        link(prev_main, sub, "")
                        link(sub, m, cue)
                    else:  # before: the main clause happens first
                        link(prev_main, m, "")
                        link(m, sub, cue)
                    self.prev_main = m
                    k += 2
                    continue
                if kind.startswith("sub:") and prev_main is not None:
                    rel = kind[4:]
                    e = p.clause(f["tokens"], pos, cue, main=False,
                                 group_subjects=group(prev_main))
                    if rel == "during":
                        attach(e, prev_main, cue)
                    elif rel == "after":
                        link(e, prev_main, cue)
                    else:
                        link(prev_main, e, cue)
                    # "X after Y, then Z": Z follows the main clause X, which stays prev_main
                    self.pos += 1
                    k += 1
                    continue
                if kind == "during" and prev_main is not None:
                    e = p.clause(f["tokens"], pos, cue, main=False,
                                 group_subjects=group(prev_main))
                    attach(e, prev_main, cue)
                    self.pos += 1
                    k += 1
                    continue
                e = p.clause(f["tokens"], pos, cue, main=True, group_subjects=group(prev_main))
                if kind == "final":
                    e.anchor = "final"
                elif kind == "first":
                    e.anchor = "first"
                link(prev_main, e, cue or ("," if f.get("comma") else ""))
                self.prev_main = e
                self.pos += 1
                k += 1

    def anchor(self) -> None:
        """"first" / "finally" clauses before / after every other main event."""
        g = self.g
        mains = g.main_events()
        for e in mains:
            for o in mains:
                if o.id == e.id or o.anchor == e.anchor:
                    continue
                if e.anchor == "first":
                    g.temporal.append(TemporalLink("before", e.id, o.id, "first"))
                if e.anchor == "final":
                    g.temporal.append(TemporalLink("before", o.id, e.id, "finally"))
        # links that contradict an anchor ("Finally X. Y." has the implicit X -> Y) are dropped
        anchor = {e.id: e.anchor for e in mains}
        g.temporal = [t for t in g.temporal if t.type != "before"
                      or t.cue in ("first", "finally")
                      or not ((anchor.get(t.a) == "final" and anchor.get(t.b) != "final")
                              or (anchor.get(t.b) == "first" and anchor.get(t.a) != "first"))]


def parse_story(story: str) -> SceneGraph:
    """Story prompt -> scene graph with entities, actions, relations and temporal links."""
    if not story or not story.strip():
        raise InputError("The story is empty; describe what happens, e.g. "
                         "'a corgi runs on the beach, then jumps into the sea'.")
    st = _Story(story.strip())
    st.read(story)
    st.anchor()
    return st.g


def parse_prompts(prompts) -> SceneGraph:
    """A timeline given as one prompt per segment -> its scene graph: each prompt is read like
    a story's sentence (entities shared and pronouns resolved across prompts: "a dog runs" /
    "it jumps" is one dog), and is ONE main event, in the given order, whose segment prompt
    is the prompt as written; a prompt's further clauses ("..., then ...", "... while ...")
    happen during it. The graph's ``segments`` are then the timeline's prompts."""
    lines = [str(p).strip() for p in prompts if p and str(p).strip()]
    if not lines:
        raise InputError("Give at least one prompt.")
    st = _Story("\n".join(lines))
    g = st.g
    heads: list[Event] = []
    for line in lines:
        before = len(g.events)
        st.read(line)
        new = g.events[before:]
        mains = [e for e in new if e.attached_to is None]
        head = mains[0] if mains else new[0]
        head.attached_to, head.anchor, head.prompt = None, "", line
        ids = {e.id for e in new}
        for e in new:
            if e is not head:
                e.attached_to = head.id
        # within a prompt nothing is ordered against the timeline: its clauses are "during"
        g.temporal = [t for t in g.temporal if not (t.a in ids or t.b in ids)]
        g.temporal += [TemporalLink("during", e.id, head.id, "same prompt") for e in new
                       if e is not head]
        if heads:
            g.temporal.append(TemporalLink("before", heads[-1].id, head.id, "next prompt"))
        heads.append(head)
        st.prev_main = head
    return g


def story_segments(story: str, n_frames: int):
    """Story -> ordered :class:`Segment` list over ``n_frames`` (the CLI's ``--story``)."""
    return parse_story(story).segments(n_frames)
