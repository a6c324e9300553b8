"""Shot-switching transitions as prompt text.

The official shot-switching model has no transition input: the prompt goes verbatim to the text
encoder, and the transition is asked for in words. The official repository documents two leading tags,
``[ZOOM_IN_CUT]`` (cut-in) and ``[ZOOM_OUT_CUT]`` (cut-out), and names three more shot types
("Shot/Reverse Shot", "Multi-Angle", "Cut Away") without a tag; it suggests describing them in the
prompt. We do not invent tags the model never saw, so:

=====================  ==========================================================================
transition             what is put in front of the user's text
=====================  ==========================================================================
(none)                 nothing: the text goes to the model verbatim (official behaviour)
``cut_in``             ``[ZOOM_IN_CUT]`` (official tag)
``cut_out``            ``[ZOOM_OUT_CUT]`` (official tag)
``shot_reverse_shot``  the sentence in :data:`LEAD_INS` (our wording, no tag exists)
``multi_angle``        the sentence in :data:`LEAD_INS` (our wording, no tag exists)
``cut_away``           the sentence in :data:`LEAD_INS` (our wording, no tag exists)
=====================  ==========================================================================

Free text combines with a transition as ``"<tag or sentence> <text>"``. Text that already starts with an
official tag is kept as it is when the tag agrees with the chosen transition (or none is chosen); a tag
that contradicts the chosen transition is refused, since the model would get two different instructions.

Imports ``core`` only. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import re

from core.generation import RequestInvalid, Transition

OFFICIAL_TAGS: dict[Transition, str] = {
    Transition.CUT_IN: "[ZOOM_IN_CUT]",
    Transition.CUT_OUT: "[ZOOM_OUT_CUT]",
}

LEAD_INS: dict[Transition, str] = {
    Transition.SHOT_REVERSE_SHOT: "The shot cuts to a reverse shot, showing the scene from the opposite side.",
    Transition.MULTI_ANGLE: "The shot cuts to a different camera angle of the same moment.",
    Transition.CUT_AWAY: "The shot cuts away to a related detail elsewhere in the scene.",
}

_LEADING_TAG = re.compile(r"^\s*(\[[A-Z_]+\])")


def leading_tag(text: str) -> str | None:
    """The ``[UPPER_CASE]`` tag the text starts with, if any."""
    match = _LEADING_TAG.match(text)
    return match.group(1) if match else None


def transition_for_tag(tag: str) -> Transition | None:
    for transition, known in OFFICIAL_TAGS.items():
        if known == tag:
            return transition
    return None


def compose_prompt(text: str, transition: Transition | None) -> str:
    """The prompt the shot-switching model receives for ``text`` and ``transition``.

    Raises:
        RequestInvalid: the text starts with an official tag that contradicts ``transition``.
    """
    text = text.strip()
    tag = leading_tag(text)
    if transition is None:
        return text
    if tag is not None:
        tagged = transition_for_tag(tag)
        if tagged == transition:
            return text
        if tagged is not None:
            raise RequestInvalid(
                f"The prompt starts with {tag} ({tagged.value.replace('_', ' ')}) but the transition "
                f"'{transition.value.replace('_', ' ')}' was chosen. Remove the tag or pick the matching "
                "transition."
            )
    prefix = OFFICIAL_TAGS.get(transition) or LEAD_INS[transition]
    return f"{prefix} {text}".strip()
