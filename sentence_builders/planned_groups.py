"""The groups a regrouped unit was planned with (uvd/regroup.py), for builders that group items
across the dataset (`pairs`, `multitask`): which item is in which group, and each item's example
held until every member of its group has been processed, so a group is written as soon as it is
whole and a unit holds only the groups still open (the source reads items in its own order)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Union

from uvd.errors import reason_of
from uvd.records import Failed, Item, VisualSentence
from uvd.regroup import REGROUP

Result = Union[VisualSentence, Failed]


class PlannedGroups:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.groups: list[list[str]] = [list(g) for g in spec["groups"]]
        self.epoch = int(spec["epoch"])
        self.group_of = {item_id: i for i, g in enumerate(self.groups) for item_id in g}
        self.waiting = [len(g) for g in self.groups]  # members not yet processed; -1 once written
        self.examples: dict[str, Any] = {}

    @staticmethod
    def of(payload: dict[str, Any]) -> "PlannedGroups | None":
        spec = payload.get(REGROUP)
        return PlannedGroups(spec) if spec is not None else None

    def process(self, item: Item, example: Callable[[Item], Any],
                write: Callable[[list[tuple[str, Any]], int], Iterable[Result]]) -> Iterator[Result]:
        """Make the item's example; when its group is complete, `write(members, planned_size)`.
        A failed example fails its item only: the group goes on shorter, no other group shifts."""
        g = self.group_of.get(item.item_id)
        if g is None:
            yield Failed(item.item_id, "bad_plan: the item is in none of this unit's planned groups")
            return
        try:
            self.examples[item.item_id] = example(item)
        except Exception as err:
            yield Failed(item.item_id, reason_of(err))
        self.waiting[g] -= 1
        if self.waiting[g] == 0:
            yield from self._write(g, write)

    def finish(self, write: Callable[[list[tuple[str, Any]], int], Iterable[Result]]) -> Iterator[Result]:
        """The groups some member of which never reached the builder (it failed to read)."""
        for g in range(len(self.groups)):
            if self.waiting[g] >= 0:
                yield from self._write(g, write)

    def _write(self, g: int, write: Callable[[list[tuple[str, Any]], int], Iterable[Result]]) -> Iterator[Result]:
        self.waiting[g] = -1
        members = [(i, self.examples.pop(i)) for i in self.groups[g] if i in self.examples]
        if members:
            yield from write(members, len(self.groups[g]))
