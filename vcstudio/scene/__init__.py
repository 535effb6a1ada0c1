"""Compositional scene parser: story prompt -> scene graph -> timed segment prompts (MOV AI
paper)."""
from .graph import Action, Entity, Event, Relation, SceneGraph, TemporalLink
from .parser import parse_prompts, parse_story, story_segments
from .segments import Segment, check_segments, even_segments, split_evenly

__all__ = ["Action", "Entity", "Event", "Relation", "SceneGraph", "TemporalLink", "parse_prompts",
           "parse_story", "story_segments", "Segment", "check_segments", "even_segments",
           "split_evenly"]
