"""The argument layout of ``emit.lua``, the one script call that writes a batch's Redis outputs.

KEYS: every key written, numbered from 1 in the order `EmitCall.key` first saw them. ARGV[1]: a MessagePack array
of every number and name of the call; ARGV[2...]: the payloads (records, each sent once whatever the number of
sinks; cached texts; WebSocket messages), which the array refers to by their number j (ARGV[1 + j]).

The array: stream MAXLEN (approximate), last index an output list keeps, the key number of the call's once-key
(0: none), the ttl seconds of it and of the entry markers, the consumer group of the tick streams ("": none), then
the tick entries the records come from (a count, then per entry: stream key number, entry id, marker key number;
stream 0 on a cluster, where the stream may lie on another slot and `EmitCall.run` asks XPENDING itself, marker 0
for an entry found done that way);
then four sections, each a count followed by its items:
XADD (key number, payload, instrument key, entry), LPUSH (key number, n, then n pairs of payload and entry), SET
(key number, payload, ttl seconds, guard key number or 0, tick time), PUBLISH (channel, payload, entry). An item's
entry is the number of its tick entry (0: written unconditionally); it is written only when no earlier delivery of
that entry wrote its outputs (see emit.lua). A guarded SET is skipped when the guard (an instrument's latest-tick
hash) holds a newer tick. The script returns 0 without writing if the once-key existed.

The numbers travel as one argument because every separate argument costs the server about a microsecond to parse
and hand to Lua: thousands per batch were most of the call's time. MessagePack, because the server decodes it in a
third of the time it takes for the same array in JSON.

`EmitCall`'s sections are plain lists the caller appends to directly (the record loop is the hot path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import redis

from feed import keys, redis_client
from feed.streams import stream_entry

EMIT_LUA = redis_client.lua_source(__file__, "emit.lua")
PENDING_LUA = redis_client.lua_source(__file__, "pending.lua")


@dataclass
class EmitCall:
    keys: dict[str, int] = field(default_factory=dict)  # key -> its number in KEYS
    payloads: list[bytes] = field(default_factory=list)  # payload j is payloads[j - 1]
    group: str = ""  # the tick streams' consumer group: entries it has acknowledged are done
    tag: str = ""  # on a cluster, the shard (`keys.shard`) of every key of the call
    done: set[tuple[str, str]] = field(default_factory=set)  # entries acknowledged already (cluster: read apart)
    entries: dict[tuple[str, str], int] = field(default_factory=dict)  # (stream, entry id) -> its number, from 1
    streamed: list[Any] = field(default_factory=list)  # XADD items, flat: key number, payload, instrument key, entry
    lists: dict[int, list[int]] = field(default_factory=dict)  # LPUSH: list key -> payload, entry, ... oldest first
    sets: list[tuple[int, int, int, int, float]] = field(default_factory=list)  # SET items as in the layout
    published: list[tuple[str, int, int]] = field(default_factory=list)  # PUBLISH: (channel, payload, entry)

    def key(self, name: str) -> int:
        """The number of key ``name`` in KEYS (Lua's KEYS is 1-based), added on first use."""
        found = self.keys.get(name)
        if found is None:
            found = self.keys[name] = len(self.keys) + 1
        return found

    def payload(self, text: bytes) -> int:
        """Add a payload; returns its number."""
        self.payloads.append(text)
        return len(self.payloads)

    def entry(self, source_id: str) -> int:
        """The number of the tick entry ``source_id`` (``stream/entry-id``) names; 0 for a source that is no stream
        entry (imports, time-driven runs), whose outputs are not guarded per entry."""
        entry = stream_entry(source_id)
        if entry is None:
            return 0
        found = self.entries.get(entry)
        if found is None:
            found = self.entries[entry] = len(self.entries) + 1
        return found

    def publish(self, channel: str, message: bytes, entry: int = 0) -> None:
        self.published.append((channel, self.payload(message), entry))

    def writes(self) -> bool:
        return bool(self.streamed or self.lists or self.sets or self.published)

    def encode(self, stream_maxlen: int, list_keep: int, once_key: str | None,
               once_ttl_s: int) -> tuple[list[str], list[bytes]]:
        """(KEYS, ARGV) of the call; ``list_keep`` is how many entries an output list keeps."""
        once_index = self.key(once_key) if once_key else 0
        in_script = not self.tag  # one server: the script checks the entries' streams itself
        control: list[Any] = [stream_maxlen, list_keep - 1, once_index, once_ttl_s, self.group, len(self.entries)]
        for stream, entry_id in self.entries:
            marker = 0 if (stream, entry_id) in self.done else self.key(keys.emitted_entries(stream, self.tag))
            control += (self.key(stream) if in_script else 0, entry_id, marker)
        control += (len(self.streamed) // 4, *self.streamed, len(self.lists))
        for index, numbers in self.lists.items():
            control += (index, len(numbers) // 2, *numbers)
        control.append(len(self.sets))
        for item in self.sets:
            control += item
        control.append(len(self.published))
        for item in self.published:
            control += item
        return list(self.keys), [msgpack.packb(control), *self.payloads]

    def run(self, client: redis.Redis, stream_maxlen: int, list_keep: int, once_key: str | None,
            once_ttl_s: int) -> Any:
        if self.tag and self.group and self.entries:
            self.done = acknowledged(client, self.group, list(self.entries))
        call_keys, args = self.encode(stream_maxlen, list_keep, once_key, once_ttl_s)
        return redis_client.script(client, EMIT_LUA)(keys=call_keys, args=args)


def acknowledged(client: redis.Redis, group: str, entries: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The ``(stream, entry id)`` entries ``group`` no longer holds as pending (none of a missing stream or group).

    On a cluster the emit script cannot read the streams (other slots), so this runs just before it. An entry
    acknowledged between the two would be written again, but only by a second delivery running at the same time
    as the first, which its underlying's turn (`signals.ingest.turns`) prevents while the first one lives."""
    by_stream: dict[str, list[str]] = {}
    for stream, entry_id in entries:
        by_stream.setdefault(stream, []).append(entry_id)
    pipe = client.pipeline(transaction=False)
    check = redis_client.script(client, PENDING_LUA)
    for stream, ids in by_stream.items():
        check(keys=[stream], args=[group, *ids], client=pipe)
    done: set[tuple[str, str]] = set()
    for (stream, ids), pending in zip(by_stream.items(), pipe.execute(), strict=True):
        done.update((stream, entry_id) for entry_id, flag in zip(ids, pending, strict=True) if not flag)
    return done
