"""Closed word lists for the rule-based scene parser: verbs (with inflections), determiners,
prepositions, pronouns and the temporal connectives of the MOV AI paper's scene graph
annotations."""
from __future__ import annotations

import re
from functools import lru_cache

# Actions a video prompt describes. Nouns that double as verbs are fine: the parser only takes a
# word as the verb after at least one subject word, or at the start of a subject-less clause.
BASE_VERBS = """
appear arrive ask bark bathe bite blink blow bloom bounce bow break breathe build burn carry catch
change chase chew clap clean climb close collapse come cook crash crawl cross cry dance dart dig
disappear dive drag draw dream drift drink drive drop eat emerge enter escape explode fade fall
feed fight fill find fish flap flee float flow fly fold follow gallop gather get give glide glow
go grab graze grin grow hang help hide hit hold hop hover hug hunt jog jump juggle kick kiss kneel
knock land laugh lay lead leap leave lie lift light listen look march melt move nap nod open orbit
paddle paint pass pause perform pick plant play point pour pray pull punch push race rain reach read
relax repair rest return ride rise roar roll run rush sail scream see set shake shine shoot shout
sing sink sit skate ski skip sleep slide smile sniff snow soar speak spin splash sprint stand stare
start stop stretch stroll surf sway sweep swim swing take talk taste teach throw tiptoe touch turn
type wait wake walk wander wash watch wave wear whisper win wink work write yawn yell zoom begin
become bring chat clap crouch cut drip eat enjoy explore fetch fix flicker gaze hike hum hurry kneel
leave lean lick lower meet paint peck pet pop prance rest ring row sip sketch sneak spray sprout
squat step strike struggle swoop tumble twirl twinkle unfold vanish wag wade weave whirl wiggle
board fry bake boil stir chop slice mix serve score park honk sparkle rustle meow purr chirp buzz
howl growl hatch pounce scratch toss darken brighten approach descend ascend launch erupt freeze
thaw wobble nibble munch prowl sneeze cough stumble trip slip glance peek ignite burst dissolve
drizzle unfurl wilt blossom carve knit sew water harvest celebrate cheer greet salute applaud
argue embrace marry reunite depart dock anchor swirl ripple crackle roast grill smell hear feel
think remember imagine defend attack protect rescue save release shut lock unlock answer call
check search discover notice spot tackle dribble pitch lose drown paddle pedal steer brake skid
flutter sparkle shimmer wrap unwrap open smash shatter tear pack unpack load unload deliver
put pay shoot sneak splash kayak row cycle bike hike camp climb
""".split()

IRREGULAR_PAST = {
    "run": "ran", "swim": "swam", "fly": "flew", "go": "went", "come": "came", "eat": "ate",
    "fall": "fell", "sit": "sat", "ride": "rode", "rise": "rose", "sing": "sang", "drink": "drank",
    "throw": "threw", "catch": "caught", "fight": "fought", "take": "took", "give": "gave",
    "see": "saw", "hold": "held", "drive": "drove", "leave": "left", "stand": "stood",
    "sleep": "slept", "find": "found", "get": "got", "begin": "began", "break": "broke",
    "blow": "blew", "grow": "grew", "shine": "shone", "spin": "spun", "dig": "dug", "hide": "hid",
    "build": "built", "lie": "lay", "wake": "woke", "meet": "met", "shake": "shook", "sink": "sank",
    "swing": "swung", "draw": "drew", "write": "wrote", "lead": "led", "bring": "brought",
    "become": "became", "cut": "cut", "hit": "hit", "set": "set", "shoot": "shot", "speak": "spoke",
    "strike": "struck", "teach": "taught", "wear": "wore", "win": "won", "hang": "hung",
    "sweep": "swept", "kneel": "knelt", "leap": "leapt", "light": "lit", "flee": "fled",
    "feed": "fed", "bite": "bit", "ring": "rang", "weave": "wove", "lay": "laid", "pay": "paid",
    "read": "read", "put": "put",
}
COPULAS = {"is", "are", "was", "were", "be", "been", "keeps", "keep", "starts", "begins"}
_DOUBLE = {"stop", "hop", "jog", "grab", "drop", "nap", "hug", "dig", "run", "swim", "sit", "spin",
           "skip", "clap", "plan", "shop", "step", "pat", "pet", "wag", "nod", "win", "cut", "hit",
           "set", "get", "put", "begin", "chat", "trip", "drip", "dip", "flap", "tap", "rub", "sip",
           "squat", "swim", "shop", "snap", "pop", "chop", "wrap"}

