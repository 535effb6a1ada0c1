import json

import pytest

from vcstudio.errors import InputError
from vcstudio.scene import Segment, check_segments, even_segments, parse_story, story_segments

STORIES = [
    # the example: trailing "while" attaches to the clause just before it
    ("a corgi runs on the beach, then jumps into the sea, while the sun sets",
     ["a corgi runs on the beach", "a corgi jumps into the sea while the sun sets"]),
    # pronoun carried across sentences, with attributes
    ("A small brown corgi runs on the beach. Then it jumps into the sea.",
     ["A small brown corgi runs on the beach", "A small brown corgi jumps into the sea"]),
    ("A girl reads a book. She falls asleep.", ["A girl reads a book", "A girl falls asleep"]),
    # "after" reorders; a subject-less clause after it takes the main clause's subject
    ("A bird sings after the sun rises, then flies away",
     ["the sun rises", "A bird sings", "A bird flies away"]),
    # leading "After Y, X" keeps order; "they" = the group of the previous main clause
    ("After the dog eats, it sleeps while the cat watches, then they play in the garden",
     ["the dog eats", "the dog sleeps while the cat watches", "the dog and the cat play in the garden"]),
    # leading "Before Y, X" reorders; nested while; plural pronoun
    ("Before the storm arrives, a fisherman repairs his boat while his son watches, then they sail away.",
     ["a fisherman repairs his boat while his son watches", "the storm arrives",
      "a fisherman and his son sail away"]),
    # "before" with an object pronoun ("them" -> onions) and an unknown verb after a pronoun
    ("A chef chops onions before he fries them", ["A chef chops onions", "A chef fries onions"]),
    # "until" = before; "it" (object) = the latest other entity
    ("a boy waits at the station until the train arrives, then he boards it while his mother waves",
     ["a boy waits at the station", "the train arrives",
      "a boy boards the train while his mother waves"]),
    # ambiguous "after": a noun follows, not a clause -> a prepositional phrase, one segment
    ("a cat sleeps after lunch", ["a cat sleeps after lunch"]),
    ("after the rain, a rainbow appears", ["after the rain, a rainbow appears"]),
    # leading "While": concurrent, one segment
    ("While the rain falls, a man walks under an umbrella",
     ["a man walks under an umbrella while the rain falls"]),
    # "finally" written first still goes last; "meanwhile" attaches to the previous clause
    ("Finally the sun sets. A man walks his dog. Meanwhile a woman jogs in the park.",
     ["A man walks his dog while a woman jogs in the park", "the sun sets"]),
    # "first" cue dropped from the prompt; "Then," with a comma
    ("First, a woman opens the door. Then, a dog runs out.",
     ["a woman opens the door", "a dog runs out"]),
    # comma list of verb phrases = a sequence
    ("A dog runs, jumps, and catches a frisbee",
     ["A dog runs", "A dog jumps", "A dog catches a frisbee"]),
    # coordinated subject, plural base-form verb, "they"
    ("A cat and a dog play in the garden, then they sleep",
     ["A cat and a dog play in the garden", "A cat and a dog sleep"]),
    # "-s" noun before a verb is a plural noun ("lights turn", "waves crash")
    ("the street lights turn on, then the waves crash on the rocks",
     ["the street lights turn on", "the waves crash on the rocks"]),
    # "and then" + adverbs
    ("A robot walks slowly through the city at night and then flies over the river",
     ["A robot walks slowly through the city at night", "A robot flies over the river"]),
    # "as" subordinator, "and finally" + pronoun
    ("A horse gallops across a field as the sun rises, and finally it drinks from a stream",
     ["A horse gallops across a field while the sun rises", "A horse drinks from a stream"]),
    # "and" between verb phrases without "then" stays in one segment (same time)
    ("a red car drives down the road and honks", ["a red car drives down the road and honks"]),
    # same-subject concurrent gerund
    ("a man walks home while whistling, next he is singing",
     ["a man walks home while whistling", "a man is singing"]),
    # a description without a verb is one segment
    ("a red car on a mountain road", ["a red car on a mountain road"]),
    # appositive attributes
    ("a corgi, small and brown, runs on the beach", ["a corgi, small and brown, runs on the beach"]),
]


