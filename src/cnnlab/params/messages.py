"""The wording of params errors: pydantic's validation errors of cnnlab.params.schema.Params turned into
one line per problem, each naming its params.yaml key and what to do. It only words errors, so,
like cnnlab.errors, it is no stage's dependency in dvc.yaml: rewording a message reruns nothing."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel


def _kind(member) -> str:
    """How pydantic names a member of a plain union in an error's location: literal[...], tuple[...]."""
    origin = typing.get_origin(member) or member
    return "literal[" if origin is Literal else f"{origin.__name__.lower()}["


def _member(tp, tag: str):
    """The member of a discriminated union whose tag value is `tag`, else None."""
    for member in typing.get_args(tp):
        if not hasattr(member, "model_fields"):
            continue
        for field in member.model_fields.values():
            if typing.get_origin(field.annotation) is Literal and tag in typing.get_args(field.annotation):
                return member
    return None


def _strip(tp):
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _walk(loc: tuple, root: type) -> tuple[str, Any]:
    """(dotted key, the type at that key) of a pydantic error location in `root` (union tags skipped)."""
    key, tp = "", root
    for item in loc:
        tp = _strip(tp)
        if typing.get_origin(tp) in (Union, types.UnionType):
            member = _member(tp, item) if isinstance(item, str) else None
            if member is None and isinstance(item, str):  # a plain union: pydantic names the member tried
                member = next((m for m in typing.get_args(tp) if item.startswith(_kind(m))), None)
            if member is not None:  # the union's tag: not part of the key
                tp = member
                continue
        if isinstance(item, int):
            key += f"[{item}]"
            args = typing.get_args(tp)
            tp = args[0] if len(args) == 2 and args[1] is Ellipsis else (args[item] if item < len(args) else None)
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            key = f"{key}.{item}" if key else item
            tp = tp.model_fields[item].annotation if item in tp.model_fields else None
        elif typing.get_origin(tp) is dict:
            key = f"{key}.{item}" if key else item
            tp = typing.get_args(tp)[1] if item != "[key]" else str
        else:
            key = f"{key}.{item}" if key else str(item)
            tp = None
    return key, _strip(tp)


def _tags(union, field: str) -> str:
    """The values the tag `field` of a discriminated union may take."""
    members = typing.get_args(union)
    return ", ".join(v for member in members for v in typing.get_args(member.model_fields[field].annotation))


RANGE_WORDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
TYPE_WORDS = {"int_type": "a whole number", "float_type": "a number", "bool_type": "true or false",
              "string_type": "a string", "tuple_type": "a list", "model_type": "a mapping of settings",
              "dict_type": "a mapping", "model_attributes_type": "a mapping of settings"}  # fmt: skip


def _message(error: dict, root: type) -> str:
    loc = error["loc"]
    kind, ctx, got = error["type"], error.get("ctx") or {}, error.get("input")
    if loc and loc[-1] == "[key]":
        key, _ = _walk(loc[:-2], root)
        return f"params key '{key}.{got}': names must be letters, digits and _ (they become folder names)"
    key, tp = _walk(loc, root)
    if kind == "missing" and isinstance(loc[-1], int):  # a list too short for its tuple
        size = len(typing.get_args(_walk(loc[:-1], root)[1]))
        return f"params key '{key.rsplit('[', 1)[0]}' must list {size} values, got {got!r}"
    if kind == "missing":
        return (f"params key '{key}' is missing; every setting lives in params.yaml: add it "
                "(see the comments there, or git diff params.yaml)")  # fmt: skip
    if kind == "extra_forbidden":
        parent, owner = _walk(loc[:-1], root)
        valid = ", ".join(owner.model_fields) if isinstance(owner, type) and issubclass(owner, BaseModel) else "?"
        where = f"section '{parent}'" if parent else "the top level"
        return f"unknown params key '{key}' in {where}; valid keys: {valid}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = ctx.get("discriminator", "").strip("'")
        _, union = _walk(loc[:-1], root)
        union = _strip(typing.get_args(union)[1]) if typing.get_origin(union) is dict else union
        if kind == "union_tag_not_found":
            return f"params key '{key}' needs a '{field}' key: one of {_tags(union, field)}"
        return f"params key '{key}.{field}': unknown name {ctx.get('tag')!r}; valid names: {_tags(union, field)}"
    if kind == "literal_error":
        valid = ", ".join(str(v) for v in typing.get_args(tp)) if tp is not None else ctx.get("expected", "")
        return f"params key '{key}': unknown name {got!r}; valid names: {valid}"
    bound = next((k for k in RANGE_WORDS if k in ctx), None)
    if bound:
        return f"params key '{key}' must be {RANGE_WORDS[bound]} {ctx[bound]:g}, got {got!r}"
    if kind in ("too_short", "too_long"):
        return f"params key '{key}' must list {error['msg'].split('have ')[-1].split(' after')[0]}, got {got!r}"
    if kind in TYPE_WORDS:
        hint = ' (quote it in params.yaml, e.g. "00")' if kind == "string_type" and isinstance(got, int) else ""
        return f"params key '{key}' must be {TYPE_WORDS[kind]}, got {got!r}{hint}"
    if kind == "string_pattern_mismatch":
        return f"params key '{key}' must be letters, digits and _, got {got!r}"
    return f"params key '{key}': {error['msg']}, got {got!r}"


def params_messages(errors: list[dict], root: type) -> list[str]:
    """One line per problem of pydantic's `errors` validating `root` (cnnlab.params.schema.Params), each
    naming its params key: none about classifier.lr (it is `lr`'s copy), none inside an entry
    whose name is already refused."""
    # a value that is neither member of a plain union (backgrounds.classes: 'auto' or a pair): the
    # error of its non-literal member says what is wrong, with the literal's values as the other choice
    literal = {e["loc"][:-1]: e for e in errors if e["loc"] and str(e["loc"][-1]).startswith("literal[")}
    errors = [e for e in errors if e not in literal.values() or not any(
        o is not e and o["loc"][: len(e["loc"]) - 1] == e["loc"][:-1] for o in errors)]  # fmt: skip
    bad_names = [e["loc"][:-1] for e in errors if e["loc"] and e["loc"][-1] == "[key]"]
    keep = [
        e for e in errors
        if e["loc"][:2] != ("classifier", "lr")
        and not any(e["loc"][: len(b)] == b and e["loc"] != (*b, "[key]") for b in bad_names)
    ]  # fmt: skip
    dropped = {e["loc"][:-1]: (e.get("ctx") or {}).get("expected", "") for e in literal.values() if e not in errors}

    def worded(e: dict) -> str:
        other = next((v for loc, v in dropped.items() if e["loc"][: len(loc)] == loc), None)
        return _message(e, root) + (f" (or {other})" if other else "")

    return list(dict.fromkeys(worded(e) for e in keep))