DETERMINERS = {"a", "an", "the", "this", "that", "these", "those", "my", "your", "his", "her", "its",
               "our", "their", "some", "many", "several", "few", "every", "each", "one", "two",
               "three", "four", "five", "six", "seven", "eight", "nine", "ten", "another", "both",
               "all", "no"}
PREPOSITIONS = {"in", "on", "into", "onto", "at", "under", "over", "through", "across", "along",
                "behind", "beside", "near", "to", "toward", "towards", "from", "with", "around",
                "past", "by", "up", "down", "out", "off", "inside", "outside", "above", "below",
                "between", "among", "against", "beneath", "within", "without", "of", "for",
                "during", "next", "beyond", "upon", "amid", "underneath", "like"}
SUBJECT_PRONOUNS = {"it": "sg", "he": "sg", "she": "sg", "they": "pl", "we": "pl", "i": "sg",
                    "you": "sg"}
OBJECT_PRONOUNS = {"it", "him", "her", "them"}
CONJUNCTIONS = {"and", "or", "but"}

# Temporal connectives (MOV AI paper: temporal annotations of the scene graph).
#  kind "seq": what follows happens after the previous main clause
#  kind "final": what follows happens after every other event
#  kind "first": what follows happens before every other event
#  kind "during": what follows happens at the same time as the previous main clause (adverbial)
#  kind "sub:<rel>": a subordinator; <rel> relates the subordinate clause S to its main clause M:
#     "during" (S while M), "before" (M before S), "after" (M after S)
CONNECTIVES = {
    ("and", "then"): "seq", ("then",): "seq", ("next",): "seq", ("after", "that"): "seq",
    ("and", "after", "that"): "seq", ("afterwards",): "seq", ("afterward",): "seq",
    ("later",): "seq", ("and", "later"): "seq", ("subsequently",): "seq", ("soon", "after"): "seq",
    ("after", "which"): "seq",
    ("finally",): "final", ("and", "finally"): "final", ("eventually",): "final",
    ("in", "the", "end"): "final", ("at", "last"): "final", ("lastly",): "final",
    ("first",): "first", ("at", "first"): "first", ("first", "of", "all"): "first",
    ("initially",): "first",
    ("meanwhile",): "during", ("and", "meanwhile"): "during", ("in", "the", "meantime"): "during",
    ("at", "the", "same", "time"): "during", ("simultaneously",): "during",
    ("while",): "sub:during", ("whilst",): "sub:during", ("as",): "sub:during",
    ("when",): "sub:during", ("whenever",): "sub:during",
    ("before",): "sub:before", ("until",): "sub:before", ("till",): "sub:before",
    ("after",): "sub:after", ("once",): "sub:after", ("as", "soon", "as"): "sub:after",
}
# Words that are only connectives at the start of a clause (elsewhere: adjective/adverb/preposition).
CLAUSE_START_ONLY = {("next",), ("later",), ("first",), ("once",), ("at", "first"),
                     ("at", "last"), ("in", "the", "end")}
MAX_CONNECTIVE = max(len(k) for k in CONNECTIVES)


def _third(v: str) -> str:
    if re.search(r"(s|sh|ch|x|z|o)$", v):
        return v + "es"
    if re.search(r"[^aeiou]y$", v):
        return v[:-1] + "ies"
    return v + "s"


def _past(v: str) -> str:
    if v in IRREGULAR_PAST:
        return IRREGULAR_PAST[v]
    if v.endswith("e"):
        return v + "d"
    if re.search(r"[^aeiou]y$", v):
        return v[:-1] + "ied"
    if v in _DOUBLE:
        return v + v[-1] + "ed"
    return v + "ed"


def _gerund(v: str) -> str:
    if v.endswith("ie"):
        return v[:-2] + "ying"
    if v.endswith("e") and not v.endswith(("ee", "ye", "oe")):
        return v[:-1] + "ing"
    if v in _DOUBLE:
        return v + v[-1] + "ing"
    return v + "ing"


@lru_cache(maxsize=1)
def verb_forms() -> dict[str, tuple[str, str]]:
    """word -> (lemma, form) with form in base | third | past | gerund."""
    out: dict[str, tuple[str, str]] = {}
    for v in BASE_VERBS:
        out.setdefault(_gerund(v), (v, "gerund"))
        out.setdefault(_past(v), (v, "past"))
        out.setdefault(_third(v), (v, "third"))
        out[v] = (v, "base")
    for c in COPULAS:
        out[c] = (c, "copula")
    return out


def verb_info(word: str):
    """(lemma, form) if ``word`` is a known verb form, else None."""
    return verb_forms().get(word.lower())
