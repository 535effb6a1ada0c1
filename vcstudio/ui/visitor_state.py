"""Bounds on what Gradio keeps in memory per visitor.

Gradio holds one ``SessionState`` per browser tab or API client (a copy of the page's config,
plus the value of every component that visitor's events updated: the plots' tables, the
videos' paths) and, by default, forgets one only past 10,000 of them: it never drops a state
for being idle, even once the tab has closed. Under `vcstudio bench serve` every visit left
one behind (~0.5 MiB for a fresh page, more after plots and tables were drawn), so a public
server grew with its visitor count. A public studio drops the states of visitors idle for the
session TTL in its cleanup sweep (their studio session and files expire then too), and every
studio caps their number (``launch(state_session_capacity=...)``: the oldest go first).
"""
from __future__ import annotations

import datetime

# tabs a desktop's owner keeps open at once / visitors a public Space holds at once
DESKTOP_CAPACITY = 100
PUBLIC_CAPACITY = 1000


def capacity(public: bool) -> int:
    """The ``state_session_capacity`` to launch with."""
    return PUBLIC_CAPACITY if public else DESKTOP_CAPACITY


def drop_idle_states(demo, max_age_s: float) -> int:
    """Forget the Gradio state of visitors whose last event was over ``max_age_s`` ago; the
    number forgotten. A visitor who comes back starts from the page's defaults (their studio
    session has expired by then as well)."""
    holder = getattr(demo, "state_holder", None)
    if holder is None:
        return 0
    now = datetime.datetime.now()
    idle = [sid for sid, t in list(holder.time_last_used.items())
            if (now - t).total_seconds() > max_age_s]
    for sid in idle:
        holder.delete_state(sid)  # the components' own delete callbacks first
        with holder.lock:
            holder.session_data.pop(sid, None)
            holder.time_last_used.pop(sid, None)
    return len(idle)
