"""Edit every sub-message of an Envoy resource in place, packed ``Any`` fields included.

The translators write references to the management server into many places (a cluster's
EDS, a listener's RDS, SDS for certificates and filter credentials, some inside filters'
packed configs). What rewrites them for another use (per-type streams, a static bootstrap
for Envoy's validate mode) walks the whole message with one function, so a new translator
needs no change there.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

_ANY = any_pb2.Any.DESCRIPTOR.full_name

#: Called on each message before its fields: (changed it, do not look inside).
Visit = Callable[[Message], tuple[bool, bool]]


def rewrite(message: Message, visit: Visit) -> bool:
    """Apply `visit` to `message` and every message inside it; True if any was changed
    (a packed ``Any`` whose content changed is packed again)."""
    changed, stop = visit(message)
    if stop:
        return changed
    if message.DESCRIPTOR.full_name == _ANY:
        return _rewrite_any(message, visit) or changed  # type: ignore[arg-type]
    for field, value in message.ListFields():
        kind = field.message_type
        if kind is None:
            continue
        if kind.GetOptions().map_entry:
            if kind.fields_by_name["value"].message_type is not None:
                for member in value.values():
                    changed |= rewrite(member, visit)
        elif field.is_repeated:
            for member in value:
                changed |= rewrite(member, visit)
        else:
            changed |= rewrite(value, visit)
    return changed


def _rewrite_any(packed: any_pb2.Any, visit: Visit) -> bool:
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(packed.TypeName())
    except KeyError:  # a type this process does not know holds nothing we wrote
        return False
    inner = message_factory.GetMessageClass(descriptor)()
    if not packed.Unpack(inner) or not rewrite(inner, visit):
        return False
    packed.Pack(inner)
    return True