@pytest.mark.parametrize("story,expected", STORIES, ids=[s[:40] for s, _ in STORIES])
def test_story_segments(story, expected):
    assert parse_story(story).segment_prompts() == expected


def test_graph_entities_attributes_relations_and_json():
    g = parse_story("A small brown corgi chases a red ball on the beach, "
                    "then jumps into the sea while the sun sets")
    d = json.loads(json.dumps(g.to_dict()))  # JSON-serialisable
    ents = {e["name"]: e for e in d["entities"]}
    assert ents["corgi"]["attributes"] == ["small", "brown"]
    assert ents["ball"]["attributes"] == ["red"]
    rel = {(r["subject"], r["predicate"], r["object"]) for r in d["relations"]}
    c, b, s = ents["corgi"]["id"], ents["beach"]["id"], ents["sea"]["id"]
    assert (c, "chase", ents["ball"]["id"]) in rel and (c, "on", b) in rel and (c, "into", s) in rel
    verbs = [a["verb"] for a in d["actions"]]
    assert verbs == ["chase", "jump", "set"]
    kinds = {(t["type"], t["cue"]) for t in d["temporal"]}
    assert ("before", "then") in kinds and ("during", "while") in kinds
    assert len(d["order"]) == 2 and d["segments"][1].endswith("while the sun sets")


def test_two_cars_are_two_entities():
    g = parse_story("a blue car waits, then a red car passes")
    assert [e.text for e in g.entities] == ["a blue car", "a red car"]


def test_deterministic():
    s = STORIES[5][0]
    assert parse_story(s).to_dict() == parse_story(s).to_dict()


def test_frame_ranges():
    segs = story_segments(STORIES[3][0], 120)
    assert [(x.start, x.end) for x in segs] == [(0, 40), (40, 80), (80, 120)]
    segs = story_segments(STORIES[0][0], 25)
    assert [(x.start, x.end) for x in segs] == [(0, 12), (12, 25)]
    with pytest.raises(InputError, match="do not fit"):
        story_segments(STORIES[3][0], 2)


def test_empty_story():
    with pytest.raises(InputError, match="empty"):
        parse_story("   ")


def test_even_segments_and_check():
    segs = even_segments(["a", "b", "c"], 10)
    assert segs == [Segment("a", 0, 3), Segment("b", 3, 7), Segment("c", 7, 10)]
    assert check_segments(segs[::-1], 10) == segs
    with pytest.raises(InputError, match="Frames 3-6 have no prompt"):
        check_segments([segs[0], segs[2]], 10)
    with pytest.raises(InputError, match="outside"):
        check_segments([Segment("a", 0, 11)], 10)


@pytest.mark.parametrize("story, entities, actions", [
    # a bare direction after a motion verb is its manner, not an object; "left" is not "leave"
    ("a red circle moves right on the beach, then a blue square moves left on the grass",
     ["circle", "beach", "square", "grass"], [("move", ["right"]), ("move", ["left"])]),
    ("a dog runs away, then it jumps over the fence", ["dog", "fence"],
     [("run", ["away"]), ("jump", [])]),
    ("a boy turns left and waves", ["boy"], [("turn", ["left"]), ("wave", [])]),
    # ... while "up the hill" stays a place and "left the house" the verb leave
    ("a corgi runs up the hill", ["corgi", "hill"], [("run", [])]),
    ("the street lights turn on while a man left the house", ["lights", "man", "house"],
     [("turn", []), ("leave", [])]),
])
def test_directions_are_manner_not_entities(story, entities, actions):
    g = parse_story(story).to_dict()
    assert [e["name"] for e in g["entities"]] == entities
    assert [(a["verb"], a["manner"]) for a in g["actions"]] == actions
